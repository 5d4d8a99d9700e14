# SPDX-License-Identifier: GPL-3.0-or-later
"""The data splits' base seeds and the random stream of one example: example i of a split, and each thing
made from it (its receiver impairments, the detector's noise and carrier outliers), draws from
SeedSequence([split seed, i(, stream)]), so it is a pure function of (split, index)."""
from __future__ import annotations

import numpy as np

# Disjoint per-split base seeds; example i of a split uses SeedSequence([seed, i]).
SPLIT_SEEDS = {"train": 6_000_001, "val": 6_000_002, "test": 6_000_003}


def split_rng(split: str, index: int, stream: int | None, seed_sequence: bool = False):
    """Example `index` of `split`'s random generator for `stream` (None: torchsig's own seed, the
    SeedSequence itself with `seed_sequence`); a clear KeyError for a split that does not exist."""
    if split not in SPLIT_SEEDS:
        raise KeyError(f"unknown split {split!r}; expected one of {sorted(SPLIT_SEEDS)}")
    words = [SPLIT_SEEDS[split], int(index)] + ([] if stream is None else [stream])
    sequence = np.random.SeedSequence(words)
    return sequence if seed_sequence else np.random.default_rng(sequence)
