#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Train gr-hqarf's models: data -> ModRec classifier -> HAE -> HQARF without KL -> HQARF -> evaluation.

Run from the repository root in the project's environment, e.g. `./dev.sh train --preset smoke`
or `.venv/bin/python training/train.py --preset default`. Works unchanged under torchrun (DDP).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import importlib.util  # noqa: E402

if importlib.util.find_spec("torch") is None:  # e.g. `python training/train.py` outside the .venv
    sys.exit(f"train.py: this Python ({sys.executable}) has no torch; run it in the project's "
             "environment: ./dev.sh train [ARGS] (or ./dev.sh env python training/train.py [ARGS])")
from training.common import REPO, Dist, RunLog, git_commit  # noqa: E402  (sets up import paths)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from hqarf.classifier import Classifier, ClassifierConfig, ModRecNet  # noqa: E402
from hqarf.codec import Codec  # noqa: E402
from hqarf.model import HQARF, HQARFConfig, count_parameters, level_costs  # noqa: E402

STAGES = ("hae", "hqarf_nokl", "hqarf")

# Compact CPU model: the paper's encoders, decoders far narrower than the paper's 16..1024.
DEFAULT_CODEC = dict(encoder_widths=(16, 32, 64, 64, 128), decoder_widths=(32, 64, 96, 128, 128),
                     residual_blocks=(0, 1, 1, 1, 1), codebook_size=64, code_dim=64)

# Scale of the classifier (task) term per stage and level (0: no term): every HAE level, quantised
# levels 0-2 and level 4 without KL (the default preset's comment says why).
TASK_SCALE = dict(hae=1.0, hqarf_nokl=(1.0, 1.0, 1.0, 0.0, 1.0), hqarf=(1.0, 1.0, 1.0, 0.0, 0.0))

PRESETS = {
    # Under two minutes on a CPU: exercises every stage, for tests and CI.
    "smoke": dict(
        data=dict(train=48, val=8, test=16), codec=dict(encoder_widths=(8, 8, 8, 8, 8),
                                                         decoder_widths=(8, 8, 8, 8, 8),
                                                         residual_blocks=(0, 1, 1, 1, 1), code_dim=16),
        classifier=dict(stem_width=16, widths=(16, 24), blocks=(1, 1)),
        classifier_epochs=4, classifier_batch=32, classifier_lr=3e-3,
        level_epochs=dict(hae=1, hqarf_nokl=1, hqarf=1), batch=16, lr=1e-3,
        coefs=dict(cos=0.7, kl=0.001, commit=0.001, task=0.1, task_frames=8),
        task_scale=TASK_SCALE,
        reset_every=8, stats_frames=64, reset_codes=8, reset_mode="batch", keep_best=True),
    # The shipped model: the whole pipeline within 90 minutes on 2 CPU cores.
    "default": dict(
        data=dict(train=3000, val=200, test=1000), codec=DEFAULT_CODEC,
        classifier=dict(stem_width=32, widths=(32, 64, 96, 128), blocks=(1, 1, 1, 1)),
        classifier_epochs=2, classifier_batch=64, classifier_lr=3e-3,
        level_epochs=dict(hae=2, hqarf_nokl=(2, 2, 2, 4, 4), hqarf=(1, 1, 1, 2, 2)), batch=64, lr=1e-3,
        # Levels 0-2 keep the first shipped model's recipe (test accuracy 1.000 / 0.992 / 0.880): the
        # classifier (task) term on the whole batch in every stage, the HQA dead-code policy (one code
        # per check, next to the most-used one), 2 epochs without KL and 1 with. Variants of it made
        # level 1-2 worse: no task term in the quantised stages (validation 0.86 / 0.67), the term on
        # 16 frames or with batch restarts (level 2: 0.56-0.66, the loss climbing from 0.9 to 2.2).
        # Levels 3-4: the task term in the HAE stage only, on 16 frames of each batch (in the
        # quantised stages, through three or four re-quantisations, its gradient is noise: it
        # collapsed the codebook and took level 3 from 0.80 to 0.57), dead codes restarting on
        # encoder outputs of the last batch, 8 per check (no dead codes at level 3, against 13-19 of
        # 64 with the HQA policy), 4 epochs without KL and 2 with. Level 4 without KL is the exception:
        # the term at 0.3x weight (0.03) on 16 frames took its validation accuracy from 0.45-0.54 to
        # 0.59-0.68 (at level 3, and at level 4 with KL, it did not help). Every level keeps its best
        # epoch by validation accuracy, the KL stage's starting point included (keep_best): the KL
        # stage took level 2 from 0.895 to 0.804. training/README.md has the trials.
        coefs=dict(cos=0.7, kl=0.001, commit=0.001, task=0.1, task_frames=16, hard=True),
        task_scale={**TASK_SCALE, "hqarf_nokl": (1.0, 1.0, 1.0, 0.0, 0.3)},
        task_full_batch=dict(hae=(0, 1, 2), hqarf_nokl=(0, 1, 2), hqarf=(0, 1, 2)),
        reset_every=20, stats_frames=1024,
        reset_codes=(1, 1, 1, 8, 8), reset_mode=("split", "split", "split", "batch", "batch"),
        keep_best=True),
    # The papers' sizes and epochs, for a GPU.
    "paper": dict(
        data=dict(train=4000, val=1000, test=1000), codec={},
        classifier=dict(stem_width=64, widths=(64, 128, 192, 256), blocks=(2, 2, 2, 2)),
        classifier_epochs=40, classifier_batch=128, classifier_lr=2e-3,
        level_epochs=dict(hae=100, hqarf_nokl=100, hqarf=100), batch=64, lr=4e-4,
        coefs=dict(cos=0.7, kl=0.1, commit=0.005, task=0.0), reset_every=20, stats_frames=4096),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Stages run in order: data, classifier, hae, hqarf_nokl, hqarf, evaluate. Each level of each "
               "stage ends with a checkpoint in RUN_DIR/checkpoint; --resume skips what is done. The shippable "
               "model (codec + classifier + PROVENANCE.md) is written to RUN_DIR/model.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="smoke: <2 min CPU (tests, CI); default: the shipped model, <=90 min on 2 CPU cores; "
                        "paper: the papers' sizes and 100 epochs per level (GPU)")
    p.add_argument("--run-dir", type=Path, default=None, help="output directory (default runs/<preset>)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and batch order")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--stage", choices=("all", "classifier", *STAGES, "evaluate"), default="all",
                   help="run only this stage (earlier ones must be in the run directory)")
    p.add_argument("--level", type=int, default=None, help="with --stage: train only this level")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoints")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--task-weight", type=float, default=None,
                   help="weight of the classifier (task) term, scaled per stage and level by the preset's task_scale "
                        "(default preset: every HAE level, quantised levels 0-2, level 4 without KL at 0.3x); "
                        "0 trains for reconstruction only")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per level for the stages run now (default: the preset's)")
    p.add_argument("--coreset", type=Path, default=None,
                   help="train the classifier on this coreset only (a coresets/*.npz file of training/coreset.py, "
                        "selected on the clean training split of this preset's size)")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation report at the end")
    p.add_argument("--data-cache", type=Path, default=None, help="data cache directory (default .cache/data)")
    return p.parse_args(argv)


class Checkpoints:
    """Per (stage, level) checkpoints: safetensors states (no pickle) plus a JSON progress file."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "checkpoint"
        self.progress_file = self.dir / "progress.json"
        self.progress = json.loads(self.progress_file.read_text()) if self.progress_file.exists() else {
            "done": [], "durations_s": {}, "metrics": {}}

    def done(self, stage: str, level=None) -> bool:
        return [stage, level] in self.progress["done"]

    def save(self, stage: str, level, module: torch.nn.Module, duration: float, metrics: dict):
        self.dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                  str(self.dir / f"{stage}.safetensors"))
        self.progress["done"].append([stage, level])
        key = stage if level is None else f"{stage}/L{level}"
        self.progress["durations_s"][key] = round(duration, 1)
        self.progress["metrics"][key] = metrics
        self.progress_file.write_text(json.dumps(self.progress, indent=1))

    def load(self, stage: str, module: torch.nn.Module) -> bool:
        path = self.dir / f"{stage}.safetensors"
        if not path.exists():
            return False
        module.load_state_dict(load_file(str(path)))
        return True


def load_data(cfg: dict, args, ctx: Dist, log: RunLog):
    """Every rank holds the whole (small) data set; rank 0 generates and caches it first so the
    other ranks read the cache instead of racing to write it."""
    from training.data import DataConfig, generate
    data_config = DataConfig()
    data = {}
    for turn in (0, 1):
        if (turn == 0) == ctx.main:
            for split, n in cfg["data"].items():
                t = time.time()
                data[split] = generate(split, n, data_config, cache_dir=args.data_cache, progress=ctx.main)
                log.note(f"data {split}: {len(data[split][0])} frames ({n} per class) in {time.time() - t:.1f} s")
        ctx.barrier()
    return data, data_config


def load_coreset(path: Path, train_per_class: int, n_train: int):
    """Indices of a coreset file, checked against the training split they will index."""
    from training.coreset import read_coreset
    coreset = read_coreset(path)
    idx, spec = coreset["indices"], coreset["data"]
    info = {"file": str(path), "method": coreset["method"], "fraction": coreset["fraction"], "seed": coreset["seed"],
            "size": int(len(idx))}
    if spec is None:
        raise SystemExit(f"{path}: the file does not say which data it indexes (select it again with this version)")
    if spec.get("variant") != "clean" or int(spec.get("train_per_class", -1)) != train_per_class:
        raise SystemExit(f"{path}: selected on {spec.get('variant')} data with {spec.get('train_per_class')} frames "
                         f"per class; this preset trains on clean data with {train_per_class} per class")
    if len(idx) == 0 or idx.min() < 0 or idx.max() >= n_train or len(np.unique(idx)) != len(idx):
        raise SystemExit(f"{path}: indices out of range or repeated for a training split of {n_train} frames")
    return idx, info


def write_model(run_dir: Path, codec_model: HQARF, classifier: ModRecNet, manifest_extra: dict, classes,
                name="model") -> Path:
    out = run_dir / name
    Codec(codec_model).save(out, classes=list(classes), **manifest_extra)
    Classifier(classifier, {"classes": list(classes)}).save(out, **manifest_extra)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = copy.deepcopy(PRESETS[args.preset])
    cfg["epochs_override"] = args.epochs
    if args.task_weight is not None:
        cfg["coefs"]["task"] = args.task_weight
    run_dir = args.run_dir or (REPO / "runs" / args.preset)
    ctx = Dist(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = RunLog(run_dir, enabled=ctx.main)
    if run_dir.exists() and not args.resume and args.stage == "all" and (run_dir / "checkpoint").exists():
        raise SystemExit(f"{run_dir} already holds a run: pass --resume to continue it or choose --run-dir")
    ckpt = Checkpoints(run_dir)
    started = time.time()
    commit = git_commit()  # at the start: the tree may change while a long run trains
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
    log.note(f"{command} | preset {args.preset} | world {ctx.world} | device {ctx.device} | "
             f"threads {torch.get_num_threads()} | commit {commit}")
    log.note("choices: Adam (lr flat for 2/3 then cosine to lr/10), gradient clipping at 1.0, linear Gumbel "
             f"temperature 0.667 -> 0.001, coefficients {cfg['coefs']}; training/README.md says why")

    torch.manual_seed(args.seed)
    data, data_config = load_data(cfg, args, ctx, log)
    classes = data_config.classes
    want = lambda stage: args.stage in ("all", stage)  # noqa: E731

    # 1. ModRec classifier, on original frames only.
    classifier = ModRecNet(ClassifierConfig(num_classes=len(classes), **cfg["classifier"]))
    if ckpt.done("classifier") and (args.resume or not want("classifier")):
        ckpt.load("classifier", classifier)
        log.note("classifier: loaded from checkpoint")
    elif want("classifier"):
        from training.stages import accuracy, train_classifier
        t = time.time()
        log.note(f"classifier: {count_parameters(classifier)} parameters")
        train_data = data
        if args.coreset is not None:
            idx, cfg["classifier_coreset"] = load_coreset(args.coreset, cfg["data"]["train"], len(data["train"][0]))
            train_data = {**data, "train": (data["train"][0][idx], data["train"][1][idx])}
            log.note(f"classifier: trained on coreset {args.coreset} ({len(idx)} of {len(data['train'][0])} frames)")
        train_classifier(classifier, train_data, cfg, ctx, log, args.seed)
        acc = accuracy(classifier, *data["val"], ctx.device)
        if ctx.main:
            ckpt.save("classifier", None, classifier, time.time() - t, {"val_accuracy": acc})
    elif args.stage != "evaluate":
        raise SystemExit("the classifier stage has not run in this run directory yet")
    classifier.to(ctx.device).eval()
    for p in classifier.parameters():
        p.requires_grad_(False)

    # 2-4. HAE, HQARF without KL, HQARF: level by level, lower levels frozen.
    from training.stages import train_level
    codec_config = HQARFConfig(**cfg["codec"])
    model = HQARF(codec_config)
    models = {}
    previous = None
    for stage in STAGES:
        if previous is not None:
            model = copy.deepcopy(models[previous])
        ckpt.load(stage, model)
        for level in range(codec_config.levels):
            if ckpt.done(stage, level):
                continue
            if not want(stage) or (args.level is not None and level != args.level):
                continue
            t = time.time()
            fresh = stage == "hqarf_nokl"  # stage 2 adds a fresh codebook to the HAE weights
            val = train_level(model, level, stage, data, cfg, ctx, log, seed=args.seed * 1000 + level,
                              classifier=classifier, fresh_codebook=fresh)
            if ctx.main:
                ckpt.save(stage, level, model, time.time() - t, val)
            ctx.barrier()
        models[stage] = model
        previous = stage

    complete = all(ckpt.done(s, level) for s in STAGES for level in range(codec_config.levels))
    provenance = {
        "command": command, "commit": commit, "preset": args.preset, "seed": args.seed,
        "device": str(ctx.device), "world_size": ctx.world, "torch": torch.__version__,
        "data": {**data_config.to_dict(), "key": data_config.key(), "per_class": cfg["data"],
                 "split_seeds": __import__("training.data", fromlist=["SPLIT_SEEDS"]).SPLIT_SEEDS},
        "training": {k: v for k, v in cfg.items() if k not in ("data", "codec", "classifier")},
        "durations_s": ckpt.progress["durations_s"],
        "total_duration_s": round(sum(ckpt.progress["durations_s"].values()), 1),
        "stage_metrics": ckpt.progress["metrics"],
    }
    if ctx.main and complete:
        for stage in STAGES:
            out = write_model(run_dir, models[stage], classifier, {"provenance": {**provenance, "stage": stage}},
                              classes, name=f"stages/{stage}")
        model_dir = write_model(run_dir, models["hqarf"], classifier, {"provenance": provenance}, classes)
        costs = level_costs(codec_config)
        (model_dir / "costs.json").write_text(json.dumps(costs, indent=1))
        log.note(f"model written to {model_dir} ({sum(f.stat().st_size for f in model_dir.iterdir()) / 1e6:.1f} MB)")
        if not args.no_evaluate and args.stage in ("all", "evaluate", "hqarf"):
            from training.evaluate import evaluate_run
            t = time.time()
            report = evaluate_run(run_dir, data["test"], data["train"], log=log)
            ckpt.progress["durations_s"]["evaluate"] = round(time.time() - t, 1)
            finalize_provenance(run_dir, model_dir, provenance, ckpt, report, time.time() - started)
    elif ctx.main and not complete:
        log.note("not every stage and level is done yet: no model written (use --resume to continue)")
    ctx.close()
    return 0


def finalize_provenance(run_dir: Path, model_dir: Path, provenance: dict, ckpt: Checkpoints, report: dict,
                        wall: float):
    """Add the evaluation's headline metrics to the manifests (the weights, and so the fingerprint,
    stay as they are) and write PROVENANCE.md beside the model."""
    headline = report.get("headline", {})
    provenance = {**provenance, "durations_s": ckpt.progress["durations_s"],
                  "total_duration_s": round(sum(ckpt.progress["durations_s"].values()), 1)}
    for kind in ("codec", "classifier"):
        path = model_dir / f"{kind}.json"
        manifest = json.loads(path.read_text())
        manifest["provenance"] = provenance
        manifest["metrics"] = headline
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    lines = ["# Provenance of this model", "",
             f"- command: `{provenance['command']}`", f"- commit: {provenance['commit']}",
             f"- preset: {provenance['preset']}, seed {provenance['seed']}, device {provenance['device']}, "
             f"torch {provenance['torch']}",
             f"- data: torchsig 6Mod, key {provenance['data']['key']}, per class {provenance['data']['per_class']}",
             f"- training time: {provenance['total_duration_s'] / 60:.1f} min of stages "
             f"(wall {wall / 60:.1f} min including data and evaluation)", "",
             "## Durations (s)", "", *[f"- {k}: {v}" for k, v in provenance["durations_s"].items()], "",
             "## Metrics (held-out test set)", "", report.get("summary_table", ""), ""]
    (model_dir / "PROVENANCE.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
