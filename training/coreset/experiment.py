# SPDX-License-Identifier: GPL-3.0-or-later
"""The coreset experiment's steps on a run directory: the (clean or noisy) 6Mod data, recording a
full-data run's trajectories, writing coresets, training and testing a classifier on one.

Classifiers train with the project's one loop (training.classifier_loop.fit_classifier); this module adds the
coreset protocol (every frame once per epoch, `min_steps`) and the trajectory hooks."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from gnuradio.hqarf.classifier import Classifier, ClassifierConfig, ModRecNet
from gnuradio.hqarf.frames import to_iq
from training.common import Dist, RunLog, git_commit
from training.coreset.sampling import DEFAULT_TIER_BOUNDS, DEFAULT_TIER_PROPORTIONS, select
from training.coreset.scores import DEFAULT_WEIGHTS, all_scores, default_el2n_epochs
from training.coreset.trajectories import TRAJECTORY_FILE, TrajectoryRecorder, load_trajectories
from training.data import CLASSES, DataConfig, add_awgn, generate
from training.presets import PRESETS
from training.classifier_loop import augment, fit_classifier


class CoresetError(Exception):
    """A coreset step cannot run as asked (bad file, missing recording, settings that do not match);
    the message says which and what to do. The command line prints it."""


# Noisy 6Mod: Es/N0 uniform in this range (dB), one draw per frame (the definition).
NOISY_ESN0_DB = (-4.0, 20.0)
NOISE_SEED = 2509_08300
ESN0_BIN_DB = 4.0  # width of the Es/N0 bins of the per-Es/N0 test accuracy
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}

# Classifier configurations by name; `default` and `paper` are training/presets.py's.
ARCHS = {
    "tiny": dict(stem_width=8, widths=(8, 16), blocks=(1, 1)),
    "smoke": dict(stem_width=16, widths=(16, 24), blocks=(1, 1)),
    "small": dict(stem_width=16, widths=(16, 32, 48, 64), blocks=(1, 1, 1, 1)),
    "default": None,
    "paper": None,
}


def arch_config(name: str, num_classes: int = 6) -> ClassifierConfig:
    if name not in ARCHS:
        raise CoresetError(f"unknown classifier config {name!r}; choose from {', '.join(ARCHS)}")
    settings = ARCHS[name]
    if settings is None:  # the training presets' classifier settings, so the two never drift
        settings = PRESETS[name]["classifier"]
    return ClassifierConfig(num_classes=num_classes, **settings)


# -- data -----------------------------------------------------------------------------------------
def load_data(spec: dict, cache_dir=None, progress: bool = True) -> dict:
    """The splits `spec` names: {'train': (x, y), 'test': (x, y), 'esn0_train': dB per frame or None}."""
    out = {}
    for split in ("train", "test"):
        x, y = generate(split, spec[f"{split}_per_class"], DataConfig(), cache_dir=cache_dir, progress=progress)
        esn0 = None
        if spec["variant"] == "noisy":
            rng = np.random.default_rng([spec["noise_seed"], SPLIT_CODES[split]])
            esn0 = rng.uniform(*spec["esn0_db"], size=len(x))
            x = add_awgn(x, esn0, rng)
        elif spec["variant"] != "clean":
            raise CoresetError(f"unknown data variant {spec['variant']!r} (clean or noisy)")
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
    """Train `net` on (x, y) with the project's classifier loop, every frame once per epoch (at least
    `min_steps` optimiser steps), recording trajectories into `recorder`; returns steps, epochs, seconds."""
    n = len(x)
    per_epoch = len(epoch_batches(n, batch, seed, 0))
    epochs_run = max(epochs, math.ceil(min_steps / per_epoch)) if min_steps else epochs
    if recorder is not None and recorder.epochs != epochs_run:
        raise ValueError("recorder epochs differ from the epochs trained")
    ctx = Dist(torch.device(device).type)
    record_s = 0.0

    def after_step(epoch, idx, logits):
        if recorder is not None and recorder.source == "batch":
            recorder.update(epoch, idx, logits)  # the prediction the step just taken started from

    def after_epoch(epoch, loss):
        nonlocal record_s
        if recorder is not None and recorder.source == "eval":
            t = time.perf_counter()
            recorder.record_eval(epoch, net, x, ctx.device)
            record_s += time.perf_counter() - t
        if log is not None:
            extra = ""
            if recorder is not None:
                extra = f", train accuracy {recorder.correct[epoch].mean():.4f} ({recorder.source})"
            log(epoch + 1, epochs_run, loss, extra)

    start = time.perf_counter()
    fit_classifier(net, x, y, epochs=epochs_run, batch=batch, lr=lr, seed=seed, ctx=ctx,
                   view=augment if augment_noise else (lambda iq, gen: iq),
                   order=lambda epoch: epoch_batches(n, batch, seed, epoch),
                   after_step=after_step, after_epoch=after_epoch, progress=False)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
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


def accuracy_by_bin(right: np.ndarray, esn0: np.ndarray, edges) -> dict:
    """Share of `right` frames in every Es/N0 bin [edges[j], edges[j+1]) (the last bin includes its
    upper edge; a bin without frames has accuracy None)."""
    j = np.clip(np.searchsorted(edges, esn0, side="right") - 1, 0, len(edges) - 2)
    acc = [float(right[j == b].mean()) if np.any(j == b) else None for b in range(len(edges) - 1)]
    return {"edges_db": list(edges), "accuracy": acc, "frames": np.bincount(j, minlength=len(edges) - 1).tolist()}


def evaluate_on_test(net: torch.nn.Module, data: dict, spec: dict, device="cpu") -> dict:
    """test_accuracy, plus test_accuracy_by_esn0 on noisy data, from one pass over the test split."""
    x, y = data["test"]
    right = predict(net, x, device) == np.asarray(y)
    out = {"test_accuracy": float(right.mean()) if len(right) else 0.0}
    if data.get("esn0_test") is not None:
        out["test_accuracy_by_esn0"] = accuracy_by_bin(right, data["esn0_test"], esn0_edges(spec))
    return out


def new_classifier(arch: str, seed: int) -> ModRecNet:
    torch.manual_seed(seed)
    return ModRecNet(arch_config(arch))


def coreset_name(method: str, fraction: float, seed: int) -> str:
    return f"{method}-{fraction:g}-seed{seed}"


def read_coreset(path) -> dict:
    """A coresets/*.npz file: indices, method, fraction, seed, and the data spec the indices point
    into (None in files written before it was recorded). Raises CoresetError naming a bad file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {"indices": f["indices"].astype(np.int64), "method": str(f["method"]),
                    "fraction": float(f["fraction"]), "seed": int(f["seed"]),
                    "data": json.loads(str(f["data"])) if "data" in f.files else None}
    except (OSError, KeyError, ValueError) as exc:
        raise CoresetError(f"{path}: not a coreset file of training.coreset ({exc})") from None


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
    Classifier(net, {"classes": list(CLASSES)}).save(run_dir / "classifier",
                                                        provenance={"made_by": "training.coreset record", **info})
    (run_dir / "record.json").write_text(json.dumps(info, indent=1))
    log.note(f"record: full-data test accuracy {test_acc:.4f}, {timing['train_time_s']:.1f} s training; "
             f"trajectories in {run_dir / TRAJECTORY_FILE}")
    return info


def read_record(run_dir: Path) -> dict:
    path = Path(run_dir) / "record.json"
    if not path.exists():
        raise CoresetError(f"{path} not found: run `python -m training.coreset record --run-dir {run_dir}` first")
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
        raise CoresetError(f"--snr-strata needs the Es/N0 of every frame ({esn0_path}): noisy recordings only")
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
        raise CoresetError(f"training set has {len(x)} frames, the recorded run {rec['n_train']}")
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


