# SPDX-License-Identifier: GPL-3.0-or-later
"""Unseen judges: more ModRec classifiers of the held-out classifier's recipe, each with a seed that no
loss and no selection of the run uses, trained on original frames only. They judge a codec beside the
held-out classifier (`training/evaluate.py --judges 4242 9001`), so that a figure on "a classifier the
codec never saw" rests on more than one seed; they are never written into a model.

A judge is a pure function of (preset, seed): it is trained once on the preset's training frames and
kept in a cache directory (safetensors weights and a JSON record with its recipe and validation
accuracy), keyed by everything that shapes it, so a second evaluation reuses it.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gnuradio.hqarf.classifier import Classifier, ClassifierConfig, build_network
from training.classifiers import HELDOUT_SEED
from training.common import REPO, Dist, RunLog
from training.data import DataConfig, preset_data, preset_impairments
from training.presets import PRESETS

DEFAULT_CACHE = REPO / ".cache" / "judges"


def reserved_seeds(cfg: dict, run_seed: int = 0) -> set:
    """Seeds a run's own classifiers use: the project classifier's, the held-out one's and the critics'."""
    offsets = {0, HELDOUT_SEED, *((cfg.get("critics") or {}).get("seeds", ()))}
    return {run_seed + o for o in offsets}


def recipe(cfg: dict) -> dict:
    """Everything that shapes a judge: the held-out architecture, its schedule and the training data."""
    imp = preset_impairments(cfg)
    return {"arch": cfg["heldout_classifier"], "epochs": cfg.get("heldout_epochs", cfg["classifier_epochs"]),
            "batch": cfg["classifier_batch"], "lr": cfg["classifier_lr"], "rotate": cfg.get("classifier_rotate"),
            "data": cfg["data"], "data_key": DataConfig().key(),
            "impairments": None if imp is None else imp.to_dict()}


def judge_path(cache_dir: Path, preset: str, seed: int, cfg: dict) -> Path:
    digest = hashlib.sha256(json.dumps(recipe(cfg), sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"judge-{preset}-{digest}-seed{seed}.safetensors"


def train_judge(cfg: dict, seed: int, data: dict, log: RunLog, n_classes: int) -> tuple[torch.nn.Module, float]:
    """One judge: the held-out classifier's network and training loop with another seed; returns it and
    its validation accuracy."""
    from training.classifier_loop import accuracy, train_classifier
    torch.manual_seed(seed)
    net = build_network(ClassifierConfig(num_classes=n_classes, **cfg["heldout_classifier"]))
    t = time.time()
    train_classifier(net, data, {**cfg, "classifier_epochs": recipe(cfg)["epochs"]}, Dist("cpu"), log, seed)
    val = accuracy(net, *data["val"], "cpu")
    log.note(f"judge seed {seed}: validation accuracy {val:.4f} ({time.time() - t:.0f} s)")
    return net.eval(), val


def load_judges(seeds, classes, preset: str = "default", run_seed: int = 0, cache_dir: Path = DEFAULT_CACHE,
                log=print) -> dict:
    """name -> Classifier for each seed, trained (on the preset's data) where the cache lacks it."""
    cfg = PRESETS[preset]
    clash = sorted(set(seeds) & reserved_seeds(cfg, run_seed))
    if clash:
        raise SystemExit(f"--judges: seed(s) {clash} belong to the run's project, held-out or critic classifiers; "
                         "a judge must be a classifier the codec never saw")
    judges, data = {}, None
    for seed in seeds:
        path = judge_path(cache_dir, preset, seed, cfg)
        if not path.exists():
            if data is None:
                run_log = RunLog(Path(cache_dir) / "log")
                data, _ = preset_data(cfg, Dist("cpu"), run_log)
            net, val = train_judge(cfg, seed, data, run_log, len(classes))
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
            path.with_suffix(".json").write_text(json.dumps({"seed": seed, "preset": preset, "val_accuracy": val,
                                                             **recipe(cfg)}, indent=1))
            log(f"judges: seed {seed} trained, kept in {path}")
        net = build_network(ClassifierConfig(num_classes=len(classes), **cfg["heldout_classifier"]))
        net.load_state_dict(load_file(str(path)))
        judges[f"seed{seed}"] = Classifier(net.eval(), {"classes": list(classes)}, kind="heldout_classifier")
    return judges
