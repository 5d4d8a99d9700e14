# SPDX-License-Identifier: GPL-3.0-or-later
"""Baseline 5: zstd on each frame's int16 IQ, the lossless reference (no budget)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from training.baselines.common import SCALE_BITS, as_frames, float16_up

@dataclass


class LosslessResult:
    xhat: np.ndarray           # complex64 reconstruction from the int16 frames (lossless w.r.t. int16)
    bits_per_frame: float      # mean compressed bits per frame, incl. the float16 scale
    bits: np.ndarray           # per-frame bits
    roundtrip_ok: bool         # every frame decompressed to exactly the int16 it came from


def to_int16_iq(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-frame full-range int16 interleaved IQ (as an SDR delivers it) and the float16 scale to undo it."""
    x = as_frames(x)
    peak = float16_up(np.maximum(np.abs(x.real).max(1), np.abs(x.imag).max(1)))
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
