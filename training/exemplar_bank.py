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


def bank_frames(data: dict, per_class: int, n_classes: int, accept=None) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` training frames of each class: the first half of them from the clean split, the rest from
    the impaired one, other frames than the clean ones (all from the one split where the preset has no
    impairments); frame i of each half has class i % n_classes. `accept`: frames -> bool mask; the frames it
    refuses are passed over for the next ones of their class in split order."""
    x, y = data["train"]
    y = np.asarray(y)
    clean = data.get("train_clean", (x, y))[0]
    n_clean = (per_class + 1) // 2 if "train_clean" in data else per_class

    def take(source, pool, n, c):
        if n == 0:
            return np.zeros(0, np.int64)
        chosen = []
        for start in range(0, len(pool), 2 * n):  # candidates in chunks, so the detector scores few frames
            part = pool[start:start + 2 * n]
            chosen.extend(part[accept(source[part])] if accept is not None else part)
            if len(chosen) >= n:
                return np.asarray(chosen[:n], np.int64)
        raise ValueError(f"exemplars: {per_class} frames per class asked, the training split has fewer of class {c}"
                         + (" that the unknown detector accepts" if accept is not None else ""))
    first, rest = [], []
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        first.append(take(clean, members, n_clean, c))
        rest.append(take(x, members[~np.isin(members, first[-1])], per_class - n_clean, c))
    first, rest = np.stack(first, 1).reshape(-1), np.stack(rest, 1).reshape(-1)
    frames = np.concatenate([clean[first], x[rest]])
    return frames.astype(np.complex64), np.concatenate([y[first], y[rest]]).astype(np.int64)


def detector_accepts(detector, limit: float):
    """A bank_frames `accept`: frames whose unknown score from the run's `detector` (a Classifier whose last
    output is "unknown", training.classifiers.detector_classifier) is at most `limit`, the unknown flag's
    threshold on the clean validation originals (training.classifiers.calibration_threshold, which
    fit_unknown_flag then takes as that set's threshold). A bank frame the detector takes for unknown would
    be decoded for every frame that picks it; with the training split's frames the bank held 15 of 1200 such
    frames (32qam_cross and ofdm-256), each picked by several frames, and 1.1-1.9 % of levels 2-4's outputs
    were flagged (training/README.md, session 29)."""
    return lambda frames: detector.predict_proba(frames)[:, -1] <= limit


def exemplar_stage(cfg: dict, data: dict, codec_model, n_classes: int, log,
                   accept=None) -> tuple[ExemplarBank | None, float]:
    """The run's bank (None where the preset has no ``exemplars``) and the seconds it took; `accept` as for
    bank_frames (train.py: detector_accepts with the run's unknown detector)."""
    spec = cfg.get("exemplars")
    if not spec:
        return None, 0.0
    levels = sorted({int(v) for v in spec["levels"]})  # build() checks they carry a class token
    t = time.time()
    frames, labels = bank_frames(data, int(spec["per_class"]), n_classes, accept)
    bank = build(Codec(codec_model), frames, labels, levels, top_k=int(spec.get("top_k", TOP_K)))
    seconds = time.time() - t
    log.note(f"exemplars: {len(frames)} frames ({spec['per_class']} per class) for levels {levels} in {seconds:.1f} s")
    return bank, seconds
