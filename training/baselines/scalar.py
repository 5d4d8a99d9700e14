# SPDX-License-Identifier: GPL-3.0-or-later
"""Baselines 1 and 2: uniform scalar quantisation of I/Q, and O-RAN block floating point."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from training.baselines.common import (BFP_BLOCK, BFP_EXP_BITS, BaselineCodec, Encoded, LOADING_GRID, MAX_BITS,
                                       N_SAMPLES, SCALE_BITS, components, decimate_plain, dequantise_midrise,
                                       from_components, index_bits, interp_linear, pareto, select_per_frame,
                                       sq_best_scale)

class UniformSQ(BaselineCodec):
    """Uniform scalar quantisation of I and Q with one float16 max-abs scale per frame.

    Configurations for a budget B: for each bit depth b = 1..16 the smallest decimation factor m >= 1 such that
    ``16 (scale) + index + 2 * ceil(1024/m) * b <= B``.  At B >= 2048 + 20 the full-rate configurations exist
    and win at high rates; below that only decimated ones (plain ``x[::m]``, linear interpolation at the
    decoder) remain.  ``optimise_loading=False`` (default) is the textbook max-abs scale; True lets the encoder
    clip the range (see ``LOADING_GRID``).
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
            out = pareto(out)
            if index_bits(len(out)) <= n_idx:
                return out
        raise AssertionError("unreachable")

    def _cost(self, cfg_list, c) -> int:
        b, m, k = c
        return SCALE_BITS + index_bits(len(cfg_list)) + 2 * k * b

    def _encode(self, x: np.ndarray, bits_per_frame: int) -> Encoded:
        cl = self._configs_within(self.configs(bits_per_frame, x.shape[1]), bits_per_frame, "SQ")

        def make(c):
            b, m, k = c

            def run():
                y = decimate_plain(x, m)
                s, q, _ = sq_best_scale(components(y), b, self.optimise_loading)
                xh = interp_linear(from_components(dequantise_midrise(q, s, b)), m, x.shape[1])
                err = np.sum(np.abs(xh - x) ** 2, axis=1, dtype=np.float64)
                return err, {"codes": q, "scale": s}
            return run

        width = max(2 * c[2] for c in cl)
        idx, out = select_per_frame([make(c) for c in cl], x.shape[0],
                                     {"codes": (width, np.int32), "scale": (0, np.float16)})
        return self._chosen(bits_per_frame, cl, idx, out["codes"], [self._cost(cl, c) for c in cl], 2,
                            {"scale": out["scale"]})

    def decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros((enc.cfg.shape[0], N_SAMPLES), np.complex64)
        for (b, m, k), rows in self._frames_by_config(enc):
            y = from_components(dequantise_midrise(enc.codes[rows, : 2 * k], enc.side["scale"][rows], b))
            out[rows] = interp_linear(y, m)
        return out


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


class BlockFloatingPoint(BaselineCodec):
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
            out = pareto(out)
            if index_bits(len(out)) <= n_idx:
                return out
        raise AssertionError("unreachable")

    def _to_int16(self, y: np.ndarray) -> np.ndarray:
        g = 32767.0 / self.full_scale
        return np.clip(np.rint(components(y) * g), -32768, 32767).astype(np.int32)

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
        cl = self._configs_within(self.configs(bits_per_frame, x.shape[1]), bits_per_frame, "BFP")

        def make(c):
            w, m, k = c

            def run():
                blk = self._blocks(self._to_int16(decimate_plain(x, m)))
                man, exp = bfp_compress(blk, w, self.rounding)
                xh = interp_linear(self._unblocks(bfp_decompress(man, exp), k), m, x.shape[1])
                err = np.sum(np.abs(xh - x) ** 2, axis=1, dtype=np.float64)
                # Padding REs of the last PRB are zeros and are not transmitted; drop them from the codes.
                man = man.reshape(man.shape[0], -1, 2)[:, :k].reshape(man.shape[0], -1)
                return err, {"codes": man, "exponent": exp}
            return run

        width = max(2 * c[2] for c in cl)
        n_blk = max(-(-c[2] // BFP_BLOCK) for c in cl)
        idx, out = select_per_frame([make(c) for c in cl], x.shape[0],
                                     {"codes": (width, np.int32), "exponent": (n_blk, np.uint8)})
        nidx = index_bits(len(cl))
        return self._chosen(bits_per_frame, cl, idx, out["codes"], [nidx + self._cost_k(c[2], c[0]) for c in cl], 2,
                            {"exponent": out["exponent"]})

    def decode(self, enc: Encoded) -> np.ndarray:
        out = np.zeros((enc.cfg.shape[0], N_SAMPLES), np.complex64)
        for (w, m, k), rows in self._frames_by_config(enc):
            nb = -(-k // BFP_BLOCK)
            man = np.zeros((int(rows.sum()), nb * BFP_BLOCK * 2), np.int32)
            man[:, : 2 * k] = enc.codes[rows, : 2 * k]
            blk = bfp_decompress(man.reshape(-1, nb, 2 * BFP_BLOCK), enc.side["exponent"][rows, :nb])
            out[rows] = interp_linear(self._unblocks(blk, k), m)
        return out


