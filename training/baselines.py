"""Conventional IQ-frame codecs (scalar quantisation, O-RAN block floating point, band-limited resampling,
truncated SVD/PCA, zstd lossless) that the evaluation compares against HQARF at matched bits per frame.

Every lossy codec is an object with ``encode(x, bits_per_frame) -> Encoded`` (integer codes + side information,
and the bits each frame costs) and ``decode(Encoded) -> complex64``; calling it, ``codec(x, bits_per_frame)``,
returns ``(xhat, mean bits actually spent per frame)``.  Bit counts are derived from the integer code widths
and every piece of side information (scales, exponents, configuration index), and every frame spends at most
the budget.  ``all_codecs(train_x)`` builds the registry the evaluation iterates; ``lossless_reference`` is the
zstd-on-int16 reference (no budget).

Conventions shared by all codecs (decided here, documented once):

* Input: complex64 array (N, 1024); frames are normalised to max|x| = 1 upstream, but the scalar codecs still
  send their own per-frame scale (float16, 16 bits, rounded *up* so nothing clips by accident) so they do not
  depend on that normalisation.  BFP follows O-RAN and works on fixed-point int16 IQ with a system-wide full
  scale (``full_scale=1.0``), so it sends no per-frame scale.
* Rate control.  The budget (bits per frame) is a system parameter known to both ends, like the HQARF level.
  From it each codec derives a short, deterministic list of configurations (bit depth x number of kept
  samples / components).  The encoder picks one per frame by lowest MSE (it has the original) and sends its
  index, ceil(log2(#configs)) bits, counted.  A frame may therefore spend a little less than the budget when a
  cheaper configuration reconstructs better; ``Encoded.bits`` holds the exact per-frame cost and the reported
  figure is its mean.  (The SVD codec picks one configuration per budget on its fit data instead, so it sends no
  index.)
* Budgets below 1 bit per real component (2048 bits per frame).  SQ and BFP cannot reach them at full rate;
  they then *subsample*: keep every m-th sample (plain decimation, no anti-alias filter: the naive variant) and
  the decoder linearly interpolates back to 1024 samples.  They always return a point, just a poor one when the
  signal aliases.  The resampling codec is the proper version of the same idea (low-pass in the DCT domain,
  then decimate to the kept bandwidth).
* Uniform quantiser: mid-rise (2^b levels, reconstruction at cell centres, no level wasted on zero, and b = 1
  is a usable sign quantiser), codes are signed integers in [-2^(b-1), 2^(b-1) - 1].
* SNR in this module is the aggregate 10 log10(sum |x|^2 / sum |x - xhat|^2) over all frames (``snr_db``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import scipy.fft as sfft

N_SAMPLES = 1024
SCALE_BITS = 16          # per-frame float16 scale
BFP_BLOCK = 12           # O-RAN PRB: 12 resource elements (complex samples)
BFP_EXP_BITS = 4         # O-RAN udCompParam exponent field (4 bits; the spec pads it to a byte with 4 reserved bits)
MAX_BITS = 16            # deepest bit depth any codec tries

# Loading factors (scale / max|v|) tried per frame when the encoder optimises the quantiser range.  At 1-3 bits
# the max-abs range wastes most levels on rare peaks (the MSE-optimal uniform quantiser for a Gaussian spans
# about +-1.6, +-2.0, +-2.3 sigma for 1, 2, 3 bits - Max 1960 - while peaks of ~2000 Gaussian values sit near
# +-3.5 sigma), so clipping the range is worth several dB; from 6 bits on max-abs is already near optimal.
_LOADING_GRID = {1: (1.0, 0.7, 0.55, 0.45, 0.37, 0.3), 2: (1.0, 0.8, 0.65, 0.55, 0.47, 0.4),
                 3: (1.0, 0.85, 0.72, 0.62, 0.53), 4: (1.0, 0.9, 0.8, 0.7), 5: (1.0, 0.9, 0.8)}


# ----------------------------------------------------------------------------------------------- helpers
def snr_db(x: np.ndarray, xhat: np.ndarray) -> float:
    """Aggregate reconstruction SNR in dB over all frames."""
    x = np.asarray(x)
    err = np.sum(np.abs(x - xhat) ** 2, dtype=np.float64)
    sig = np.sum(np.abs(x) ** 2, dtype=np.float64)
    return float("inf") if err == 0 else float(10.0 * np.log10(sig / err))


def index_bits(n_configs: int) -> int:
    """Bits to send a configuration index out of ``n_configs`` (0 when there is no choice)."""
    return int(math.ceil(math.log2(n_configs))) if n_configs > 1 else 0


def _as_frames(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or not np.iscomplexobj(x):
        raise ValueError(f"expected complex (N, {N_SAMPLES}) frames, got {x.dtype} {x.shape}")
    return x.astype(np.complex64, copy=False)


def _iq(x: np.ndarray) -> np.ndarray:
    """complex (N, K) -> float32 (N, 2K) as [I..., Q...]."""
    return np.concatenate([x.real, x.imag], axis=1).astype(np.float32, copy=False)


def _from_iq(v: np.ndarray) -> np.ndarray:
    k = v.shape[1] // 2
    return (v[:, :k] + 1j * v[:, k:]).astype(np.complex64)


def _float16_up(s: np.ndarray) -> np.ndarray:
    """Round positive scales to float16, never downwards (a scale rounded down would clip the peak sample)."""
    s = np.maximum(np.asarray(s, dtype=np.float32), np.float32(np.finfo(np.float16).tiny))
    h = s.astype(np.float16)
    low = h.astype(np.float32) < s
    h[low] = np.nextafter(h[low], np.float16(np.inf))
    return h


def quantise_midrise(v: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    """Uniform mid-rise quantiser on [-scale, scale] per frame: real (N, M), scale (N,) -> int32 codes."""
    half = 1 << (bits - 1)
    step = (2.0 * scale.astype(np.float32) / (1 << bits))[:, None]
    return np.clip(np.floor(v / step), -half, half - 1).astype(np.int32)


def dequantise_midrise(q: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    step = (2.0 * scale.astype(np.float32) / (1 << bits))[:, None]
    return ((q.astype(np.float32) + 0.5) * step).astype(np.float32)


def _sq_best_scale(v: np.ndarray, bits: int, optimise: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame float16 scale for ``bits``-bit mid-rise SQ of real rows ``v``.

    Max-abs when not optimising; otherwise the loading factor from ``_LOADING_GRID`` with the lowest squared
    error, per frame (encoder-only search: the decoder just reads the scale).
    Returns (scale float16 (N,), codes int32 (N, M), squared error float64 (N,)).
    """
    peak = np.abs(v).max(axis=1)
    grid = _LOADING_GRID.get(bits, (1.0,)) if optimise else (1.0,)
    best = None
    for f in grid:
        s = _float16_up(peak * f)
        q = quantise_midrise(v, s, bits)
        e = np.sum((dequantise_midrise(q, s, bits) - v) ** 2, axis=1, dtype=np.float64)
        if best is None:
            best = [s, q, e]
        else:
            better = e < best[2]
            best[0] = np.where(better, s, best[0])
            best[1] = np.where(better[:, None], q, best[1])
            best[2] = np.where(better, e, best[2])
    return best[0], best[1], best[2]


def _decimate_plain(x: np.ndarray, m: int) -> np.ndarray:
    """Keep every m-th sample, no anti-alias filter (the naive variant)."""
    return x[:, ::m]


def _interp_linear(y: np.ndarray, m: int, n: int = N_SAMPLES) -> np.ndarray:
    """Linear interpolation of samples kept at 0, m, 2m, ... back to n samples (held after the last one)."""
    if m == 1:
        return y
    y = y.astype(np.complex64, copy=False)
    nxt = np.concatenate([y[:, 1:], y[:, -1:]], axis=1)          # hold the last kept sample
    w = (np.arange(m, dtype=np.float32) / m)[None, None, :]
    out = y[:, :, None] * (1 - w) + nxt[:, :, None] * w           # (N, K, m): segment j covers jm .. jm+m-1
    return out.reshape(y.shape[0], -1)[:, :n]


def _pareto(cfgs: List[Tuple[int, int, int]]) -> List[Tuple[int, int, int]]:
    """Drop (bits, m, k) configurations dominated by one with the same decimation m and more bits."""
    best = {}
    for b, m, k in cfgs:
        if m not in best or b > best[m][0]:
            best[m] = (b, m, k)
    return sorted(best.values())


@dataclass
class Encoded:
    """What a codec transmits: integer codes + side information, and the exact bits each frame costs.

    ``codes`` rows are padded with zeros to the longest configuration; only the first ``code_len(cfg)`` entries
    of a row are sent.  ``configs`` is the budget-derived configuration list both ends know; ``cfg`` the
    per-frame index into it.  ``side`` holds the other side information (e.g. ``scale`` float16 (N,),
    ``exponent`` uint8 (N, blocks)).  ``code_bits`` (N,) is the bit depth of the codes in each row.
    """
    codec: str
    budget: int
    configs: List[tuple]
    cfg: np.ndarray
    codes: np.ndarray
    code_len: np.ndarray
    code_bits: np.ndarray
    bits: np.ndarray
    side: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mean_bits(self) -> float:
        return float(np.mean(self.bits))

    def check(self) -> None:
        """Assert that every sent code fits in its declared bit depth and every frame is within budget."""
        assert np.all(self.bits <= self.budget), "a frame exceeds the budget"
        for i in np.unique(self.cfg):
            rows = self.cfg == i
            b = int(self.code_bits[rows][0])
            n = int(self.code_len[rows][0])
            c = self.codes[rows, :n]
            assert c.min(initial=0) >= -(1 << (b - 1)) and c.max(initial=0) <= (1 << (b - 1)) - 1, \
                f"codes exceed {b} bits"


def _select_per_frame(candidates: Sequence[Callable[[], Tuple[np.ndarray, dict]]], n: int,
                      layout: Dict[str, Tuple[int, type]]) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Run each candidate encoder (returns (squared error (N,), payload dict)) and keep, per frame, the payload
    of the lowest-error one.  ``layout``: key -> (row width, 0 for a per-frame scalar; dtype).  Only the running
    best is kept, so memory stays at one candidate's worth whatever the number of configurations."""
    best_err = np.full(n, np.inf)
    best_idx = np.zeros(n, dtype=np.int16)
    out = {k: np.zeros((n, w) if w else (n,), dtype=dt) for k, (w, dt) in layout.items()}
    for i, run in enumerate(candidates):
        err, payload = run()
        rows = err < best_err
        if not rows.any():
            continue
        best_err[rows] = err[rows]
        best_idx[rows] = i
        for k, v in payload.items():
            if v.ndim == 2:
                out[k][rows] = 0
                out[k][rows, : v.shape[1]] = v[rows]
            else:
                out[k][rows] = v[rows]
    return best_idx, out


class _Codec:
    name = "codec"
    CHUNK = 512          # frames per encoder pass: keeps the candidate search's temporaries cache-sized

    def encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:
        """Encode frames (N, 1024) at ``bits_per_frame``; see ``Encoded``."""
        x = _as_frames(x)
        parts = [self._encode(x[i: i + self.CHUNK], bits_per_frame) for i in range(0, x.shape[0], self.CHUNK)]
        if len(parts) == 1:
            return parts[0]
        p0 = parts[0]
        cat = lambda key: np.concatenate([getattr(p, key) for p in parts])
        return Encoded(p0.codec, p0.budget, p0.configs, cat("cfg"), cat("codes"), cat("code_len"),
                       cat("code_bits"), cat("bits"),
                       {k: np.concatenate([p.side[k] for p in parts]) for k in p0.side})

    def _encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, enc: Encoded) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, x: np.ndarray, bits_per_frame: int) -> Tuple[np.ndarray, float]:
        enc = self.encode(x, bits_per_frame)
        return self.decode(enc), enc.mean_bits


# ----------------------------------------------------------------------------------- 1. uniform SQ of I/Q
class UniformSQ(_Codec):
    """Uniform scalar quantisation of I and Q with one float16 max-abs scale per frame.

    Configurations for a budget B: for each bit depth b = 1..16 the smallest decimation factor m >= 1 such that
    ``16 (scale) + index + 2 * ceil(1024/m) * b <= B``.  At B >= 2048 + 20 the full-rate configurations exist
    and win at high rates; below that only decimated ones (plain ``x[::m]``, linear interpolation at the
    decoder) remain.  ``optimise_loading=False`` (default) is the textbook max-abs scale; True lets the encoder
    clip the range (see ``_LOADING_GRID``).
    """
    name = "sq"

    def __init__(self, optimise_loading: bool = False, max_bits: int = MAX_BITS):
        self.optimise_loading = optimise_loading
        self.max_bits = max_bits

    def configs(self, budget: int, n: int = N_SAMPLES) -> List[Tuple[int, int, int]]:
        """[(bits, m, kept samples)] that fit ``budget`` (index bits included)."""
        for n_idx in range(0, 6):
            out = []
            for b in range(1, self.max_bits + 1):
                room = budget - SCALE_BITS - n_idx
                kmax = room // (2 * b)
                if kmax < 1:
                    continue
                m = -(-n // kmax)               # smallest m with ceil(n/m) <= kmax
                while -(-n // m) > kmax:
                    m += 1
                k = -(-n // m)
                if k >= 2:
                    out.append((b, m, k))
            out = _pareto(out)
            if index_bits(len(out)) <= n_idx:
                return out
        raise AssertionError("unreachable")

    def _cost(self, cfg_list, c) -> int:
        b, m, k = c
        return SCALE_BITS + index_bits(len(cfg_list)) + 2 * k * b

    def _encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:
        cl = self.configs(bits_per_frame, x.shape[1])
        if not cl:
            raise ValueError(f"budget {bits_per_frame} too small for SQ")

        def make(c):
            b, m, k = c

            def run():
                y = _decimate_plain(x, m)
                s, q, _ = _sq_best_scale(_iq(y), b, self.optimise_loading)
                xh = _interp_linear(_from_iq(dequantise_midrise(q, s, b)), m, x.shape[1])
                err = np.sum(np.abs(xh - x) ** 2, axis=1, dtype=np.float64)
                return err, {"codes": q, "scale": s}
            return run

        width = max(2 * c[2] for c in cl)
        idx, out = _select_per_frame([make(c) for c in cl], x.shape[0],
                                     {"codes": (width, np.int32), "scale": (0, np.float16)})
        codes, scale = out["codes"], out["scale"]
        costs = np.array([self._cost(cl, c) for c in cl])
        return Encoded(self.name, bits_per_frame, cl, idx, codes,
                       code_len=np.array([2 * cl[i][2] for i in idx]), code_bits=np.array([cl[i][0] for i in idx]),
                       bits=costs[idx], side={"scale": scale})

    def decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros((enc.cfg.shape[0], N_SAMPLES), np.complex64)
        for i in np.unique(enc.cfg):
            b, m, k = enc.configs[i]
            rows = enc.cfg == i
            y = _from_iq(dequantise_midrise(enc.codes[rows, : 2 * k], enc.side["scale"][rows], b))
            out[rows] = _interp_linear(y, m)
        return out


# ------------------------------------------------------------------------ 2. O-RAN block floating point
def bfp_compress(v: np.ndarray, width: int, rounding: str = "nearest") -> Tuple[np.ndarray, np.ndarray]:
    """O-RAN WG4 CUS (Annex A.1.2) block floating point on int16 IQ.

    ``v``: integer (N, blocks, 24) = 12 complex samples per block as interleaved I/Q.  Per block the exponent is
    ``max(0, bitlen(maxAbs) + 1 - width)`` with ``maxAbs = max(max(v), -min(v) - 1)`` (two's-complement
    headroom: -2^k needs no extra bit), which is the spec's rule as implemented in srsRAN
    (``iq_compression_bfp_impl``); it lies in 0..15, a 4-bit field.  Mantissas are ``v / 2^exponent`` as
    ``width``-bit two's complement.  The reference implementations truncate (arithmetic shift); ``rounding=
    "nearest"`` (default) rounds instead - same bits, no -0.5 LSB bias, ~6 dB less error at equal width.
    Returns (mantissa int32 (N, blocks, 24), exponent uint8 (N, blocks)).
    """
    v = v.astype(np.int32)
    max_abs = np.maximum(v.max(axis=2), -v.min(axis=2) - 1)
    bitlen = np.frexp(np.maximum(max_abs, 0).astype(np.float64))[1]   # frexp(0) -> 0, else floor(log2)+1
    exp = np.maximum(bitlen + 1 - width, 0).astype(np.int32)
    half = 1 << (width - 1)
    if rounding == "nearest":
        man = np.floor(v / (2.0 ** exp)[..., None] + 0.5)
    elif rounding == "floor":
        man = v >> exp[..., None]
    else:
        raise ValueError(rounding)
    man = np.clip(man, -half, half - 1).astype(np.int32)
    return man, exp.astype(np.uint8)


def bfp_decompress(man: np.ndarray, exp: np.ndarray) -> np.ndarray:
    return man.astype(np.int64) << exp.astype(np.int64)[..., None]


class BlockFloatingPoint(_Codec):
    """O-RAN fronthaul BFP: PRBs of 12 complex samples, a 4-bit shared exponent, ``w``-bit I and Q mantissas.

    The complex64 frame is first converted to int16 IQ with a fixed full scale (``full_scale`` -> 32767, as an
    O-RAN RU carries fixed point with a system-defined gain; frames normalised to max|x| = 1 never clip), so
    there is no per-frame scale.  Cost per frame: ``index + 4 * ceil(K/12) + 2 * K * w`` for K kept samples
    (the last PRB of 1024 = 85*12 + 4 is partial; its missing REs are not sent).  Configurations: w = 1..16,
    each with the smallest plain-decimation factor m that fits (linear interpolation at the decoder), exactly
    as for ``UniformSQ``.
    """
    name = "bfp"

    def __init__(self, full_scale: float = 1.0, rounding: str = "nearest", max_bits: int = MAX_BITS):
        self.full_scale = float(full_scale)
        self.rounding = rounding
        self.max_bits = max_bits

    @staticmethod
    def _cost_k(k: int, w: int) -> int:
        return BFP_EXP_BITS * (-(-k // BFP_BLOCK)) + 2 * k * w

    def configs(self, budget: int, n: int = N_SAMPLES) -> List[Tuple[int, int, int]]:
        for n_idx in range(0, 6):
            out = []
            for w in range(1, self.max_bits + 1):
                for m in range(1, n + 1):
                    k = -(-n // m)
                    if n_idx + self._cost_k(k, w) <= budget:
                        if k >= 2:
                            out.append((w, m, k))
                        break
            out = _pareto(out)
            if index_bits(len(out)) <= n_idx:
                return out
        raise AssertionError("unreachable")

    def _to_int16(self, y: np.ndarray) -> np.ndarray:
        g = 32767.0 / self.full_scale
        return np.clip(np.rint(_iq(y) * g), -32768, 32767).astype(np.int32)

    def _blocks(self, vi: np.ndarray) -> np.ndarray:
        """int (N, 2K) [I.., Q..] -> (N, blocks, 24) interleaved per PRB, zero-padded."""
        n, k2 = vi.shape
        k = k2 // 2
        nb = -(-k // BFP_BLOCK)
        inter = np.zeros((n, nb * BFP_BLOCK, 2), np.int32)
        inter[:, :k, 0] = vi[:, :k]
        inter[:, :k, 1] = vi[:, k:]
        return inter.reshape(n, nb, 2 * BFP_BLOCK)

    def _unblocks(self, blk: np.ndarray, k: int) -> np.ndarray:
        n = blk.shape[0]
        inter = blk.reshape(n, -1, 2)[:, :k]
        g = self.full_scale / 32767.0
        return ((inter[..., 0] + 1j * inter[..., 1]) * g).astype(np.complex64)

    def _encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:
        cl = self.configs(bits_per_frame, x.shape[1])
        if not cl:
            raise ValueError(f"budget {bits_per_frame} too small for BFP")

        def make(c):
            w, m, k = c

            def run():
                blk = self._blocks(self._to_int16(_decimate_plain(x, m)))
                man, exp = bfp_compress(blk, w, self.rounding)
                xh = _interp_linear(self._unblocks(bfp_decompress(man, exp), k), m, x.shape[1])
                err = np.sum(np.abs(xh - x) ** 2, axis=1, dtype=np.float64)
                # Padding REs of the last PRB are zeros and are not transmitted; drop them from the codes.
                man = man.reshape(man.shape[0], -1, 2)[:, :k].reshape(man.shape[0], -1)
                return err, {"codes": man, "exponent": exp}
            return run

        width = max(2 * c[2] for c in cl)
        n_blk = max(-(-c[2] // BFP_BLOCK) for c in cl)
        idx, out = _select_per_frame([make(c) for c in cl], x.shape[0],
                                     {"codes": (width, np.int32), "exponent": (n_blk, np.uint8)})
        codes, exps = out["codes"], out["exponent"]
        nidx = index_bits(len(cl))
        costs = np.array([nidx + self._cost_k(c[2], c[0]) for c in cl])
        return Encoded(self.name, bits_per_frame, cl, idx, codes,
                       code_len=np.array([2 * cl[i][2] for i in idx]), code_bits=np.array([cl[i][0] for i in idx]),
                       bits=costs[idx], side={"exponent": exps})

    def decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros((enc.cfg.shape[0], N_SAMPLES), np.complex64)
        for i in np.unique(enc.cfg):
            w, m, k = enc.configs[i]
            rows = enc.cfg == i
            nb = -(-k // BFP_BLOCK)
            man = np.zeros((int(rows.sum()), nb * BFP_BLOCK * 2), np.int32)
            man[:, : 2 * k] = enc.codes[rows, : 2 * k]
            blk = bfp_decompress(man.reshape(-1, nb, 2 * BFP_BLOCK), enc.side["exponent"][rows, :nb])
            out[rows] = _interp_linear(self._unblocks(blk, k), m)
        return out


# ---------------------------------------------------------- 3. resample to the occupied band, then quantise
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
    x = _as_frames(x)
    e = np.abs(_dct_c(x)) ** 2
    cum = np.cumsum(e, axis=1)
    k = np.argmax(cum >= fraction * cum[:, -1:], axis=1) + 1
    return k / x.shape[1]


class ResampleSQ(_Codec):
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
    ``optimise_loading=True`` (default) lets the encoder clip the SQ range per frame (``_LOADING_GRID``), which
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
            cl = self.bw99_configs(bits_per_frame, n)
            if not cl:
                raise ValueError(f"budget {bits_per_frame} too small for resample/bw99")
            grid_k = np.array([k for _, k in cl])
            kq = np.ceil(occupied_bandwidth(x, self.fraction) * n / self.K_GRID) * self.K_GRID
            # the estimated band, or the widest band 1 bit per component allows when the budget is short
            frame_cfg = np.minimum(np.searchsorted(grid_k, kq), len(cl) - 1)
        if not cl:
            raise ValueError(f"budget {bits_per_frame} too small for resample")

        def make(c, rows=None):
            b, k = c

            def run():
                sel = slice(None) if rows is None else rows
                y = _idct_c(c_full[sel, :k] * np.sqrt(k / n)).astype(np.complex64)
                s, q, e = _sq_best_scale(_iq(y), b, self.optimise_loading)
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
            idx, out = _select_per_frame([make(c) for c in cl], x.shape[0], layout)
        else:   # configuration fixed per frame by the bandwidth estimate: each candidate only sees its frames
            idx, out = _select_per_frame([make(c, frame_cfg == i) for i, c in enumerate(cl)], x.shape[0], layout)
        codes, scale = out["codes"], out["scale"]
        costs = np.array([SCALE_BITS + nidx + 2 * k * b for b, k in cl])
        return Encoded(self.name, bits_per_frame, cl, idx, codes,
                       code_len=np.array([2 * cl[i][1] for i in idx]), code_bits=np.array([cl[i][0] for i in idx]),
                       bits=costs[idx], side={"scale": scale})

    def decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros((enc.cfg.shape[0], N_SAMPLES), np.complex64)
        for i in np.unique(enc.cfg):
            b, k = enc.configs[i]
            rows = enc.cfg == i
            y = _from_iq(dequantise_midrise(enc.codes[rows, : 2 * k], enc.side["scale"][rows], b))
            out[rows] = dct_upsample(y)
        return out


# ------------------------------------------------------------------------------------- 4. truncated SVD
def svd_components_for_energy(x: np.ndarray, fraction: float = 0.99, representation: str = "real") -> int:
    """Smallest number of singular components of the frame matrix that keep ``fraction`` of its energy.

    ``representation="real"`` (default, what ``SVDCodec`` uses): rows are 2048-dim [I, Q] vectors, so the
    count is in real coefficients; ``"complex"``: rows are 1024-dim complex vectors (a circular complex
    signal of complex rank k has real rank 2k).  Uncentred (truncated SVD, not mean-removed PCA): IQ frames
    are zero-mean anyway, and the bound should count the energy as transmitted.
    """
    x = _as_frames(x)
    a = _iq(x).astype(np.float64) if representation == "real" else x.astype(np.complex128)
    if representation not in ("real", "complex"):
        raise ValueError(representation)
    g = a @ a.conj().T if a.shape[0] < a.shape[1] else a.conj().T @ a
    ev = np.clip(np.linalg.eigvalsh(g)[::-1].real, 0, None)
    cum = np.cumsum(ev)
    # tiny tolerance so that an exact rank-k signal at fraction=1.0 returns k, not k + round-off components
    return int(np.searchsorted(cum, fraction * cum[-1] * (1 - 1e-9)) + 1)


class SVDCodec(_Codec):
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
        a = _iq(_as_frames(train_x)).astype(np.float64)
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
                _, _, e = _sq_best_scale(self._sel_coef[:, :r], b, self.optimise_loading)
                err = float(np.sum(e + total - self._sel_energy[:, r - 1]))
                if err < best_err:
                    best, best_err = (r, b), err
            if best is None:
                raise ValueError(f"budget {budget} too small for SVD")
            self._choice[budget] = best
        return self._choice[budget]

    def _encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:
        r, b = self.choose(bits_per_frame)
        coef = _iq(x) @ self.basis[:, :r]
        s, q, _ = _sq_best_scale(coef, b, self.optimise_loading)
        nf = x.shape[0]
        return Encoded(self.name, bits_per_frame, [(r, b)], np.zeros(nf, np.int16), q,
                       code_len=np.full(nf, r), code_bits=np.full(nf, b),
                       bits=np.full(nf, SCALE_BITS + r * b), side={"scale": s})

    def decode(self, enc: Encoded) -> np.ndarray:
        r, b = enc.configs[0]
        coef = dequantise_midrise(enc.codes[:, :r], enc.side["scale"], b)
        return _from_iq(coef @ self.basis[:, :r].T)


# ----------------------------------------------------------------------------------- 5. lossless zstd
@dataclass
class LosslessResult:
    xhat: np.ndarray           # complex64 reconstruction from the int16 frames (lossless w.r.t. int16)
    bits_per_frame: float      # mean compressed bits per frame, incl. the float16 scale
    bits: np.ndarray           # per-frame bits
    roundtrip_ok: bool         # every frame decompressed to exactly the int16 it came from


def to_int16_iq(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-frame full-range int16 interleaved IQ (as an SDR delivers it) and the float16 scale to undo it."""
    x = _as_frames(x)
    peak = _float16_up(np.maximum(np.abs(x.real).max(1), np.abs(x.imag).max(1)))
    g = (32767.0 / peak.astype(np.float32))[:, None]
    iq = np.stack([np.rint(x.real * g), np.rint(x.imag * g)], axis=-1)
    return np.clip(iq, -32768, 32767).astype("<i2").reshape(x.shape[0], -1), peak


def lossless_reference(x: np.ndarray, level: int = 19, shuffle: bool = False) -> LosslessResult:
    """zstd (``level``) on each frame's int16 IQ separately (frames are independent, as for every other codec).

    Bits = 8 * compressed bytes (zstd frame header included; content size, checksum and dict id left out) + 16
    for the float16 scale.  ``shuffle=True`` compresses the high and low byte planes separately (blosc-style);
    on noise-like IQ it hardly matters because the low bytes are incompressible.
    """
    import zstandard as zstd

    q, peak = to_int16_iq(x)
    comp = zstd.ZstdCompressor(level=level, write_content_size=False, write_checksum=False, write_dict_id=False)
    dec = zstd.ZstdDecompressor()
    nbytes = q.shape[1] * 2
    bits = np.empty(q.shape[0], np.int64)
    ok = True
    for i in range(q.shape[0]):
        raw = q[i].view(np.uint8)
        payload = raw.reshape(-1, 2).T.copy() if shuffle else raw
        blob = comp.compress(payload.tobytes())
        bits[i] = 8 * len(blob) + SCALE_BITS
        back = np.frombuffer(dec.decompress(blob, max_output_size=nbytes), np.uint8)
        if shuffle:
            back = back.reshape(2, -1).T.reshape(-1)
        ok &= bool(np.array_equal(back.view("<i2"), q[i]))
    iq = q.reshape(q.shape[0], -1, 2).astype(np.float32) * (peak.astype(np.float32) / 32767.0)[:, None, None]
    return LosslessResult((iq[..., 0] + 1j * iq[..., 1]).astype(np.complex64), float(bits.mean()), bits, ok)


# ------------------------------------------------------------------------------------------- registry
def all_codecs(train_x: np.ndarray | None = None) -> Dict[str, Callable[[np.ndarray, int], Tuple[np.ndarray, float]]]:
    """name -> callable(x, bits_per_frame) -> (xhat complex64 (N, 1024), mean bits actually spent per frame).

    ``svd`` is included only when ``train_x`` is given (it needs a fitted basis; pass training frames, never the
    test set).  The lossless reference has no budget: call ``lossless_reference(x)`` separately.
    """
    reg: Dict[str, Callable] = {
        "sq": UniformSQ(),
        "bfp": BlockFloatingPoint(),
        "resample": ResampleSQ(),
    }
    if train_x is not None:
        reg["svd"] = SVDCodec().fit(train_x)
    return reg
