# SPDX-License-Identifier: GPL-3.0-or-later
"""The exemplar bank of a run (hqarf.exemplars): training frames of each class that the decoder outputs at the
bank's levels instead of the network's rendering. Built once the codec is complete, from the preset's
``exemplars`` (levels, frames per class), and written beside the codec by train.py; 5-10 s for the default
preset. The frames come from the training split only: half of each class's clean, half through the receiver
model (other frames than the clean ones), so the bank holds captures' noise, phase and offsets too."""
from __future__ import annotations

import time

import numpy as np

from gnuradio.hqarf.codec import Codec
from gnuradio.hqarf.exemplars import TOP_K, ExemplarBank, build


def bank_frames(data: dict, per_class: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` training frames of each class (frame i has class i % n_classes): the first half of them
    from the clean split, the next from the impaired one (all from the one split where the preset has no
    impairments)."""
    x, y = data["train"]
    clean = data.get("train_clean", (x, y))[0]
    n_clean = (per_class + 1) // 2 if "train_clean" in data else per_class
    available = len(y) // n_classes
    if per_class > available:
        raise ValueError(f"exemplars: {per_class} frames per class asked, the training split has {available}")
    first = np.arange(n_clean * n_classes)
    rest = np.arange(n_clean * n_classes, per_class * n_classes)
    frames = np.concatenate([clean[first], x[rest]])
    return frames.astype(np.complex64), np.concatenate([y[first], y[rest]]).astype(np.int64)


def exemplar_stage(cfg: dict, data: dict, codec_model, n_classes: int, log) -> tuple[ExemplarBank | None, float]:
    """The run's bank (None where the preset has no ``exemplars``) and the seconds it took."""
    spec = cfg.get("exemplars")
    if not spec:
        return None, 0.0
    levels = sorted({int(v) for v in spec["levels"]})  # build() checks they carry a class token
    t = time.time()
    frames, labels = bank_frames(data, int(spec["per_class"]), n_classes)
    bank = build(Codec(codec_model), frames, labels, levels, top_k=int(spec.get("top_k", TOP_K)))
    seconds = time.time() - t
    log.note(f"exemplars: {len(frames)} frames ({spec['per_class']} per class) for levels {levels} in {seconds:.1f} s")
    return bank, seconds
