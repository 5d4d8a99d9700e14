# SPDX-License-Identifier: GPL-3.0-or-later
"""`python -m training.coreset record | select | train | report | table`: the coreset experiment's
command line (docs/coreset.md has the method and the results). Errors of the steps (CoresetError)
come out as one message and exit status 1."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from training.common import REPO, comma_list, git_commit
from training.coreset.experiment import (ARCHS, CoresetError, coreset_name, data_spec, load_data, read_coreset,
                                         read_record, record, select_all, train_on)
from training.coreset.report import done_results, mean_by_esn0, plot_report, report_tables, seed_stats
from training.coreset.sampling import DEFAULT_TIER_BOUNDS, DEFAULT_TIER_PROPORTIONS, METHODS
from training.coreset.scores import DEFAULT_WEIGHTS


def floats(text: str) -> list[float]:
    return comma_list(text, float)


def ints(text: str) -> list[int]:
    return comma_list(text, int)


def run_report(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    archs, methods, fractions, seeds = args.archs, args.methods, args.fractions, args.seeds
    argv = sys.argv[1:] if args.argv is None else args.argv
    report = {"command": "python -m training.coreset " + " ".join(map(str, argv)), "commit": git_commit(),
              "methods": methods, "fractions": fractions, "seeds": seeds,
              "selection_arch": archs[0], "archs": archs, "epochs": args.epochs, "min_steps": args.min_steps,
              "params": {"weights": args.weights, "tier_bounds": args.tier_bounds,
                         "tier_proportions": args.tier_proportions, "el2n_epochs": args.el2n_epochs,
                         "class_balanced": args.class_balanced, "snr_strata": args.snr_strata,
                         "trajectory_source": args.trajectory_source},
              "variants": {}}
    started = time.time()
    for variant in args.variants:
        run_dir = out / variant
        spec = data_spec(variant, args.train_per_class, args.test_per_class)
        want = {"data": spec, "arch": archs[0], "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                "seed": args.record_seed, "trajectory_source": args.trajectory_source}
        rec_path = run_dir / "record.json"
        if rec_path.exists():
            rec = json.loads(rec_path.read_text())
            differ = {k: (rec.get(k), v) for k, v in want.items() if rec.get(k) != v}
            if differ:
                raise CoresetError(f"{run_dir} holds a recording made with other settings {differ}: use another --out")
            print(f"[{variant}] recording found in {run_dir}", flush=True)
        else:
            rec = record(run_dir, spec, arch=archs[0], epochs=args.epochs, batch=args.batch, lr=args.lr,
                         seed=args.record_seed, device=args.device, source=args.trajectory_source,
                         cache_dir=args.data_cache, progress=not args.quiet)
        sel = select_all(run_dir, methods, fractions, seeds, weights=args.weights,
                         bounds=args.tier_bounds, proportions=args.tier_proportions,
                         el2n_epochs=args.el2n_epochs, class_balanced=args.class_balanced,
                         snr_strata=args.snr_strata)
        data = load_data(spec, args.data_cache, progress=False)
        done = done_results(run_dir / "results.jsonl")
        results = {}
        full = {archs[0]: {"test_accuracy": rec["test_accuracy"], "train_time_s": rec["train_time_s"],
                           "seed": rec["seed"], "accuracy_by_esn0": mean_by_esn0([rec])}}
        for arch in archs:
            if arch not in full:  # full-data reference for the other architectures
                key = (arch, "full", 1.0, args.record_seed, args.epochs, 0)
                r = done.get(key) or train_on(run_dir, None, arch=arch, seed=args.record_seed, epochs=args.epochs,
                                              data=data, device=args.device,
                                              label={"method": "full", "fraction": 1.0})
                full[arch] = {"test_accuracy": r["test_accuracy"], "train_time_s": r["train_time_s"],
                              "seed": r["seed"], "accuracy_by_esn0": mean_by_esn0([r])}
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
                        "size": rows[0]["size"], "accuracy": seed_stats([r["test_accuracy"] for r in rows]),
                        "train_time_s": seed_stats([r["train_time_s"] for r in rows]),
                        "accuracies": [r["test_accuracy"] for r in rows],
                        "accuracy_by_esn0": mean_by_esn0(rows)}
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


# -- command line ---------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser):
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-cache", type=Path, default=None, help="6Mod cache directory (default .cache/data)")
    p.add_argument("--quiet", action="store_true", help="no data-generation progress bar")


def _selection_flags(p: argparse.ArgumentParser):
    p.add_argument("--weights", type=floats, default=",".join(f"{w:.6g}" for w in DEFAULT_WEIGHTS),
                   help="FoQuS weights of the normalised forgetting, persistent-error and quality scores")
    p.add_argument("--tier-bounds", type=floats, default=",".join(f"{b:.6g}" for b in DEFAULT_TIER_BOUNDS),
                   help="rank quantiles separating the high, middle and low score tiers")
    p.add_argument("--tier-proportions", type=floats, default=",".join(f"{q:g}" for q in DEFAULT_TIER_PROPORTIONS),
                   help="share of the coreset drawn from the high, middle and low tiers")
    p.add_argument("--el2n-epochs", type=int, default=None, help="EL2N: average over the first N epochs "
                   "(default ceil(epochs / 10))")
    p.add_argument("--class-balanced", action="store_true", help="select within each class (k split by class size)")
    p.add_argument("--snr-strata", type=int, default=0, metavar="N",
                   help="select within each of N equal-count Es/N0 bins (noisy data; with --class-balanced: "
                        "within each class and bin); 0 = off")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.coreset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    r.add_argument("--no-augment", action="store_true", help="no AWGN augmentation (classifier_loop.augment)")
    _common(r)

    s = sub.add_parser("select", help="write coresets of a recorded run")
    s.add_argument("--run-dir", type=Path, required=True)
    s.add_argument("--fractions", type=floats, default="0.01,0.05,0.1,0.3")
    s.add_argument("--methods", type=comma_list, default=",".join(METHODS))
    s.add_argument("--seeds", type=ints, default="0")
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
    q.add_argument("--variants", type=comma_list, default="clean,noisy")
    q.add_argument("--methods", type=comma_list, default=",".join(METHODS))
    q.add_argument("--fractions", type=floats, default="0.01,0.05,0.1,0.3")
    q.add_argument("--seeds", type=ints, default="0,1,2")
    q.add_argument("--archs", type=comma_list, default="default,small",
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
    m.add_argument("--fractions", type=floats, default=None, help="only these fractions (default: all of the report's)")
    args = p.parse_args(argv)
    args.argv = argv
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        run_command(args)
    except CoresetError as exc:
        raise SystemExit(f"training.coreset {args.command}: {exc}") from None
    return 0


def run_command(args):
    if args.command == "record":
        spec = data_spec(args.variant, args.train_per_class, args.test_per_class)
        info = record(args.run_dir, spec, arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr,
                      seed=args.seed, device=args.device, source=args.trajectory_source,
                      augment_noise=not args.no_augment, cache_dir=args.data_cache, progress=not args.quiet)
        print(json.dumps({k: info[k] for k in ("n_train", "epochs", "test_accuracy", "train_time_s")}))
    elif args.command == "select":
        summary = select_all(args.run_dir, args.methods, args.fractions, args.seeds,
                             weights=args.weights, bounds=args.tier_bounds,
                             proportions=args.tier_proportions, el2n_epochs=args.el2n_epochs,
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
            print(report_tables(report, args.fractions))
        except (OSError, ValueError, KeyError) as e:
            raise CoresetError(f"{args.report}: not a coreset report ({e})") from None
    else:
        report = run_report(args)
        print(f"report: {Path(args.out) / 'report.json'}, plot: {Path(args.out) / 'accuracy_vs_fraction.png'} "
              f"({report['wall_time_s']:.0f} s)")
