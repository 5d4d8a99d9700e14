# SPDX-License-Identifier: GPL-3.0-or-later
"""Baselines 3 and 4: resampling to the occupied band then quantising, and a truncated SVD/PCA basis."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import scipy.fft as sfft

from training.baselines.common import (BaselineCodec, Encoded, LOADING_GRID, MAX_BITS, N_SAMPLES, SCALE_BITS,
                                       as_frames, components, dequantise_midrise, from_components, index_bits,
                                       select_per_frame, sq_best_scale)

def _dct_c(x: np.ndarray, n: int | None = None) -> np.ndarray:
    """Orthonormal DCT-II of complex rows (real and imaginary parts separately)."""
    return (sfft.dct(x.real, n=n, axis=-1, norm="ortho") + 1j * sfft.dct(x.imag, n=n, axis=-1, norm="ortho"))


def _idct_c(c: np.ndarray, n: int | None = None) -> np.ndarray:
    return (sfft.idct(c.real, n=n, axis=-1, norm="ortho") + 1j * sfft.idct(c.imag, n=n, axis=-1, norm="ortho"))


def dct_resample(x: np.ndarray, k: int) -> np.ndarray:
    """Band-limit a complex frame to |f| < k/(2N) fs and resample it to k samples (amplitude preserved).

    DCT-II is the DFT of the frame's even (mirror) extension, so coefficient j sits at |f| = j/(2N) fs for a
    complex baseband frame centred at 0 Hz (both sidebands fold onto the same coefficient, which is why
    keeping the first k complex coefficients keeps k real degrees of freedom per rail: exactly the samples of
    a rate-k/N signal).  Unlike keeping FFT bins it has no wrap-around discontinuity between the frame's ends,
    so truncation does not smear Gibbs ringing over the frame.
    """
    n = x.shape[-1]
    c = _dct_c(x)[:, :k] * np.sqrt(k / n)
    return _idct_c(c).astype(np.complex64)


def dct_upsample(y: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """Inverse of ``dct_resample``: zero the coefficients above the kept band and return to n samples."""
    k = y.shape[-1]
    c = np.zeros((y.shape[0], n), np.complex128)
    c[:, :k] = _dct_c(y) * np.sqrt(n / k)
    return _idct_c(c).astype(np.complex64)


def occupied_bandwidth(x: np.ndarray, fraction: float = 0.99) -> np.ndarray:
    """Two-sided bandwidth (fraction of the sample rate) holding ``fraction`` of each frame's energy, from the
    DCT spectrum (coefficient j <-> |f| = j/(2N)); frames are assumed centred at 0 Hz."""
    x = as_frames(x)
    e = np.abs(_dct_c(x)) ** 2
    cum = np.cumsum(e, axis=1)
    k = np.argmax(cum >= fraction * cum[:, -1:], axis=1) + 1
    return k / x.shape[1]


class ResampleSQ(BaselineCodec):
    """Band-limited resampling to the occupied bandwidth, then uniform SQ of the kept samples.

    Encoder per frame: DCT-domain low-pass + decimation to K samples (``dct_resample``), float16 scale, b-bit
    mid-rise SQ of I and Q; decoder: dequantise, ``dct_upsample`` to 1024.  K is the kept bandwidth (K/1024 of
    fs) and is the side information that tells the decoder the rate.

    Trade-off between kept bandwidth and bit depth (``select``):
      * ``"mse"`` (default): configurations are b = 1..16 with the largest K that fits,
        ``K_b = min(1024, (B - 16 - index) // (2 b))`` - at a given b, quantisation noise per output sample does
        not depend on K (it spreads over the kept band only), so a wider band is never worse; the encoder
        evaluates every b on the frame and keeps the lowest MSE (exact, computed in the coefficient domain since
        the transforms are orthonormal), sending b's index (4 bits; K follows from b and the budget).
        This picks "fewer samples, more bits" for narrow frames and the reverse for wide ones.
      * ``"bw99"``: estimate the 99 % energy bandwidth (``occupied_bandwidth``), round K up to a multiple of 16
        (6-bit side info), then the deepest b that fits; if even b = 1 does not fit, K shrinks to what 1 bit
        per component allows.  Cheaper encoder, slightly worse at high rates.
    ``optimise_loading=True`` (default) lets the encoder clip the SQ range per frame (``LOADING_GRID``), which
    matters at the 1-3 bits this codec lands on at low budgets.
    """
    name = "resample"
    K_GRID = 16

    def __init__(self, select: str = "mse", optimise_loading: bool = True, max_bits: int = MAX_BITS,
                 fraction: float = 0.99):
        if select not in ("mse", "bw99"):
            raise ValueError(select)
        self.select = select
        self.optimise_loading = optimise_loading
        self.max_bits = max_bits
        self.fraction = fraction

    def configs(self, budget: int, n: int = N_SAMPLES) -> List[Tuple[int, int]]:
        """[(bits, kept samples K)] for ``select='mse'``."""
        for n_idx in range(0, 6):
            out = []
            for b in range(1, self.max_bits + 1):
                k = min(n, (budget - SCALE_BITS - n_idx) // (2 * b))
                if k >= 2 and not (out and out[-1][1] == k):   # same K as b-1: b-1 is dominated
                    out.append((b, k))
                elif k >= 2:
                    out[-1] = (b, k)
            if index_bits(len(out)) <= n_idx:
                return out
        raise AssertionError("unreachable")

    def bw99_configs(self, budget: int, n: int = N_SAMPLES) -> List[Tuple[int, int]]:
        """[(bits, K)] for ``select='bw99'``: every K on the grid with the deepest b (>= 1) that fits."""
        room = budget - SCALE_BITS - index_bits(n // self.K_GRID)
        return [(min(self.max_bits, room // (2 * k)), k) for k in range(self.K_GRID, n + 1, self.K_GRID)
                if room // (2 * k) >= 1]

    def _encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:
        n = x.shape[1]
        c_full = _dct_c(x)
        energy = np.cumsum(np.abs(c_full) ** 2, axis=1)      # energy kept by the first K coefficients
        total = energy[:, -1]
        if self.select == "mse":
            cl = self.configs(bits_per_frame, n)
            nidx = index_bits(len(cl))
        else:
            # Side info is K on a grid of 16 (6 bits); b follows from K and the budget, so the configuration
            # list (one entry per K that fits at >= 1 bit) is fixed by the budget alone, as for "mse".
            nidx = index_bits(n // self.K_GRID)
            cl = self._configs_within(self.bw99_configs(bits_per_frame, n), bits_per_frame, "resample/bw99")
            grid_k = np.array([k for _, k in cl])
            kq = np.ceil(occupied_bandwidth(x, self.fraction) * n / self.K_GRID) * self.K_GRID
            # the estimated band, or the widest band 1 bit per component allows when the budget is short
            frame_cfg = np.minimum(np.searchsorted(grid_k, kq), len(cl) - 1)
        self._configs_within(cl, bits_per_frame, "resample")

        def make(c, rows=None):
            b, k = c

            def run():
                sel = slice(None) if rows is None else rows
                y = _idct_c(c_full[sel, :k] * np.sqrt(k / n)).astype(np.complex64)
                s, q, e = sq_best_scale(components(y), b, self.optimise_loading)
                # orthonormal transforms: output error = (n/k) * error on the k samples + energy above the band
                err = e * (n / k) + (total[sel] - energy[sel, k - 1])
                if rows is not None:
                    full_err = np.full(x.shape[0], np.inf)
                    full_err[rows] = err
                    qq = np.zeros((x.shape[0], q.shape[1]), np.int32)
                    qq[rows] = q
                    ss = np.ones(x.shape[0], np.float16)
                    ss[rows] = s
                    return full_err, {"codes": qq, "scale": ss}
                return err, {"codes": q, "scale": s}
            return run

        width = max(2 * c[1] for c in cl)
        layout = {"codes": (width, np.int32), "scale": (0, np.float16)}
        if self.select == "mse":
            idx, out = select_per_frame([make(c) for c in cl], x.shape[0], layout)
        else:   # configuration fixed per frame by the bandwidth estimate: each candidate only sees its frames
            idx, out = select_per_frame([make(c, frame_cfg == i) for i, c in enumerate(cl)], x.shape[0], layout)
        return self._chosen(bits_per_frame, cl, idx, out["codes"], [SCALE_BITS + nidx + 2 * k * b for b, k in cl], 1,
                            {"scale": out["scale"]})

    def decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros((enc.cfg.shape[0], N_SAMPLES), np.complex64)
        for (b, k), rows in self._frames_by_config(enc):
            y = from_components(dequantise_midrise(enc.codes[rows, : 2 * k], enc.side["scale"][rows], b))
            out[rows] = dct_upsample(y)
        return out


def svd_components_for_energy(x: np.ndarray, fraction: float = 0.99, representation: str = "real") -> int:
    """Smallest number of singular components of the frame matrix that keep ``fraction`` of its energy.

    ``representation="real"`` (default, what ``SVDCodec`` uses): rows are 2048-dim [I, Q] vectors, so the
    count is in real coefficients; ``"complex"``: rows are 1024-dim complex vectors (a circular complex
    signal of complex rank k has real rank 2k).  Uncentred (truncated SVD, not mean-removed PCA): IQ frames
    are zero-mean anyway, and the bound should count the energy as transmitted.
    """
    x = as_frames(x)
    a = components(x).astype(np.float64) if representation == "real" else x.astype(np.complex128)
    if representation not in ("real", "complex"):
        raise ValueError(representation)
    g = a @ a.conj().T if a.shape[0] < a.shape[1] else a.conj().T @ a
    ev = np.clip(np.linalg.eigvalsh(g)[::-1].real, 0, None)
    cum = np.cumsum(ev)
    # tiny tolerance so that an exact rank-k signal at fraction=1.0 returns k, not k + round-off components
    return int(np.searchsorted(cum, fraction * cum[-1] * (1 - 1e-9)) + 1)


class SVDCodec(BaselineCodec):
    """Truncated SVD / PCA transform coding with a basis learned on training frames.

    Representation: real 2048-dim [I, Q] vectors (not complex 1024-dim): it also captures non-circular
    statistics (BPSK, I/Q imbalance) that a complex basis cannot, and it allows an odd number of kept reals.
    ``fit`` takes the eigenvectors of the uncentred second-moment matrix (= right singular vectors of the
    training matrix).  ``encode`` projects onto the first r, quantises the r coefficients with one b-bit mid-rise
    quantiser and a float16 per-frame scale (range optimised per frame by the encoder), cost ``16 + r b``.
    (r, b) is one choice per budget: among b = 1..16 with the largest r that fits, the lowest MSE on (up to
    ``n_select``) fit frames, so no per-frame index is sent.
    """
    name = "svd"

    def __init__(self, n_select: int = 1024, optimise_loading: bool = True, max_bits: int = MAX_BITS):
        self.n_select = n_select
        self.optimise_loading = optimise_loading
        self.max_bits = max_bits
        self.basis = None          # (2048, 2048) float32, columns by decreasing energy
        self.energies = None
        self._choice: Dict[int, Tuple[int, int]] = {}

    def fit(self, train_x: np.ndarray, seed: int = 0) -> "SVDCodec":
        a = components(as_frames(train_x)).astype(np.float64)
        ev, vec = np.linalg.eigh(a.T @ a)
        order = np.argsort(ev)[::-1]
        self.energies = np.clip(ev[order], 0, None)
        self.basis = vec[:, order].astype(np.float32)
        rng = np.random.default_rng(seed)
        pick = rng.choice(a.shape[0], size=min(self.n_select, a.shape[0]), replace=False)
        self._sel_coef = (a[pick].astype(np.float32) @ self.basis)      # full-basis coefficients
        self._sel_energy = np.cumsum(self._sel_coef.astype(np.float64) ** 2, axis=1)
        self._choice = {}
        return self

    def configs(self, budget: int) -> List[Tuple[int, int]]:
        d = self.basis.shape[0]
        out = []
        for b in range(1, self.max_bits + 1):
            r = min(d, (budget - SCALE_BITS) // b)
            if r >= 1 and out and out[-1][0] == r:     # same r with fewer bits is dominated
                out[-1] = (r, b)
            elif r >= 1:
                out.append((r, b))
        return out

    def choose(self, budget: int) -> Tuple[int, int]:
        """(r, b) with the lowest MSE on the fit selection for this budget (cached)."""
        if self.basis is None:
            raise RuntimeError("SVDCodec.fit first")
        if budget not in self._choice:
            best, best_err = None, np.inf
            total = self._sel_energy[:, -1]
            for r, b in self.configs(budget):
                _, _, e = sq_best_scale(self._sel_coef[:, :r], b, self.optimise_loading)
                err = float(np.sum(e + total - self._sel_energy[:, r - 1]))
                if err < best_err:
                    best, best_err = (r, b), err
            if best is None:
                raise ValueError(f"budget {budget} too small for SVD")
            self._choice[budget] = best
        return self._choice[budget]

    def _encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:
        r, b = self.choose(bits_per_frame)
        coef = components(x) @ self.basis[:, :r]
        s, q, _ = sq_best_scale(coef, b, self.optimise_loading)
        nf = x.shape[0]
        return Encoded(self.name, bits_per_frame, [(r, b)], np.zeros(nf, np.int16), q,
                       code_len=np.full(nf, r), code_bits=np.full(nf, b),
                       bits=np.full(nf, SCALE_BITS + r * b), side={"scale": s})

    def decode(self, enc: Encoded) -> np.ndarray:
        r, b = enc.configs[0]
        coef = dequantise_midrise(enc.codes[:, :r], enc.side["scale"], b)
        return from_components(coef @ self.basis[:, :r].T)


