#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Coreset selection for the ModRec classifier: FoQuS (Lu et al., arXiv 2509.08300) and three baselines.

One full-data training run records every training frame's prediction trajectory; scores computed from
those trajectories pick a small coreset (1-30 % of the frames) on which later classifiers train in a
fraction of the time. Commands (all work on a run directory; `report` runs the whole grid):

    python training/coreset.py record --run-dir runs/coreset/clean --variant clean --epochs 12
    python training/coreset.py select --run-dir runs/coreset/clean --fractions 0.01,0.05,0.1,0.3 \
        --methods foqus,random,forgetting,el2n --seeds 0,1,2
    python training/coreset.py train  --run-dir runs/coreset/clean \
        --coreset runs/coreset/clean/coresets/foqus-0.05-seed0.npz --arch small --seed 0
    python training/coreset.py report --out runs/coreset --variants clean,noisy --seeds 0,1,2 \
        --fractions 0.01,0.05,0.1,0.3 --archs default,small          # JSON report + accuracy plot
    python training/coreset.py table runs/coreset/report.json    # its Markdown summary table

Run directory: `record.json` (data, classifier, hyper-parameters, full-data test accuracy, time),
`trajectories.npz`, `classifier/` (the recording classifier), `metrics.jsonl` + `train.log`;
`select` adds `scores.npz`, `coresets/<method>-<fraction>-seed<seed>.npz` and `selection.json`;
`train` appends to `results.jsonl`.

Trajectories (`trajectories.npz`, about 5 bytes per frame and epoch): for epoch t = 1..T and frame i,
`correct[t, i]` (uint8: argmax == label), `p_true[t, i]` (float16: softmax probability of the true
class) and `el2n[t, i]` (float16: || softmax - onehot(label) ||_2), plus `labels`. By default they are
read off the training forward pass itself (`--trajectory-source batch`, free: each frame is seen
once per epoch, its prediction taken just before the step that uses it, as Toneva et al. 2019 count
forgetting events); `--trajectory-source eval` adds a clean eval-mode pass over the training set after
every epoch instead (about 45 % more time per epoch, no dropout or augmentation in the record).

Scores, from T epochs of c_t = correct[t, i] and p_t = p_true[t, i]:

* forgetting score  F = #{t >= 2 : c_{t-1} = 1 and c_t = 0}   (forgetting events, Toneva et al.
  ICLR 2019, which FoQuS's forgetting score builds on; a frame flipped right -> wrong twice has F = 2).
* persistent error  E = (1/T) sum_t (1 - c_t)   (share of epochs misclassified: 1 for a frame never
  learned, 0 for one right from the first epoch; the summary: "stubborn examples that the model
  consistently struggles to learn").
* quality score     Q = (1/T) sum_t 4 p_t (1 - p_t)   (1 for a frame held at p = 0.5, 0 for one at
  p = 0 or 1; the summary: "partially learned but still provide valuable gradients": the cross-entropy
  gradient on the true-class logit is 1 - p, and partial learning means p away from 0, so the product
  peaks for the partially learned).
* FoQuS score       S = w_F F' + w_E E' + w_Q Q',  X' = (X - min X) / (max X - min X) over the training
  set (min-max normalisation; all 0 when X is constant), weights 1/3 each (`--weights`).
* tiered sampling: rank frames by S (descending, ties broken at random by the seed), cut the ranking
  into three tiers (high / middle / low score) at quantiles `--tier-bounds` (default 1/3, 2/3: equal
  thirds), draw k * `--tier-proportions` frames (default 0.5 / 0.3 / 0.2, largest-remainder rounding
  so the total is exactly k) uniformly at random within each tier; a tier too small for its quota
  passes the rest to the others in proportion. k = round(fraction * N), at least 1.

Where each comes from: FoQuS's structure (trajectory of one full-data run; forgetting, persistent
error and quality scores; normalised and combined into one score; three score tiers with a fixed
proportion drawn from each; 1-30 % sampling rates; cross-architecture use) is the paper's, as
described by its abstract and the summary in /work/shared/papers/foqus-coreset-selection-summary.md.
Checked against the paper's method section as far as the stored copies reach (the arXiv HTML of
v1 and the themoonlight.io / deeppaper / edgentiq write-ups, all of which stop before the score
equations): the setting is the paper's - a model trained on the whole training set for T epochs
with SGD, every sample's predicted label recorded at each epoch t (the epoch-t model applied to
x_i; whether inside the training pass or in a separate pass is not in what could be read, so
either `--trajectory-source` fits), and c_i^(t) the indicator that it equals the label y_i (which
is `correct[t, i]` here) - and so is the goal, a subset S with |S| = k N whose trained model
matches the full-data one (k the sampling rate).
The equations of F, E, Q, of the normalisation and combination, the tier boundaries and the tier
proportions could NOT be read there, nor the number of recording epochs: the forms of E and Q, the
min-max normalisation, the equal weights, the equal-third tiers and the 0.5/0.3/0.2 proportions
are this module's reading of the descriptions (marked ASSUMED below), every one of them is a flag,
and numbers from them are "FoQuS as reconstructed here", not the paper's FoQuS. F as Toneva et
al.'s count of right -> wrong flips is likewise a reading (of "samples near the decision boundary
that are easily forgotten"), though the likeliest one.

Baselines: `random` (uniform without replacement); `forgetting` (the k frames with most forgetting
events, never-learned frames first, as Toneva et al. count them as forgotten infinitely often, ties
at random); `el2n` (Paul et al., "Deep Learning on a Data Diet", NeurIPS 2021: the k frames with the
largest EL2N = || softmax - onehot ||_2, here averaged over the first `--el2n-epochs` recorded epochs,
default max(1, ceil(T / 10)), from the single recording run instead of the paper's 10 inits).
`--class-balanced` applies any method within each class (k split by class frequency). `--snr-strata N`
applies it within each of N equal-count Es/N0 bins of a noisy recording (with `--class-balanced`:
within each class and bin), so the coreset keeps the training set's Es/N0 make-up: an extension
aimed at the paper's motivation (SNR-blind selection over-samples one end of the Es/N0 range), not
a step of the paper's FoQuS, which is SNR-blind as far as it could be read.

Data: 6Mod from training.data; `--variant noisy` adds AWGN at an Es/N0 drawn per frame uniformly in
[-4, 20] dB (training.data.add_awgn; fixed seeds per split, so every command sees the same frames).
Training on a coreset uses the recording run's epochs, batch and learning rate (the usual coreset
protocol: same epochs, so time scales with the fraction); `--min-steps` puts a floor under the number
of optimiser steps for very small coresets. The classifier recipe is training/stages.py's (AdamW,
one-cycle LR, label smoothing 0.05, its AWGN augmentation), in a loop of its own that records
trajectories and sees every frame once per epoch. On noisy data every run also records its test
accuracy per 4 dB Es/N0 bin (`test_accuracy_by_esn0`; the report's per-bin table).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.common import REPO, RunLog, git_commit  # noqa: E402,F401  (sets up import paths)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hqarf.classifier import Classifier, ClassifierConfig, ModRecNet  # noqa: E402
from hqarf.codec import to_iq  # noqa: E402

METHODS = ("foqus", "random", "forgetting", "el2n")
TRAJECTORY_FILE = "trajectories.npz"

# ASSUMED (see the module docstring): the paper's values could not be read from any stored copy of
# its method section; keep them flags until checked against the paper itself.
DEFAULT_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)          # forgetting, persistent error, quality
DEFAULT_TIER_BOUNDS = (1 / 3, 2 / 3)             # rank quantiles separating high | middle | low tiers
DEFAULT_TIER_PROPORTIONS = (0.5, 0.3, 0.2)       # share of the coreset drawn from high, middle, low

# Noisy 6Mod: Es/N0 uniform in this range (dB), one draw per frame (the definition).
NOISY_ESN0_DB = (-4.0, 20.0)
NOISE_SEED = 2509_08300
ESN0_BIN_DB = 4.0  # width of the Es/N0 bins of the per-Es/N0 test accuracy
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}

# Classifier configurations by name; `default` and `paper` are training/train.py's presets.
ARCHS = {
    "tiny": dict(stem_width=8, widths=(8, 16), blocks=(1, 1)),
    "smoke": dict(stem_width=16, widths=(16, 24), blocks=(1, 1)),
    "small": dict(stem_width=16, widths=(16, 32, 48, 64), blocks=(1, 1, 1, 1)),
    "default": None,
    "paper": None,
}


def arch_config(name: str, num_classes: int = 6) -> ClassifierConfig:
    if name not in ARCHS:
        raise SystemExit(f"unknown classifier config {name!r}; choose from {', '.join(ARCHS)}")
    settings = ARCHS[name]
    if settings is None:
        from training.train import PRESETS  # train.py's classifier settings, so the two never drift
        settings = PRESETS[name]["classifier"]
    return ClassifierConfig(num_classes=num_classes, **settings)


# -- trajectories ---------------------------------------------------------------------------------
class TrajectoryRecorder:
    """Per-epoch correctness, true-class probability and EL2N of every training frame."""

    def __init__(self, labels: np.ndarray, epochs: int, source: str = "batch"):
        if source not in ("batch", "eval"):
            raise ValueError("trajectory source must be 'batch' or 'eval'")
        n = len(labels)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.epochs, self.source = epochs, source
        self.correct = np.zeros((epochs, n), np.uint8)
        self.p_true = np.zeros((epochs, n), np.float16)
        self.el2n = np.zeros((epochs, n), np.float16)
        self.seen = np.zeros((epochs, n), bool)

    @torch.no_grad()
    def update(self, epoch: int, idx: np.ndarray, logits: torch.Tensor):
        prob = torch.softmax(logits.detach().float(), -1).cpu().numpy()
        y = self.labels[idx]
        p_true = prob[np.arange(len(idx)), y]
        onehot = np.zeros_like(prob)
        onehot[np.arange(len(idx)), y] = 1.0
        self.correct[epoch, idx] = prob.argmax(-1) == y
        self.p_true[epoch, idx] = p_true
        self.el2n[epoch, idx] = np.sqrt(((prob - onehot) ** 2).sum(-1))
        self.seen[epoch, idx] = True

    @torch.no_grad()
    def record_eval(self, epoch: int, net: torch.nn.Module, x: np.ndarray, device, batch: int = 512):
        net.eval()
        for i in range(0, len(x), batch):
            idx = np.arange(i, min(i + batch, len(x)))
            self.update(epoch, idx, net(to_iq(x[idx], device)))

    def save(self, path: Path, **meta):
        if not self.seen.all():
            raise RuntimeError("some frames have no prediction in some epoch")
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, correct=self.correct, p_true=self.p_true, el2n=self.el2n, labels=self.labels,
                            meta=json.dumps({"source": self.source, **meta}))
        tmp.replace(path)


def load_trajectories(path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / TRAJECTORY_FILE
    with np.load(path) as f:
        out = {k: f[k] for k in ("correct", "p_true", "el2n", "labels")}
        out["meta"] = json.loads(str(f["meta"]))
    return out


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


# -- data -----------------------------------------------------------------------------------------
def load_data(spec: dict, cache_dir=None, progress: bool = True) -> dict:
    """The splits `spec` names: {'train': (x, y), 'test': (x, y), 'esn0_train': dB per frame or None}."""
    from training.data import DataConfig, add_awgn, generate
    out = {}
    for split in ("train", "test"):
        x, y = generate(split, spec[f"{split}_per_class"], DataConfig(), cache_dir=cache_dir, progress=progress)
        esn0 = None
        if spec["variant"] == "noisy":
            rng = np.random.default_rng([spec["noise_seed"], SPLIT_CODES[split]])
            esn0 = rng.uniform(*spec["esn0_db"], size=len(x))
            x = add_awgn(x, esn0, rng)
        elif spec["variant"] != "clean":
            raise SystemExit(f"unknown data variant {spec['variant']!r} (clean or noisy)")
        out[split] = (x, y)
        out[f"esn0_{split}"] = esn0
    return out


def data_spec(variant: str, train_per_class: int, test_per_class: int) -> dict:
    spec = {"variant": variant, "train_per_class": int(train_per_class), "test_per_class": int(test_per_class)}
    if variant == "noisy":
        spec.update(esn0_db=list(NOISY_ESN0_DB), noise_seed=NOISE_SEED)
    return spec


# -- training -------------------------------------------------------------------------------------
def epoch_batches(n: int, batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Every index once, shuffled; a last batch of one frame joins the one before (BatchNorm)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    parts = [order[i:i + batch] for i in range(0, n, batch)]
    if len(parts) > 1 and len(parts[-1]) < 2:
        last = parts.pop()
        parts[-1] = np.concatenate([parts[-1], last])
    return parts


def fit(net: ModRecNet, x: np.ndarray, y: np.ndarray, *, epochs: int, batch: int, lr: float, seed: int,
        device="cpu", min_steps: int = 0, augment_noise: bool = True, recorder: TrajectoryRecorder | None = None,
        log=None) -> dict:
    """Train `net` on (x, y) with train_classifier's recipe; returns steps, epochs and seconds."""
    from training.stages import augment
    device = torch.device(device)
    net.to(device)
    n = len(x)
    per_epoch = len(epoch_batches(n, batch, seed, 0))
    epochs_run = max(epochs, math.ceil(min_steps / per_epoch)) if min_steps else epochs
    if recorder is not None and recorder.epochs != epochs_run:
        raise ValueError("recorder epochs differ from the epochs trained")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs_run * per_epoch, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    y_t = torch.from_numpy(np.asarray(y, dtype=np.int64))
    record_s = 0.0
    start = time.perf_counter()
    for epoch in range(epochs_run):
        net.train()
        total, count = 0.0, 0
        for idx in epoch_batches(n, batch, seed, epoch):
            iq = to_iq(x[idx], device)
            if augment_noise:
                iq = augment(iq, gen)
            logits = net(iq)
            loss = F.cross_entropy(logits, y_t[idx].to(device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if recorder is not None and recorder.source == "batch":
                recorder.update(epoch, idx, logits)  # the prediction the step above started from
            total, count = total + loss.item(), count + 1
        if recorder is not None and recorder.source == "eval":
            t = time.perf_counter()
            recorder.record_eval(epoch, net, x, device)
            record_s += time.perf_counter() - t
        if log is not None:
            extra = ""
            if recorder is not None:
                extra = f", train accuracy {recorder.correct[epoch].mean():.4f} ({recorder.source})"
            log(epoch + 1, epochs_run, total / max(1, count), extra)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    net.eval()
    return {"epochs": epochs_run, "steps": epochs_run * per_epoch, "frames": n,
            "train_time_s": round(seconds - record_s, 3), "record_time_s": round(record_s, 3)}


def esn0_edges(spec: dict) -> list[float]:
    """Bin edges (dB) for per-Es/N0 accuracy: ESN0_BIN_DB wide over the noisy variant's range."""
    lo, hi = spec["esn0_db"]
    n = max(1, int(round((hi - lo) / ESN0_BIN_DB)))
    return [float(v) for v in np.linspace(lo, hi, n + 1)]


def predict(net: torch.nn.Module, x: np.ndarray, device="cpu", batch: int = 512) -> np.ndarray:
    """Predicted class of every frame (eval mode, no gradients)."""
    net.eval()
    with torch.inference_mode():
        parts = [net(to_iq(x[i:i + batch], torch.device(device))).argmax(-1).cpu().numpy()
                 for i in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _by_esn0(right: np.ndarray, esn0: np.ndarray, edges) -> dict:
    j = np.clip(np.searchsorted(edges, esn0, side="right") - 1, 0, len(edges) - 2)
    acc = [float(right[j == b].mean()) if np.any(j == b) else None for b in range(len(edges) - 1)]
    return {"edges_db": list(edges), "accuracy": acc, "frames": np.bincount(j, minlength=len(edges) - 1).tolist()}


def accuracy_by_esn0(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, esn0: np.ndarray, edges,
                     device="cpu") -> dict:
    """Test accuracy in every Es/N0 bin [edges[j], edges[j+1]) (the last bin includes its upper edge)."""
    return _by_esn0(predict(net, x, device) == np.asarray(y), esn0, edges)


def evaluate_on_test(net: torch.nn.Module, data: dict, spec: dict, device="cpu") -> dict:
    """test_accuracy, plus test_accuracy_by_esn0 on noisy data, from one pass over the test split."""
    x, y = data["test"]
    right = predict(net, x, device) == np.asarray(y)
    out = {"test_accuracy": float(right.mean()) if len(right) else 0.0}
    if data.get("esn0_test") is not None:
        out["test_accuracy_by_esn0"] = _by_esn0(right, data["esn0_test"], esn0_edges(spec))
    return out


def new_classifier(arch: str, seed: int) -> ModRecNet:
    torch.manual_seed(seed)
    return ModRecNet(arch_config(arch))


# -- commands -------------------------------------------------------------------------------------
def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def coreset_name(method: str, fraction: float, seed: int) -> str:
    return f"{method}-{fraction:g}-seed{seed}"


def read_coreset(path) -> dict:
    """A coresets/*.npz file: indices, method, fraction, seed, and the data spec the indices point
    into (None in files written before it was recorded). Raises SystemExit naming a bad file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {"indices": f["indices"].astype(np.int64), "method": str(f["method"]),
                    "fraction": float(f["fraction"]), "seed": int(f["seed"]),
                    "data": json.loads(str(f["data"])) if "data" in f.files else None}
    except (OSError, KeyError, ValueError) as exc:
        raise SystemExit(f"{path}: not a coreset file of training/coreset.py ({exc})") from None


def record(run_dir: Path, spec: dict, *, arch: str, epochs: int, batch: int, lr: float, seed: int, device="cpu",
           source: str = "batch", augment_noise: bool = True, cache_dir=None, progress: bool = True) -> dict:
    """Train `arch` on all of the spec's training frames, recording trajectories; returns record.json."""
    run_dir = Path(run_dir)
    log = RunLog(run_dir)
    data = load_data(spec, cache_dir, progress)
    x, y = data["train"]
    log.note(f"record: {arch} classifier on {len(x)} {spec['variant']} frames, {epochs} epochs, trajectories "
             f"from the {source} pass | commit {git_commit()} | threads {torch.get_num_threads()}")
    recorder = TrajectoryRecorder(y, epochs, source)
    net = new_classifier(arch, seed)

    def epoch_log(epoch, total, loss, extra):
        log.metrics(stage="record", epoch=epoch, loss=loss, train_accuracy=float(recorder.correct[epoch - 1].mean()))
        log.note(f"record epoch {epoch}/{total}: loss {loss:.4f}{extra}")

    timing = fit(net, x, y, epochs=epochs, batch=batch, lr=lr, seed=seed, device=device, recorder=recorder,
                 augment_noise=augment_noise, log=epoch_log)
    metrics = evaluate_on_test(net, data, spec, device)
    test_acc = metrics["test_accuracy"]
    info = {"data": spec, "arch": arch, "classifier": arch_config(arch).to_dict(), "epochs": epochs, "batch": batch,
            "lr": lr, "seed": seed, "augment": augment_noise, "trajectory_source": source,
            "n_train": int(len(x)), **metrics, **timing, "commit": git_commit()}
    recorder.save(run_dir / TRAJECTORY_FILE, arch=arch, epochs=epochs, seed=seed, data=spec)
    if data["esn0_train"] is not None:
        np.save(run_dir / "esn0_train.npy", data["esn0_train"].astype(np.float32))
    Classifier(net, {"classes": list(_classes())}).save(run_dir / "classifier",
                                                        provenance={"made_by": "coreset.py record", **info})
    (run_dir / "record.json").write_text(json.dumps(info, indent=1))
    log.note(f"record: full-data test accuracy {test_acc:.4f}, {timing['train_time_s']:.1f} s training; "
             f"trajectories in {run_dir / TRAJECTORY_FILE}")
    return info


def _classes():
    from training.data import CLASSES
    return CLASSES


def read_record(run_dir: Path) -> dict:
    path = Path(run_dir) / "record.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: run `coreset.py record --run-dir {run_dir}` first")
    return json.loads(path.read_text())


def select_all(run_dir: Path, methods, fractions, seeds, *, weights=DEFAULT_WEIGHTS, bounds=DEFAULT_TIER_BOUNDS,
               proportions=DEFAULT_TIER_PROPORTIONS, el2n_epochs=None, class_balanced=False, snr_strata=0) -> dict:
    """Write every (method, fraction, seed) coreset of a recorded run; returns selection.json."""
    run_dir = Path(run_dir)
    traj = load_trajectories(run_dir)
    epochs = traj["correct"].shape[0]
    el2n_epochs = default_el2n_epochs(epochs) if el2n_epochs is None else el2n_epochs
    scores = all_scores(traj, weights, el2n_epochs)
    np.savez_compressed(run_dir / "scores.npz", **{k: v.astype(np.float32) for k, v in scores.items()})
    esn0_path = run_dir / "esn0_train.npy"
    esn0 = np.load(esn0_path) if esn0_path.exists() else None
    if snr_strata and esn0 is None:
        raise SystemExit(f"--snr-strata needs the Es/N0 of every frame ({esn0_path}): noisy recordings only")
    labels = traj["labels"]
    data = read_record(run_dir).get("data", {})  # which frames the indices point into
    params = {"weights": list(weights), "tier_bounds": list(bounds), "tier_proportions": list(proportions),
              "el2n_epochs": el2n_epochs, "class_balanced": class_balanced, "snr_strata": snr_strata}
    (run_dir / "coresets").mkdir(exist_ok=True)
    summary = {"n_train": int(len(labels)), "epochs_recorded": int(epochs), "params": params,
               "score_means": {k: float(v.mean()) for k, v in scores.items()}, "coresets": {}}
    for method in methods:
        for fraction in fractions:
            for seed in seeds:
                idx = select(method, traj, fraction, seed, weights=weights, bounds=bounds, proportions=proportions,
                             el2n_epochs=el2n_epochs, class_balanced=class_balanced, esn0=esn0,
                             snr_strata=snr_strata, scores=scores)
                name = coreset_name(method, fraction, seed)
                path = run_dir / "coresets" / f"{name}.npz"
                np.savez(path, indices=idx.astype(np.int64), method=method, fraction=fraction, seed=seed,
                         params=json.dumps(params), n_train=len(labels), data=json.dumps(data))
                entry = {"file": str(path.relative_to(run_dir)), "method": method, "fraction": fraction, "seed": seed,
                         "size": int(len(idx)),
                         "class_counts": np.bincount(labels[idx], minlength=int(labels.max()) + 1).tolist(),
                         "mean_foqus_score": float(scores["foqus"][idx].mean()) if len(idx) else None}
                if esn0 is not None and len(idx):
                    entry["esn0_db_mean"] = float(esn0[idx].mean())
                    entry["esn0_db_quartiles"] = [float(v) for v in np.percentile(esn0[idx], [25, 50, 75])]
                summary["coresets"][name] = entry
    (run_dir / "selection.json").write_text(json.dumps(summary, indent=1))
    return summary


def train_on(run_dir: Path, indices: np.ndarray | None, *, arch: str, seed: int, epochs=None, batch=None, lr=None,
             min_steps: int = 0, device="cpu", data: dict | None = None, cache_dir=None, progress: bool = True,
             label: dict | None = None) -> dict:
    """Train `arch` on the recorded run's training frames `indices` (None: all); test accuracy and time."""
    run_dir = Path(run_dir)
    rec = read_record(run_dir)
    data = data or load_data(rec["data"], cache_dir, progress)
    x, y = data["train"]
    if len(x) != rec["n_train"]:
        raise SystemExit(f"training set has {len(x)} frames, the recorded run {rec['n_train']}")
    if indices is not None:
        x, y = x[indices], y[indices]
    epochs = epochs or rec["epochs"]
    net = new_classifier(arch, seed)
    timing = fit(net, x, y, epochs=epochs, batch=batch or rec["batch"], lr=lr or rec["lr"], seed=seed,
                 device=device, min_steps=min_steps, augment_noise=rec.get("augment", True))
    result = {**(label or {}), "variant": rec["data"]["variant"], "selection_arch": rec["arch"], "arch": arch,
              "seed": seed, "size": int(len(x)), **evaluate_on_test(net, data, rec["data"], device),
              "epochs_asked": epochs, "min_steps": min_steps, **timing}
    with open(run_dir / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


# -- report ---------------------------------------------------------------------------------------
def _done_results(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["arch"], r.get("method"), r.get("fraction"), r["seed"], r["epochs_asked"], r["min_steps"])] = r
    return done


def _mean_by_esn0(rows) -> dict | None:
    """Per-bin mean over runs of their test_accuracy_by_esn0 (None when the runs have none)."""
    parts = [r.get("test_accuracy_by_esn0") for r in rows]
    if not parts or any(p is None for p in parts):
        return None
    acc = np.array([[np.nan if a is None else a for a in p["accuracy"]] for p in parts], dtype=np.float64)
    seen = ~np.isnan(acc)
    mean = np.where(seen, acc, 0.0).sum(0) / np.maximum(1, seen.sum(0))  # a bin no run has stays None
    return {"edges_db": parts[0]["edges_db"],
            "accuracy": [round(float(m), 4) if s else None for m, s in zip(mean, seen.any(0))]}


def _stats(values) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "n": int(len(a))}


def run_report(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    archs = _names(args.archs)
    methods, fractions, seeds = _names(args.methods), _floats(args.fractions), _ints(args.seeds)
    argv = sys.argv[1:] if args.argv is None else args.argv
    report = {"command": "python training/coreset.py " + " ".join(map(str, argv)), "commit": git_commit(),
              "methods": methods, "fractions": fractions, "seeds": seeds,
              "selection_arch": archs[0], "archs": archs, "epochs": args.epochs, "min_steps": args.min_steps,
              "params": {"weights": _floats(args.weights), "tier_bounds": _floats(args.tier_bounds),
                         "tier_proportions": _floats(args.tier_proportions), "el2n_epochs": args.el2n_epochs,
                         "class_balanced": args.class_balanced, "snr_strata": args.snr_strata,
                         "trajectory_source": args.trajectory_source},
              "variants": {}}
    started = time.time()
    for variant in _names(args.variants):
        run_dir = out / variant
        spec = data_spec(variant, args.train_per_class, args.test_per_class)
        want = {"data": spec, "arch": archs[0], "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                "seed": args.record_seed, "trajectory_source": args.trajectory_source}
        rec_path = run_dir / "record.json"
        if rec_path.exists():
            rec = json.loads(rec_path.read_text())
            differ = {k: (rec.get(k), v) for k, v in want.items() if rec.get(k) != v}
            if differ:
                raise SystemExit(f"{run_dir} holds a recording made with other settings {differ}: use another --out")
            print(f"[{variant}] recording found in {run_dir}", flush=True)
        else:
            rec = record(run_dir, spec, arch=archs[0], epochs=args.epochs, batch=args.batch, lr=args.lr,
                         seed=args.record_seed, device=args.device, source=args.trajectory_source,
                         cache_dir=args.data_cache, progress=not args.quiet)
        sel = select_all(run_dir, methods, fractions, seeds, weights=_floats(args.weights),
                         bounds=_floats(args.tier_bounds), proportions=_floats(args.tier_proportions),
                         el2n_epochs=args.el2n_epochs, class_balanced=args.class_balanced,
                         snr_strata=args.snr_strata)
        data = load_data(spec, args.data_cache, progress=False)
        done = _done_results(run_dir / "results.jsonl")
        results = {}
        full = {archs[0]: {"test_accuracy": rec["test_accuracy"], "train_time_s": rec["train_time_s"],
                           "seed": rec["seed"], "accuracy_by_esn0": _mean_by_esn0([rec])}}
        for arch in archs:
            if arch not in full:  # full-data reference for the other architectures
                key = (arch, "full", 1.0, args.record_seed, args.epochs, 0)
                r = done.get(key) or train_on(run_dir, None, arch=arch, seed=args.record_seed, epochs=args.epochs,
                                              data=data, device=args.device,
                                              label={"method": "full", "fraction": 1.0})
                full[arch] = {"test_accuracy": r["test_accuracy"], "train_time_s": r["train_time_s"],
                              "seed": r["seed"], "accuracy_by_esn0": _mean_by_esn0([r])}
            for method in methods:
                for fraction in fractions:
                    rows = []
                    for seed in seeds:
                        key = (arch, method, fraction, seed, args.epochs, args.min_steps)
                        r = done.get(key)
                        if r is None:
                            name = coreset_name(method, fraction, seed)
                            idx = np.load(run_dir / "coresets" / f"{name}.npz")["indices"]
                            r = train_on(run_dir, idx, arch=arch, seed=seed, epochs=args.epochs,
                                         min_steps=args.min_steps, data=data, device=args.device,
                                         label={"method": method, "fraction": fraction})
                            print(f"[{variant}] {arch:>8} {method:>10} {fraction:>5g} seed {seed}: test accuracy "
                                  f"{r['test_accuracy']:.4f}, {r['train_time_s']:.1f} s ({r['size']} frames, "
                                  f"{r['steps']} steps)", flush=True)
                        rows.append(r)
                    results.setdefault(arch, {}).setdefault(method, {})[f"{fraction:g}"] = {
                        "size": rows[0]["size"], "accuracy": _stats([r["test_accuracy"] for r in rows]),
                        "train_time_s": _stats([r["train_time_s"] for r in rows]),
                        "accuracies": [r["test_accuracy"] for r in rows],
                        "accuracy_by_esn0": _mean_by_esn0(rows)}
        report["variants"][variant] = {
            "data": spec, "record": {k: rec[k] for k in ("arch", "epochs", "n_train", "test_accuracy", "train_time_s",
                                                         "record_time_s", "trajectory_source")},
            "full_data": full, "results": results,
            "selection": {name: {k: v for k, v in e.items() if k != "file"} for name, e in sel["coresets"].items()
                          if e["seed"] == seeds[0]}}
    report["wall_time_s"] = round(time.time() - started, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "summary.md").write_text(f"`{report['command']}`\n\n{report_tables(report)}\n")
    plot_report(report, out / "accuracy_vs_fraction.png")
    return report


def summary_table(report: dict, fractions=None) -> str:
    """Markdown table of a report: one row per (data variant, training classifier); full data, then
    every method at each of `fractions` (default: all of the report's), as test accuracy mean ± std
    over the seeds, with the mean training time of a run in seconds."""
    fractions = [f"{f:g}" for f in (fractions or report["fractions"])]
    methods = report["methods"]
    head = ["data, classifier trained", "full data"] + [f"{m} {100 * float(f):g} %" for f in fractions for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, v in report["variants"].items():
        for arch in report["archs"]:
            full = v["full_data"].get(arch)
            cells = [f"{variant}, {arch}" + (" (cross-architecture)" if arch != report["selection_arch"] else ""),
                     f"{full['test_accuracy']:.3f} ({full['train_time_s']:.0f} s)" if full else "-"]
            for f in fractions:
                for m in methods:
                    r = v["results"].get(arch, {}).get(m, {}).get(f)
                    cells.append("-" if r is None else f"{r['accuracy']['mean']:.3f} ± {r['accuracy']['std']:.3f} "
                                                       f"({r['train_time_s']['mean']:.0f} s)")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def esn0_table(report: dict, fractions=None) -> str:
    """Markdown table of test accuracy per Es/N0 bin (mean over seeds), one row per (classifier, run
    kind), for the report's noisy variants; "" when the report holds no per-Es/N0 figures."""
    fractions = [f"{f:g}" for f in (fractions or report["fractions"])]
    out = []
    for variant, v in report["variants"].items():
        rows = []
        for arch in report["archs"]:
            full = v["full_data"].get(arch) or {}
            if full.get("accuracy_by_esn0"):
                rows.append((f"{arch}, full data", full["accuracy_by_esn0"]))
            for f in fractions:
                for m in report["methods"]:
                    r = v["results"].get(arch, {}).get(m, {}).get(f) or {}
                    if r.get("accuracy_by_esn0"):
                        rows.append((f"{arch}, {m} {100 * float(f):g} %", r["accuracy_by_esn0"]))
        if not rows:
            continue
        edges = rows[0][1]["edges_db"]
        head = [f"{variant}: test accuracy by Es/N0"] + [f"{a:g}..{b:g} dB" for a, b in zip(edges[:-1], edges[1:])]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join([name] + ["-" if a is None else f"{a:.3f}" for a in acc["accuracy"]]) + " |"
                for name, acc in rows]
        out.append("")
    return "\n".join(out).strip()


def report_tables(report: dict, fractions=None) -> str:
    """The summary table, then (noisy variants) the per-Es/N0 table: summary.md and `table`."""
    by_esn0 = esn0_table(report, fractions)
    return summary_table(report, fractions) + (f"\n\n{by_esn0}" if by_esn0 else "")


def plot_report(report: dict, path: Path):
    """Accuracy vs coreset fraction: one panel per (data variant, training classifier), one line per
    method (mean over seeds, band = min..max), the full-data accuracy dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants, archs = list(report["variants"]), report["archs"]
    fig, axes = plt.subplots(len(variants), len(archs), figsize=(5.2 * len(archs), 4 * len(variants)),
                             squeeze=False)
    for r, variant in enumerate(variants):
        v = report["variants"][variant]
        for c, arch in enumerate(archs):
            ax = axes[r][c]
            for method, by_fraction in v["results"].get(arch, {}).items():
                fr = sorted(by_fraction, key=float)
                xs = [100 * float(f) for f in fr]
                mean = [by_fraction[f]["accuracy"]["mean"] for f in fr]
                lo = [by_fraction[f]["accuracy"]["min"] for f in fr]
                hi = [by_fraction[f]["accuracy"]["max"] for f in fr]
                line, = ax.plot(xs, mean, marker="o", label=method)
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
            if arch in v["full_data"]:
                ax.axhline(v["full_data"][arch]["test_accuracy"], color="k", ls="--", lw=1, label="full data")
            ax.set_xscale("log")
            ax.minorticks_off()
            fractions = [100 * f for f in report["fractions"]]
            ax.set_xticks(fractions)
            ax.set_xticklabels([f"{f:g}" for f in fractions])
            ax.set_xlabel("coreset size (% of training frames)")
            ax.set_ylabel("test accuracy")
            ax.set_title(f"6Mod {variant}: selected with {report['selection_arch']}, trained {arch}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line ---------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser):
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-cache", type=Path, default=None, help="6Mod cache directory (default .cache/data)")
    p.add_argument("--quiet", action="store_true", help="no data-generation progress bar")


def _selection_flags(p: argparse.ArgumentParser):
    p.add_argument("--weights", default=",".join(f"{w:.6g}" for w in DEFAULT_WEIGHTS),
                   help="FoQuS weights of the normalised forgetting, persistent-error and quality scores")
    p.add_argument("--tier-bounds", default=",".join(f"{b:.6g}" for b in DEFAULT_TIER_BOUNDS),
                   help="rank quantiles separating the high, middle and low score tiers")
    p.add_argument("--tier-proportions", default=",".join(f"{q:g}" for q in DEFAULT_TIER_PROPORTIONS),
                   help="share of the coreset drawn from the high, middle and low tiers")
    p.add_argument("--el2n-epochs", type=int, default=None, help="EL2N: average over the first N epochs "
                   "(default ceil(epochs / 10))")
    p.add_argument("--class-balanced", action="store_true", help="select within each class (k split by class size)")
    p.add_argument("--snr-strata", type=int, default=0, metavar="N",
                   help="select within each of N equal-count Es/N0 bins (noisy data; with --class-balanced: "
                        "within each class and bin); 0 = off")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("record", help="train on full data, recording every frame's prediction trajectory")
    r.add_argument("--run-dir", type=Path, required=True)
    r.add_argument("--variant", choices=("clean", "noisy"), default="clean")
    r.add_argument("--train-per-class", type=int, default=3000)
    r.add_argument("--test-per-class", type=int, default=1000)
    r.add_argument("--arch", default="default", help=f"classifier config: {', '.join(ARCHS)}")
    r.add_argument("--epochs", type=int, default=12)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--lr", type=float, default=3e-3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--trajectory-source", choices=("batch", "eval"), default="batch")
    r.add_argument("--no-augment", action="store_true", help="no AWGN augmentation (stages.augment)")
    _common(r)

    s = sub.add_parser("select", help="write coresets of a recorded run")
    s.add_argument("--run-dir", type=Path, required=True)
    s.add_argument("--fractions", default="0.01,0.05,0.1,0.3")
    s.add_argument("--methods", default=",".join(METHODS))
    s.add_argument("--seeds", default="0")
    _selection_flags(s)

    t = sub.add_parser("train", help="train a classifier on a saved coreset (or --full); test accuracy and time")
    t.add_argument("--run-dir", type=Path, required=True)
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--coreset", type=Path, help="a coresets/<name>.npz file of the run")
    g.add_argument("--full", action="store_true", help="all training frames (the reference)")
    t.add_argument("--arch", default=None, help="classifier config (default: the recording run's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None, help="default: the recording run's")
    t.add_argument("--batch", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--min-steps", type=int, default=0, help="train at least this many optimiser steps")
    _common(t)

    q = sub.add_parser("report", help="the grid: variants x methods x fractions x seeds x classifiers")
    q.add_argument("--out", type=Path, default=REPO / "runs" / "coreset")
    q.add_argument("--variants", default="clean,noisy")
    q.add_argument("--methods", default=",".join(METHODS))
    q.add_argument("--fractions", default="0.01,0.05,0.1,0.3")
    q.add_argument("--seeds", default="0,1,2")
    q.add_argument("--archs", default="default,small",
                   help="classifier configs; the first records and selects, every one trains on the coresets")
    q.add_argument("--train-per-class", type=int, default=3000)
    q.add_argument("--test-per-class", type=int, default=1000)
    q.add_argument("--epochs", type=int, default=12, help="epochs of the recording run and of every coreset run")
    q.add_argument("--batch", type=int, default=64)
    q.add_argument("--lr", type=float, default=3e-3)
    q.add_argument("--min-steps", type=int, default=0, help="floor on optimiser steps of a coreset run")
    q.add_argument("--record-seed", type=int, default=0)
    q.add_argument("--trajectory-source", choices=("batch", "eval"), default="batch")
    _selection_flags(q)
    _common(q)
    m = sub.add_parser("table", help="print a report's Markdown summary table (test accuracy and training time)")
    m.add_argument("report", type=Path, help="a report.json written by `report`")
    m.add_argument("--fractions", default=None, help="only these fractions (default: all of the report's)")
    args = p.parse_args(argv)
    args.argv = argv
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.command == "record":
        spec = data_spec(args.variant, args.train_per_class, args.test_per_class)
        info = record(args.run_dir, spec, arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr,
                      seed=args.seed, device=args.device, source=args.trajectory_source,
                      augment_noise=not args.no_augment, cache_dir=args.data_cache, progress=not args.quiet)
        print(json.dumps({k: info[k] for k in ("n_train", "epochs", "test_accuracy", "train_time_s")}))
    elif args.command == "select":
        summary = select_all(args.run_dir, _names(args.methods), _floats(args.fractions), _ints(args.seeds),
                             weights=_floats(args.weights), bounds=_floats(args.tier_bounds),
                             proportions=_floats(args.tier_proportions), el2n_epochs=args.el2n_epochs,
                             class_balanced=args.class_balanced, snr_strata=args.snr_strata)
        for name, e in summary["coresets"].items():
            print(f"{name}: {e['size']} frames, per class {e['class_counts']}"
                  + (f", mean Es/N0 {e['esn0_db_mean']:.1f} dB" if "esn0_db_mean" in e else ""))
        print(f"wrote {len(summary['coresets'])} coresets to {args.run_dir / 'coresets'}")
    elif args.command == "train":
        rec = read_record(args.run_dir)
        if args.full:
            idx, label = None, {"method": "full", "fraction": 1.0}
        else:
            coreset = read_coreset(args.coreset)
            idx = coreset["indices"]
            label = {"method": coreset["method"], "fraction": coreset["fraction"], "selection_seed": coreset["seed"]}
        result = train_on(args.run_dir, idx, arch=args.arch or rec["arch"], seed=args.seed, epochs=args.epochs,
                          batch=args.batch, lr=args.lr, min_steps=args.min_steps, device=args.device,
                          cache_dir=args.data_cache, progress=not args.quiet, label=label)
        print(json.dumps(result))
    elif args.command == "table":
        try:
            report = json.loads(args.report.read_text())
            print(report_tables(report, _floats(args.fractions) if args.fractions else None))
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"{args.report}: not a coreset report ({e})")
    else:
        report = run_report(args)
        print(f"report: {Path(args.out) / 'report.json'}, plot: {Path(args.out) / 'accuracy_vs_fraction.png'} "
              f"({report['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
