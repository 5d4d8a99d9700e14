# SPDX-License-Identifier: GPL-3.0-or-later
"""Choosing a coreset from scores: FoQuS's tiered sampling, the top-k and random baselines, and the
class / Es/N0 strata every method can be applied within."""
from __future__ import annotations

import numpy as np

from training.coreset.scores import DEFAULT_WEIGHTS, all_scores

METHODS = ("foqus", "random", "forgetting", "el2n")
# ASSUMED (docs/coreset.md, "Method"), like the score weights.
DEFAULT_TIER_BOUNDS = (1 / 3, 2 / 3)             # rank quantiles separating high | middle | low tiers
DEFAULT_TIER_PROPORTIONS = (0.5, 0.3, 0.2)       # share of the coreset drawn from high, middle, low

# -- sampling -------------------------------------------------------------------------------------
def coreset_size(n: int, fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} not in (0, 1]")
    return min(n, max(1, int(round(fraction * n))))


def apportion(k: int, weights) -> np.ndarray:
    """Split k into integers proportional to weights (largest remainder; ties to the earlier entry)."""
    w = np.asarray(weights, dtype=np.float64)
    if k == 0 or w.sum() <= 0:
        return np.zeros(len(w), np.int64)
    exact = k * w / w.sum()
    out = np.floor(exact).astype(np.int64)
    rest = exact - out
    for i in np.argsort(-rest, kind="stable")[: k - out.sum()]:
        out[i] += 1
    return out


def tier_quotas(k: int, sizes, proportions) -> np.ndarray:
    """k * proportions (summing exactly to k); quota beyond a tier's size goes to the tiers with room,
    in proportion (or by room where their proportions are zero)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    p = np.asarray(proportions, dtype=np.float64)
    if k > sizes.sum():
        raise ValueError(f"{k} frames asked for, {sizes.sum()} available")
    quota = np.minimum(apportion(k, p), sizes)
    while quota.sum() < k:
        room = sizes - quota
        weights = np.where(room > 0, p, 0.0)
        if weights.sum() <= 0:
            weights = room.astype(np.float64)
        quota = quota + np.minimum(apportion(k - quota.sum(), weights), room)
    return quota


def rank(score: np.ndarray, seed) -> np.ndarray:
    """Indices by descending score; equal scores in a random order fixed by the seed."""
    tiebreak = np.random.default_rng(seed).random(len(score))
    return np.lexsort((tiebreak, -np.asarray(score, dtype=np.float64)))


def tiers(score: np.ndarray, seed, bounds=DEFAULT_TIER_BOUNDS) -> np.ndarray:
    """Tier of every frame: 0 = highest scores, 1 = middle, 2 = lowest (rank quantiles `bounds`)."""
    n = len(score)
    b = [0.0, *bounds, 1.0]
    if not all(0 <= lo <= hi <= 1 for lo, hi in zip(b[:-1], b[1:])):
        raise ValueError("tier bounds: increasing quantiles in [0, 1]")
    edges = [int(round(q * n)) for q in b]
    label = np.empty(n, np.int64)
    order = rank(score, [*np.atleast_1d(seed), 0])
    for t in range(len(edges) - 1):
        label[order[edges[t]:edges[t + 1]]] = t
    return label


def tiered_sample(score: np.ndarray, k: int, seed, bounds=DEFAULT_TIER_BOUNDS,
                  proportions=DEFAULT_TIER_PROPORTIONS) -> np.ndarray:
    """FoQuS's tiered sampling: k frames, `proportions` of them drawn uniformly from each score tier."""
    if len(proportions) != len(bounds) + 1:
        raise ValueError("one proportion per tier (len(bounds) + 1)")
    label = tiers(score, seed, bounds)
    members = [np.flatnonzero(label == t) for t in range(len(proportions))]
    quota = tier_quotas(k, [len(m) for m in members], proportions)
    rng = np.random.default_rng([*np.atleast_1d(seed), 1])
    picked = [rng.choice(m, size=q, replace=False) for m, q in zip(members, quota) if q > 0]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def top_k(score: np.ndarray, k: int, seed) -> np.ndarray:
    return np.sort(rank(score, seed)[:k])


def random_sample(n: int, k: int, seed) -> np.ndarray:
    return np.sort(np.random.default_rng([*np.atleast_1d(seed), 2]).choice(n, size=k, replace=False))


def esn0_strata(esn0: np.ndarray, strata: int) -> np.ndarray:
    """Stratum 0..strata-1 of every frame: equal-count Es/N0 bins (lowest Es/N0 in stratum 0; equal
    values keep their order, so the split is deterministic)."""
    e = np.asarray(esn0, dtype=np.float64)
    if strata < 1 or strata > max(1, len(e)):
        raise ValueError(f"Es/N0 strata must be in 1..{len(e)}")
    out = np.empty(len(e), np.int64)
    out[np.argsort(e, kind="stable")] = np.arange(len(e)) * strata // max(1, len(e))
    return out


def select(method: str, traj: dict, fraction: float, seed: int, *, weights=DEFAULT_WEIGHTS,
           bounds=DEFAULT_TIER_BOUNDS, proportions=DEFAULT_TIER_PROPORTIONS, el2n_epochs: int | None = None,
           class_balanced: bool = False, esn0: np.ndarray | None = None, snr_strata: int = 0,
           scores: dict | None = None) -> np.ndarray:
    """Sorted indices (into the recorded training set) of the coreset `method` picks at `fraction`.

    `class_balanced` and/or `snr_strata` (with `esn0`, dB per frame) apply the method within every
    class, every one of `snr_strata` equal-count Es/N0 bins, or every (class, bin) pair; k is split by
    the groups' sizes, so the coreset keeps the training set's class and Es/N0 make-up."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    labels = traj["labels"]
    n = len(labels)
    k = coreset_size(n, fraction)
    if method != "random" and scores is None:
        scores = all_scores(traj, weights, el2n_epochs)

    def pick(pool: np.ndarray, kk: int, sub_seed) -> np.ndarray:
        if kk == 0:
            return np.zeros(0, np.int64)
        if method == "random":
            return pool[random_sample(len(pool), kk, sub_seed)]
        if method == "foqus":
            return pool[tiered_sample(scores["foqus"][pool], kk, sub_seed, bounds, proportions)]
        key = "forgetting_rank" if method == "forgetting" else "el2n"
        return pool[top_k(scores[key][pool], kk, sub_seed)]

    group = np.zeros(n, np.int64)
    if class_balanced:
        group = np.asarray(labels, dtype=np.int64).copy()
    if snr_strata:
        if esn0 is None or len(esn0) != n:
            raise ValueError("Es/N0 strata need the Es/N0 of every training frame (noisy recordings only)")
        group = group * snr_strata + esn0_strata(esn0, snr_strata)
    if not (class_balanced or snr_strata):
        return pick(np.arange(n), k, [seed])
    groups, counts = np.unique(group, return_counts=True)
    share = tier_quotas(k, counts, counts)  # k split by group size, capped at group sizes
    return np.sort(np.concatenate([pick(np.flatnonzero(group == g), int(q), [seed, int(g)])
                                   for g, q in zip(groups, share)]))

