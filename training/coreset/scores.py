# SPDX-License-Identifier: GPL-3.0-or-later
"""FoQuS's per-frame scores (forgetting, persistent error, quality) and the baselines' (EL2N), computed
from recorded trajectories. Formulas and their sources: docs/coreset.md, "Method"."""
from __future__ import annotations

import math

import numpy as np

# ASSUMED (docs/coreset.md, "Method"): the paper's values could not be read from any stored copy of
# its method section; keep them flags until checked against the paper itself.
DEFAULT_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)          # forgetting, persistent error, quality

# -- scores ---------------------------------------------------------------------------------------
def forgetting_score(correct: np.ndarray) -> np.ndarray:
    """Forgetting events per frame: epochs t >= 2 with c_{t-1} = 1 and c_t = 0 (Toneva et al. 2019)."""
    c = np.asarray(correct).astype(bool)
    return (c[:-1] & ~c[1:]).sum(0).astype(np.int64)


def persistent_error_score(correct: np.ndarray) -> np.ndarray:
    """Share of epochs in which the frame was misclassified: 1 = never learned (ASSUMED form; the
    paper's input, c_i^(t) = 1[epoch-t prediction == y_i], is `correct`, its equation unread)."""
    return 1.0 - np.asarray(correct).astype(np.float64).mean(0)


def quality_score(p_true: np.ndarray) -> np.ndarray:
    """Mean over epochs of 4 p (1 - p), p the true-class probability: 1 at p = 0.5 throughout,
    0 for frames always at p = 0 or p = 1 (ASSUMED form of "partially learned, useful gradients")."""
    p = np.asarray(p_true).astype(np.float64)
    return (4.0 * p * (1.0 - p)).mean(0)


def minmax(score: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the data set; a constant score becomes all zeros."""
    s = np.asarray(score, dtype=np.float64)
    span = s.max() - s.min() if s.size else 0.0
    return (s - s.min()) / span if span > 0 else np.zeros_like(s)


def foqus_score(correct: np.ndarray, p_true: np.ndarray, weights=DEFAULT_WEIGHTS) -> np.ndarray:
    """w_F F' + w_E E' + w_Q Q' with every score min-max normalised over the training set."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (3,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights: three non-negative numbers (forgetting, persistent error, quality)")
    w = w / w.sum()
    parts = (forgetting_score(correct), persistent_error_score(correct), quality_score(p_true))
    return sum(wi * minmax(s) for wi, s in zip(w, parts))


def forgetting_rank_score(correct: np.ndarray) -> np.ndarray:
    """The forgetting baseline's score: forgetting events, never-learned frames above every count."""
    c = np.asarray(correct).astype(bool)
    score = forgetting_score(c).astype(np.float64)
    score[~c.any(0)] = c.shape[0] + 1.0  # "forgotten infinitely often" (Toneva et al.)
    return score


def default_el2n_epochs(epochs: int) -> int:
    return max(1, math.ceil(epochs / 10))


def el2n_score(el2n: np.ndarray, epochs: int | None = None) -> np.ndarray:
    """Mean EL2N over the first `epochs` recorded epochs (Paul et al. 2021 score early in training)."""
    e = np.asarray(el2n).astype(np.float64)
    k = default_el2n_epochs(len(e)) if epochs is None else int(epochs)
    if not 1 <= k <= len(e):
        raise ValueError(f"el2n epochs must be in 1..{len(e)}")
    return e[:k].mean(0)


def all_scores(traj: dict, weights=DEFAULT_WEIGHTS, el2n_epochs: int | None = None) -> dict:
    c, p = traj["correct"], traj["p_true"]
    return {"forgetting": forgetting_score(c), "persistent_error": persistent_error_score(c),
            "quality": quality_score(p), "foqus": foqus_score(c, p, weights),
            "forgetting_rank": forgetting_rank_score(c), "el2n": el2n_score(traj["el2n"], el2n_epochs)}

