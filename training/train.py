#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Train gr-hqarf's models: data -> ModRec classifier -> HAE -> HQARF without KL -> HQARF -> evaluation.

Run from the repository root in the project's environment, e.g. `./dev.sh train --preset smoke`
or `./dev.sh env python training/train.py --preset default`. Works unchanged under torchrun (DDP).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path

# `python training/train.py` outside the project's environment: one line that says what to run.
if importlib.util.find_spec("torch") is None or importlib.util.find_spec("training") is None:
    sys.exit(f"train.py: this Python ({sys.executable}) lacks torch or the checkout on its path; run it in the "
             "project's environment: ./dev.sh train [ARGS] (or ./dev.sh env python training/train.py [ARGS])")

import torch  # noqa: E402

from gnuradio.hqarf.classifier import Classifier, ClassifierConfig, ModRecNet, build_network  # noqa: E402
from gnuradio.hqarf.codec import Codec  # noqa: E402
from gnuradio.hqarf.costs import level_costs  # noqa: E402
from gnuradio.hqarf.model import HQARF, HQARFConfig  # noqa: E402
from training.checkpoints import STAGES, Checkpoints, parse_redo, progress_key  # noqa: E402
from training.common import REPO, Dist, RunLog, git_commit, invocation_command, per_level  # noqa: E402
from training.classifiers import (HELDOUT_SEED, calibration_threshold, classifier_stage, critic_stages,  # noqa: E402
                                  detector_classifier, fit_unknown_flag, out_of_set_classes, unknown_detector_stage)
from training.data import SPLIT_SEEDS, DataConfig, generate, impair, preset_data, preset_impairments  # noqa: E402
from training.evaluate import evaluate_run  # noqa: E402
from training.exemplar_bank import detector_accepts, exemplar_stage  # noqa: E402
from training.presets import PRESETS  # noqa: E402
from training.provenance import finalize_provenance  # noqa: E402
from training.levels import train_level  # noqa: E402
from training.stages import train_direct, train_semantic  # noqa: E402

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Stages run in order: data, classifier, hae, hqarf_nokl, hqarf, evaluate. Each level of each "
               "stage ends with a checkpoint in RUN_DIR/checkpoint; --resume skips what is done. The shippable "
               "model (codec + classifier + PROVENANCE.md) is written to RUN_DIR/model.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="smoke: <2 min CPU (tests, CI); default: the shipped model, about 57 min on 2 idle "
                        "CPU cores (budget 60); paper: the papers' sizes and 100 epochs per level (GPU)")
    p.add_argument("--run-dir", type=Path, default=None, help="output directory (default runs/<preset>)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of initialisation and batch order (default 0; with --resume: the run's own seed, and "
                        "another one is refused)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--stage", choices=("all", "classifier", "heldout_classifier", "unknown_detector", *STAGES,
                                       "semantic", "direct", "evaluate"),
                   default="all",
                   help="run only this stage (earlier ones must be in the run directory)")
    p.add_argument("--level", type=int, default=None, help="with --stage: train only this level")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoints")
    p.add_argument("--redo-from", default=None, metavar="STAGE[:LEVEL]",
                   help="with --resume: train again from this chain stage and level on (hae, hqarf_nokl, hqarf or "
                        "direct; level 0 if not given), dropping the checkpoints of that level and of everything "
                        "after it in the chain; the levels redone start from the previous stage's weights")
    p.add_argument("--redo-direct", type=int, action="append", default=[], metavar="LEVEL",
                   help="with --resume: train this level's direct decoder again and nothing else (each level's "
                        "decoder depends on the chain and the token head only); repeatable")
    p.add_argument("--stop-after", choices=("classifier", "heldout_classifier", "unknown_detector", *STAGES),
                   default=None,
                   help="end the run after this stage (continue it later with --resume)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--task-weight", type=float, default=None,
                   help="weight of the classifier (task) term, scaled per stage and level by the preset's task_scale "
                        "(default preset: every HAE level, quantised levels 0-2, level 4 without KL at 0.3x); "
                        "0 trains for reconstruction only")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per level for the stages run now (default: the preset's)")
    p.add_argument("--coreset", type=Path, default=None,
                   help="train the classifier on this coreset only (a coresets/*.npz file of training.coreset, "
                        "selected on the clean training split of this preset's size)")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation report at the end")
    p.add_argument("--init-from", type=Path, default=None, metavar="MODEL_DIR",
                   help="start a new run directory from a shipped model's weights (classifiers, detector, chain, token "
                        "head, direct decoders) as done checkpoints, then continue as --resume would (with "
                        "--redo-from: retrain part of that model)")
    p.add_argument("--redo-detector", action="store_true",
                   help="with --resume or --init-from: train the unknown detector again (then its threshold and the "
                        "exemplar bank, which leaves out the frames it flags)")
    p.add_argument("--detector-teacher", type=Path, default=None, metavar="MODEL_DIR",
                   help="train the unknown detector to follow this model directory's detector as well as the labels "
                        "(knowledge distillation), with the preset's detector_student entries (default preset: a "
                        "narrower detector, 9 epochs)")
    p.add_argument("--data-cache", type=Path, default=None, help="data cache directory (default .cache/data)")
    return p.parse_args(argv)


def stop_after(stage: str, ckpt: "Checkpoints", log: RunLog) -> int:
    ckpt.dir.mkdir(parents=True, exist_ok=True)
    ckpt.progress_file.write_text(json.dumps(ckpt.progress, indent=1))  # keeps this invocation's record
    log.note(f"stopped after the {stage} stage as asked (--stop-after): continue with --resume")
    return 0


def direct_stage(chain: HQARF, codec_config: HQARFConfig, cfg: dict, data: dict, args, ckpt: "Checkpoints",
                 ctx: Dist, log: RunLog, want, classifier) -> HQARF:
    """The trained chain model plus a direct decoder G_i per level of ``codec_config.direct_levels``."""
    # Seeded here, not only at the start of the run: the token head's and the token embeddings' initial weights
    # are then the same whether the stages before were trained in this invocation or loaded (--resume).
    torch.manual_seed(args.seed * 1000 + 449)
    model = HQARF(codec_config)
    model.load_state_dict(chain.state_dict(), strict=False)  # every weight but the direct decoders
    for level in codec_config.direct_levels:
        model.direct[str(level)].init_from_chain(model.levels)
    # The decoders (and token head) not done train again from the chain (and a fresh head), as in a run from
    # scratch: the file may still hold their earlier weights (--redo-direct, --redo-from), which are not loaded.
    redo = [f"direct.{lv}." for lv in codec_config.direct_levels if not ckpt.done("direct", lv)]
    ckpt.load("direct", model, fresh=redo + ([] if ckpt.done("semantic") else ["semantic."]))
    if codec_config.semantic_levels:
        # Codec v3: the global token's head first (the semantic levels' G_i are trained with its tokens).
        if ckpt.done("semantic"):
            ckpt.load("semantic", model.semantic)
        elif want("direct") or want("semantic"):
            t = time.time()
            val = train_semantic(model, data, cfg, ctx, log, seed=args.seed * 1000 + 450)
            if ctx.main:
                ckpt.save("semantic", None, model.semantic, time.time() - t, val)
            ctx.barrier()
    todo = [level for level in codec_config.direct_levels if not ckpt.done("direct", level) and want("direct")
            and (args.level is None or level == args.level)]
    critics = critic_stages(cfg, data, args, ckpt, ctx, log, classifier.config.num_classes) if todo else []
    for level in todo:
        t = time.time()
        # preset critics "use": how many of the critics (the first ones) each level's loss takes (default all)
        use = int(per_level((cfg.get("critics") or {}).get("use", len(critics)), level))
        val = train_direct(model, level, data, cfg, ctx, log, seed=args.seed * 1000 + 500 + level,
                           classifier=classifier, critics=critics[:use])
        if ctx.main:
            ckpt.save("direct", level, model, time.time() - t, val)
        ctx.barrier()
    return model


def write_model(run_dir: Path, codec_model: HQARF, classifier: ModRecNet, manifest_extra: dict, classes,
                name="model", heldout=None, exemplars=None) -> Path:
    out = run_dir / name
    codec = Codec(codec_model)
    codec.save(out, classes=list(classes), **manifest_extra)
    if exemplars is not None:
        exemplars.save(out, codec.fingerprint_hex, **manifest_extra)
    elif (out / "exemplars.json").exists():  # a bank of an earlier codec in this directory would be refused
        for stale in ("exemplars.json", "exemplars.safetensors"):
            (out / stale).unlink(missing_ok=True)
    if not isinstance(classifier, Classifier):
        classifier = Classifier(classifier, {"classes": list(classes)})
    classifier.save(out, **manifest_extra)
    if getattr(classifier, "detector", None) is not None:
        classifier.detector.save(out, **manifest_extra)
    if heldout is not None:
        Classifier(heldout, {"classes": list(classes)}, kind="heldout_classifier").save(
            out, role="held-out evaluation classifier: trained on originals only, never used in codec training "
                      "or model selection", **manifest_extra)
    return out


def run_seed(seed, ckpt: Checkpoints, resume: bool) -> int:
    """The seed this invocation trains with: a resumed run keeps the seed it started with (recorded in its
    checkpoints; runs from before that record resume with the one given, default 0), so a stage retrained
    later (--redo-direct, --stage unknown_detector) is the stage a single run with that seed would train.
    Records it for the next invocation."""
    recorded = ckpt.progress.get("seed")
    if recorded is not None and (resume or ckpt.progress.get("done")):
        if seed is not None and seed != recorded:
            raise SystemExit(f"{ckpt.dir.parent} was trained with --seed {recorded}; continue it with that seed "
                             "(or leave --seed out), or train another run directory")
        seed = recorded
    seed = 0 if seed is None else seed
    ckpt.progress["seed"] = seed
    return seed


def start_run(args):
    """The preset with the command line's overrides, the process group, the run's log and
    checkpoints, and this invocation recorded for provenance."""
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
    if args.init_from is not None:
        codec = HQARFConfig(**cfg["codec"])
        imported = ckpt.import_model(args.init_from, codec.levels, codec.direct_levels)
        log.note(f"--init-from {args.init_from}: checkpoints {', '.join(imported)} (the HAE and no-KL stages "
                 "marked done without weights)")
        args.resume = True
    dropped = []  # the chain checkpoints --redo-from dropped
    if args.redo_from is not None:
        if not args.resume:
            raise SystemExit("--redo-from needs --resume (it continues a run directory's checkpoints)")
        dropped = ckpt.redo_from(*parse_redo(args.redo_from))
        log.note(f"--redo-from {args.redo_from}: dropped {len(dropped)} checkpointed levels "
                 f"({', '.join(progress_key(s, lv) for s, lv in dropped) or 'none'})")
    if args.redo_direct:
        if not args.resume:
            raise SystemExit("--redo-direct needs --resume (it continues a run directory's checkpoints)")
        log.note(f"--redo-direct: dropped {', '.join(ckpt.redo_direct(lv) for lv in args.redo_direct)}")
    if args.redo_detector:
        if not args.resume:
            raise SystemExit("--redo-detector needs --resume or --init-from (it continues a run directory's checkpoints)")
        log.note("--redo-detector: " + ("dropped the unknown detector, it trains again" if ckpt.redo_detector()
                                        else "no unknown detector trained yet"))
    if args.detector_teacher is not None:  # the preset's detector_student entries (architecture, epochs, distill)
        if ckpt.done("unknown_detector"):
            raise SystemExit(f"--detector-teacher: {run_dir} already has its unknown detector; add --redo-detector to "
                             "train it again from the teacher")
        cfg.update(cfg.get("detector_student") or {})
        cfg["detector_teacher"] = str(args.detector_teacher)
    if (dropped or args.redo_direct) and args.stage == "all" and cfg.get("detector_reconstructions"):
        # The detector learned the reconstructions of the decoders just dropped: it trains again after them
        # (a --redo-from that dropped nothing keeps it).
        if ckpt.redo_detector():
            log.note("the unknown detector learned the reconstructions of the decoders redone: dropped, it trains again")
    args.seed = run_seed(args.seed, ckpt, args.resume)
    commit = git_commit()  # at the start: the tree may change while a long run trains
    command = invocation_command()
    # Every invocation that worked on this run directory (a resumed run has several), for provenance.
    ckpt.progress.setdefault("invocations", []).append({"command": command, "commit": commit,
                                                         "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    log.note(f"{command} | preset {args.preset} | world {ctx.world} | device {ctx.device} | "
             f"threads {torch.get_num_threads()} | commit {commit}")
    log.note("choices: Adam (lr flat for 2/3 then cosine to lr/10), gradient clipping at 1.0, linear Gumbel "
             f"temperature 0.667 -> 0.001, coefficients {cfg['coefs']}; training/README.md says why")
    return cfg, run_dir, ctx, log, ckpt, command, commit


def chain_stages(codec_config: HQARFConfig, cfg: dict, data: dict, args, ckpt: Checkpoints, ctx: Dist, log: RunLog,
                 want, classifier):
    """HAE, HQARF without KL, HQARF: level by level, lower levels frozen, decoded through the chain
    (the direct decoders are not there yet). Returns (model of each stage, the stage --stop-after
    ended the run at, or None)."""
    model = HQARF(dataclasses.replace(codec_config, direct_levels=(), semantic_levels=()))
    models = {}
    previous = None
    for stage in STAGES:
        if previous is not None:
            model = copy.deepcopy(models[previous])
        # the previous stage's weights (fresh ones for the first stage)
        start = models[previous] if previous is not None else copy.deepcopy(model)
        ckpt.load(stage, model)
        for level in range(codec_config.levels):
            if ckpt.done(stage, level):
                continue
            # A level not done in this stage starts from the previous stage's weights, whatever the
            # stage's checkpoint file holds for it (it may have been trained before a --redo-from).
            model.levels[level].load_state_dict(start.levels[level].state_dict())
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
        if args.stop_after == stage:
            return models, stage
    return models, None


def run_provenance(command: str, commit: str, args, ctx: Dist, cfg: dict, data_config: DataConfig,
                   ckpt: Checkpoints) -> dict:
    return {
        "command": command, "commit": commit, "preset": args.preset, "seed": args.seed,
        "device": str(ctx.device), "world_size": ctx.world, "torch": torch.__version__,
        "data": {**data_config.to_dict(), "key": data_config.key(), "per_class": cfg["data"],
                 "impairments": cfg.get("impairments") if cfg.get("impairments") is None
                 else preset_impairments(cfg).to_dict(),
                 "split_seeds": SPLIT_SEEDS},
        "training": {k: v for k, v in cfg.items() if k not in ("data", "codec", "classifier")},
        "durations_s": ckpt.progress["durations_s"],
        "total_duration_s": round(sum(ckpt.progress["durations_s"].values()), 1),
        "stage_metrics": ckpt.progress["metrics"],
        "invocations": ckpt.progress.get("invocations", []),
        **({"imported_from": ckpt.progress["imported_from"]} if "imported_from" in ckpt.progress else {}),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    cfg, run_dir, ctx, log, ckpt, command, commit = start_run(args)
    torch.manual_seed(args.seed)
    data, data_config = preset_data(cfg, ctx, log, args.data_cache)
    classes = data_config.classes
    want = lambda stage: args.stage in ("all", stage)  # noqa: E731

    # 1. ModRec classifiers, on original frames only: the project classifier (its features guide the
    #    codec) and the held-out one (another architecture, for evaluation only).
    classifier = ModRecNet(ClassifierConfig(num_classes=len(classes), **cfg["classifier"]))
    classifier_stage(classifier, "classifier", cfg, data, args, ckpt, ctx, log, want, seed=args.seed)
    heldout = None
    if cfg.get("heldout_classifier") is not None:
        heldout = build_network(ClassifierConfig(num_classes=len(classes), **cfg["heldout_classifier"]))
        classifier_stage(heldout, "heldout_classifier", {**cfg, "classifier_epochs": cfg["heldout_epochs"]}, data,
                         args, ckpt, ctx, log, want, seed=args.seed + HELDOUT_SEED)

    detector = None
    wants_detector = cfg.get("unknown_detector") is not None or cfg.get("unknown_init") == "project"
    # A detector that learns the codec's reconstructions too is trained once the codec is.
    detector_after_codec = wants_detector and bool(cfg.get("detector_reconstructions"))
    if wants_detector and not detector_after_codec:
        detector = unknown_detector_stage(cfg, data, args, ckpt, ctx, log, want, len(classes), project=classifier)

    if args.stop_after in ("classifier", "heldout_classifier") or (
            args.stop_after == "unknown_detector" and not detector_after_codec):
        return stop_after(args.stop_after, ckpt, log)

    # 2-4. The chain stages.
    codec_config = HQARFConfig(**cfg["codec"])
    models, stopped = chain_stages(codec_config, cfg, data, args, ckpt, ctx, log, want, classifier)
    if stopped is not None:
        return stop_after(stopped, ckpt, log)

    # 5. Codec v2: a direct decoder per level in direct_levels, trained end to end on I/Q.
    stages_run = [s for s in STAGES if ckpt.has_weights(s)]  # a run --init-from a model has the last only
    if codec_config.direct_levels:
        models["direct"] = direct_stage(models["hqarf"], codec_config, cfg, data, args, ckpt, ctx, log, want,
                                        classifier)
        stages_run.append("direct")
    shipped = stages_run[-1]
    complete = all(ckpt.done(s, level) for s in STAGES for level in range(codec_config.levels)) and all(
        ckpt.done("direct", level) for level in codec_config.direct_levels) and (
        not codec_config.semantic_levels or ckpt.done("semantic"))
    if detector_after_codec:
        if complete or ckpt.done("unknown_detector"):
            detector = unknown_detector_stage(cfg, data, args, ckpt, ctx, log, want, len(classes), project=classifier,
                                              codec=models[shipped] if complete else None)
        if args.stop_after == "unknown_detector":
            return stop_after(args.stop_after, ckpt, log)
    provenance = run_provenance(command, commit, args, ctx, cfg, data_config, ckpt)
    if ctx.main and complete:
        # the exemplar bank of the shipped stage (decoder side: real frames of the class at its levels), first:
        # the unknown flag's threshold is set on reconstructions as the shipped codec decodes them. Its frames
        # are ones the run's detector takes for their class (a flagged bank frame is flagged wherever it is output).
        rate = cfg.get("unknown_false_flag_rate", 0.01)
        accept = originals = None
        if detector is not None:  # the detector's threshold on the clean validation originals, computed once
            wrapped = detector_classifier(detector, classes)
            originals = calibration_threshold(wrapped, data.get("val_clean", data["val"])[0], rate)
            accept = detector_accepts(wrapped, originals)
        bank, seconds = exemplar_stage(cfg, data, models[shipped], len(classes), log, accept=accept)
        if bank is not None:
            ckpt.progress["durations_s"]["exemplars"] = round(seconds, 1)
            ckpt.progress_file.write_text(json.dumps(ckpt.progress, indent=1))  # for a later --write-provenance
            provenance = run_provenance(command, commit, args, ctx, cfg, data_config, ckpt)
        project = fit_unknown_flag(Classifier(classifier, {"classes": list(classes)}), data, log, detector,
                                   out_of_set_classes(cfg), rate, codec=models[shipped], exemplars=bank,
                                   originals_threshold=originals)
        classifier = project
        for stage in stages_run:
            write_model(run_dir, models[stage], classifier, {"provenance": {**provenance, "stage": stage}},
                        classes, name=f"stages/{stage}", heldout=heldout,
                        exemplars=bank if stage == shipped else None)
        model_dir = write_model(run_dir, models[shipped], classifier, {"provenance": provenance}, classes,
                                heldout=heldout, exemplars=bank)
        costs = level_costs(codec_config)
        (model_dir / "costs.json").write_text(json.dumps(costs, indent=1))
        log.note(f"model written to {model_dir} ({sum(f.stat().st_size for f in model_dir.iterdir()) / 1e6:.1f} MB)")
        if not args.no_evaluate and args.stage in ("all", "evaluate", shipped):
            t = time.time()
            report = evaluate_run(run_dir, data, log=log)
            ckpt.progress["durations_s"]["evaluate"] = round(time.time() - t, 1)
            finalize_provenance(run_dir, model_dir, provenance, ckpt, report, time.time() - started)
    elif ctx.main and not complete:
        log.note("not every stage and level is done yet: no model written (use --resume to continue)")
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
