# SPDX-License-Identifier: GPL-3.0-or-later
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

from typing import Callable, Dict, Tuple

import numpy as np

from training.baselines.common import (BFP_BLOCK, BFP_EXP_BITS, MAX_BITS, N_SAMPLES, SCALE_BITS, Encoded,
                                       dequantise_midrise, index_bits, quantise_midrise, snr_db)
from training.baselines.lossless import LosslessResult, lossless_reference, to_int16_iq
from training.baselines.scalar import BlockFloatingPoint, UniformSQ, bfp_compress, bfp_decompress
from training.baselines.spectral import (ResampleSQ, SVDCodec, dct_resample, dct_upsample, occupied_bandwidth,
                                         svd_components_for_energy)


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




__all__ = ["BFP_BLOCK", "BFP_EXP_BITS", "MAX_BITS", "N_SAMPLES", "SCALE_BITS", "BlockFloatingPoint", "Encoded",
           "LosslessResult", "ResampleSQ", "SVDCodec", "UniformSQ", "all_codecs", "bfp_compress", "bfp_decompress",
           "dct_resample", "dct_upsample", "dequantise_midrise", "index_bits", "lossless_reference",
           "occupied_bandwidth", "quantise_midrise", "snr_db", "svd_components_for_energy", "to_int16_iq"]
