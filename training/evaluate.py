#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Evaluation report: ModRec accuracy, rate and distortion of HAE / HQARF without KL / HQARF at every
level, against conventional codecs at matched bits per frame; JSON, Markdown and PNG plots.

    ./dev.sh env python training/evaluate.py --run-dir runs/default            # all three stages of a training run
    ./dev.sh env python training/evaluate.py --model python/hqarf/models/default   # a shipped model (HQARF stage only)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gnuradio.hqarf.classifier import load_classifier
from gnuradio.hqarf.codec import load_codec
from gnuradio.hqarf.frames import from_iq, to_iq
from gnuradio.hqarf.weights import manifest_path
from training.baselines import all_codecs, lossless_reference, svd_components_for_energy
from training.common import REPO, invocation_command
from training.data import DataConfig, Impairments, generate, impair

STAGE_LABELS = {"hae": "HAE (no quantiser)", "hqarf_nokl": "HQARF without KL", "hqarf": "HQARF (chain decoder)",
                "direct": "HQARF direct decoders (v2, v3)",
                # the shipped codec with its exemplar bank switched off: the decoder network at every level
                "network": "HQARF direct decoders, network rendering"}
# Stages evaluated from another stage's model directory, and how its codec is loaded.
DERIVED_STAGES = {"network": ("direct", {"exemplars": False})}
# The stage a report's headline is about: the last one trained (the shipped model).
MAIN_STAGES = ("direct", "hqarf", "hqarf_nokl", "hae")


def main_stage(stages: dict) -> str:
    return next(s for s in MAIN_STAGES if s in stages) if any(s in stages for s in MAIN_STAGES) else next(iter(stages))


def load_heldout(directory):
    """The model directory's held-out classifier, or None for models shipped without one."""
    if not manifest_path(directory, "heldout_classifier").exists():
        return None
    return load_classifier(directory, kind="heldout_classifier")
# The thesis notebook's HQARF accuracies (600 test signals), drawn for reference.
PAPER_HQARF = {"compression_ratio": [21.3, 42.7, 85.3, 170.7, 341.3], "accuracy": [0.833, 0.825, 0.667, 0.648, 0.52]}


def reconstruct(codec, stage: str, x: np.ndarray, level: int) -> np.ndarray:
    """Unit-scale reconstructions of unit-scale frames; HAE skips every quantiser."""
    if stage != "hae":
        return codec.decode(codec.encode(x, level), level)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), 256):
            out.append(from_iq(codec.model.reconstruct_continuous(to_iq(x[i:i + 256], codec.device), level)))
    return np.concatenate(out)


def snr_db(x, xhat) -> float:
    return float(10 * np.log10(np.sum(np.abs(x) ** 2) / max(np.sum(np.abs(x - xhat) ** 2), 1e-30)))


def codebook_use(codes: np.ndarray, k: int) -> tuple[float, int]:
    counts = np.bincount(codes.reshape(-1), minlength=k).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum())), int((counts == 0).sum())


def per_class_accuracy(pred, y, n_classes):
    return [float((pred[y == c] == c).mean()) if np.any(y == c) else None for c in range(n_classes)]


def confusion(pred, y, n):
    m = np.zeros((n, n), np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def evaluate_models(stage_dirs: dict, test, train, out_dir: Path, log=None, baselines: bool = True,
                    test_name: str = "clean", extra=None, judges=None) -> dict:
    """Evaluate codecs (stage -> model dir; the classifier is read from the 'hqarf' one). `judges`
    (name -> Classifier, training/judges.py) score the originals and every reconstruction too."""
    say = log.note if log is not None else print
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y = test
    main_dir = stage_dirs[main_stage(stage_dirs)]
    clf = load_classifier(main_dir)
    heldout = load_heldout(main_dir)
    classes = clf.classes
    n_classes = len(classes)
    report: dict = {"classes": classes, "test_frames": int(len(x)), "test_per_class": int(len(x) // n_classes),
                    "stages": {}, "conventional": {}, "paper_hqarf": PAPER_HQARF, "test_set": test_name}
    pred = clf.predict(x)
    report["original_accuracy"] = float((pred == y).mean())
    report["original_per_class"] = per_class_accuracy(pred, y, n_classes)
    if heldout is not None:
        ph = heldout.predict(x)
        report["original_accuracy_heldout"] = float((ph == y).mean())
        report["original_per_class_heldout"] = per_class_accuracy(ph, y, n_classes)
    judges = judges or {}
    if judges:
        report["original_accuracy_judges"] = {name: float((j.predict(x) == y).mean()) for name, j in judges.items()}
    say(f"evaluate: classifier on originals {report['original_accuracy']:.4f} ({len(x)} frames)")
    recon_store: dict = {}
    budgets = None
    for stage, directory in stage_dirs.items():
        codec = load_codec(directory, **DERIVED_STAGES.get(stage, (None, {}))[1])
        levels = []
        budgets = [codec.bits_per_frame(level) for level in range(codec.levels)]
        for level in range(codec.levels):
            t = time.time()
            xhat = reconstruct(codec, stage, x, level)
            p = clf.predict(xhat)
            row = {"level": level, "accuracy": float((p == y).mean()),
                   "per_class": per_class_accuracy(p, y, n_classes), "snr_db": snr_db(x, xhat),
                   # how the decoder rendered this level: "network" or "exemplar" (a frame of the model's bank)
                   "rendering": "network" if stage == "hae" else codec.rendering(level),
                   "bits_per_frame": codec.bits_per_frame(level),
                   "compression_ratio_cf32": codec.compression_ratio(level, 64),
                   "compression_ratio_ci16": codec.compression_ratio(level, 32)}
            if heldout is not None:
                ph = heldout.predict(xhat)
                row["accuracy_heldout"] = float((ph == y).mean())
                row["per_class_heldout"] = per_class_accuracy(ph, y, n_classes)
            if judges:
                pj = {name: j.predict(xhat) for name, j in judges.items()}
                row["accuracy_judges"] = {name: float((p_ == y).mean()) for name, p_ in pj.items()}
                row["per_class_judges"] = {name: per_class_accuracy(p_, y, n_classes) for name, p_ in pj.items()}
            if stage != "hae":
                codes = codec.encode(x, level)
                row["perplexity"], row["dead_codes"] = codebook_use(codes, codec.codebook_size)
                # Real bytes: messages of 1 and of 16 frames from codec.compress.
                row["bytes_per_frame_1"] = len(codec.compress(x[:1], level))
                row["bytes_per_frame_16"] = len(codec.compress(x[:16], level)) / 16
                row["message_cr_cf32_16"] = codec.frame_len * 8 / row["bytes_per_frame_16"]
                row["confusion"] = confusion(p, y, n_classes).tolist()
            row["seconds"] = round(time.time() - t, 2)
            levels.append(row)
            recon_store[(stage, level)] = xhat
            say(f"evaluate: {stage} L{level}: accuracy {row['accuracy']:.4f}"
                + (f" (held-out classifier {row['accuracy_heldout']:.4f})" if heldout is not None else "")
                + "".join(f", judge {name} {a:.4f}" for name, a in row.get("accuracy_judges", {}).items())
                + f", SNR {row['snr_db']:.2f} dB")
        report["stages"][stage] = levels

    if baselines and budgets:
        fit = train[0][: min(len(train[0]), 6000)]
        for name, fn in all_codecs(fit).items():
            rows = []
            for level, budget in enumerate(budgets):
                xhat, bits = fn(x, budget)
                p = clf.predict(xhat)
                rows.append({"level": level, "budget_bits": budget, "bits_per_frame": float(bits),
                             "accuracy": float((p == y).mean()), "snr_db": snr_db(x, xhat),
                             "compression_ratio_cf32": 1024 * 64 / float(bits)})
            report["conventional"][name] = rows
            say(f"evaluate: {name}: " + ", ".join(f"L{r['level']} {r['accuracy']:.3f}" for r in rows))
        lossless = lossless_reference(x)
        report["lossless_zstd_int16"] = {"bits_per_frame": lossless.bits_per_frame,
                                         "compression_ratio_cf32": 1024 * 64 / lossless.bits_per_frame,
                                         "compression_ratio_ci16": 1024 * 32 / lossless.bits_per_frame,
                                         "roundtrip_exact": bool(lossless.roundtrip_ok)}
        report["svd_99_energy_components"] = int(svd_components_for_energy(fit, 0.99))

    report["headline"] = headline(report)
    report["summary_table"] = summary_table(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "summary.md").write_text(summary_markdown(report))
    try:
        plots(report, x, y, recon_store, classes, out_dir)
    except Exception as exc:  # plots are a by-product: never lose the numbers for them
        say(f"evaluate: plotting failed: {exc!r}")
    say(f"evaluate: report in {out_dir}")
    return report


def headline(report: dict) -> dict:
    main = report["stages"][main_stage(report["stages"])]
    out = {"original_accuracy": report["original_accuracy"], "stage": main_stage(report["stages"]),
           "test_set": report.get("test_set", "clean")}
    if "original_accuracy_heldout" in report:
        out["original_accuracy_heldout"] = report["original_accuracy_heldout"]
        out["accuracy_per_level_heldout"] = [r["accuracy_heldout"] for r in main]
    if "original_accuracy_judges" in report:
        out["original_accuracy_judges"] = report["original_accuracy_judges"]
        out["accuracy_per_level_judges"] = {name: [r["accuracy_judges"][name] for r in main]
                                            for name in report["original_accuracy_judges"]}
    return {**out,
            "accuracy_per_level": [r["accuracy"] for r in main],
            "snr_db_per_level": [round(r["snr_db"], 2) for r in main],
            "test_frames": report["test_frames"]}


def summary_table(report: dict) -> str:
    stages = report["stages"]
    main = stages[main_stage(stages)]
    conv = report.get("conventional", {})
    head = ["level", "bits/frame", "bytes/frame (16-frame msg)", "CR vs cf32", "CR vs ci16"]
    head += [f"acc. {STAGE_LABELS[s]}" for s in stages] + ["SNR HQARF (dB)"]
    head += [f"acc. {name}" for name in conv]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(main):
        cells = [str(r["level"]), str(r["bits_per_frame"]),
                 f"{r.get('bytes_per_frame_16', float('nan')):.1f}",
                 f"{r['compression_ratio_cf32']:.1f}", f"{r['compression_ratio_ci16']:.1f}"]
        cells += [f"{stages[s][i]['accuracy']:.3f}" for s in stages] + [f"{r['snr_db']:.1f}"]
        cells += [f"{conv[name][i]['accuracy']:.3f}" for name in conv]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def at_chance(accuracy: float, classes: int, frames: int) -> bool:
    """An accuracy no better than guessing: within two standard errors of 1 / classes."""
    chance = 1.0 / classes
    return accuracy <= chance + 2.0 * (chance * (1.0 - chance) / max(1, frames)) ** 0.5


def summary_markdown(report: dict) -> str:
    classes = report["classes"]
    out = ["# Evaluation", "", f"Test set: {report['test_frames']} frames ({report['test_per_class']} per class). "
           f"Classifier on originals: {report['original_accuracy']:.4f}.", "", report["summary_table"], ""]
    if at_chance(report["original_accuracy"], len(classes), report["test_frames"]):
        out[1:1] = ["", f"**Toy run**: the classifier on original frames is at chance ({1 / len(classes):.2f} for "
                    f"{len(classes)} classes), so these figures show that the pipeline runs end to end, not what "
                    "the codec achieves (the smoke preset trains for seconds on a few frames).", ""]
    if "lossless_zstd_int16" in report:
        ll = report["lossless_zstd_int16"]
        out += [f"Lossless reference (zstd -19 on int16 IQ): {ll['bits_per_frame']:.0f} bits/frame, "
                f"CR {ll['compression_ratio_cf32']:.2f} vs cf32, {ll['compression_ratio_ci16']:.2f} vs ci16.", ""]
    if "svd_99_energy_components" in report:
        out += [f"SVD bound: {report['svd_99_energy_components']} of 2048 real components keep 99 % of the "
                "training frames' energy.", ""]
    out += ["## Per-class accuracy", "", "| stage | level | " + " | ".join(classes) + " |",
            "|---|---|" + "---|" * len(classes)]
    for stage, rows in report["stages"].items():
        for r in rows:
            out.append(f"| {stage} | {r['level']} | " + " | ".join(f"{a:.2f}" for a in r["per_class"]) + " |")
    judged = [(stage, r) for stage, rows in report["stages"].items() for r in rows if r.get("accuracy_judges")]
    if judged:
        names = list(judged[0][1]["accuracy_judges"])
        out += ["", "## Unseen judges (held-out recipe, other seeds, in no loss)", "",
                "| stage | level | " + " | ".join(names) + " | per class (" + ", ".join(classes) + ") |",
                "|---|---|" + "---|" * (len(names) + 1)]
        out += [f"| {stage} | {r['level']} | " + " | ".join(f"{r['accuracy_judges'][n]:.3f}" for n in names) + " | "
                + "; ".join(" ".join(f"{a:.2f}" for a in r["per_class_judges"][n]) for n in names) + " |"
                for stage, r in judged]
    out += ["", "## Conventional codecs at matched bits", "", "| codec | level | bits spent | accuracy | SNR (dB) |",
            "|---|---|---|---|---|"]
    for name, rows in report.get("conventional", {}).items():
        for r in rows:
            out.append(f"| {name} | {r['level']} | {r['bits_per_frame']:.0f} | {r['accuracy']:.3f} | {r['snr_db']:.1f} |")
    return "\n".join(out) + "\n"


def previous_model() -> dict | None:
    """The previous shipped model's accuracy per level (docs/results/previous_model.json), drawn for reference."""
    try:
        return json.loads((REPO / "docs" / "results" / "previous_model.json").read_text())
    except (OSError, ValueError):
        return None


def style_accuracy_axes(ax, xlabel: str, legend_loc: str):
    """The look of every accuracy plot of the reports: labels, 0-1 range, grid, small legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ModRec accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc=legend_loc)


def plots(report, x, y, recon, classes, out_dir: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Accuracy vs compression ratio.
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for stage, rows in report["stages"].items():
        ax.plot([r["compression_ratio_cf32"] for r in rows], [r["accuracy"] for r in rows], "o-", lw=2,
                label=STAGE_LABELS[stage])
    for name, rows in report.get("conventional", {}).items():
        ax.plot([r["compression_ratio_cf32"] for r in rows], [r["accuracy"] for r in rows], "s--", alpha=0.7,
                label=f"{name} (matched bits)")
    ax.plot(PAPER_HQARF["compression_ratio"], PAPER_HQARF["accuracy"], "k^:", label="published HQARF")
    previous = previous_model()
    if previous is not None and report.get("test_set", "clean") == "clean":
        ax.plot(previous["compression_ratio"], previous["accuracy"], "v:", color="tab:brown",
                label=f"previous shipped model ({previous['fingerprint']})")
    levels_cr = [r["compression_ratio_cf32"] for r in next(iter(report["stages"].values()))]
    ax.axhline(report["original_accuracy"], color="grey", lw=0.8, ls=":", label="originals")
    ax.axhline(1 / len(classes), color="grey", lw=0.8, ls="-.", label="chance")
    ax.set_xscale("log")
    ax.set_xticks(levels_cr, [f"{c:.0f}" for c in levels_cr])
    ax.minorticks_off()
    style_accuracy_axes(ax, "compression ratio vs complex float32 (bits)", "lower left")
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_vs_cr.png", dpi=120)
    plt.close(fig)

    stage = main_stage({s: None for s, _ in recon})
    levels = sorted(level for s, level in recon if s == stage)
    first = {c: np.flatnonzero(y == c)[:20] for c in range(len(classes))}

    # I/Q scatter of 20 concatenated frames per class: originals and every level.
    fig, axes = plt.subplots(len(classes), 1 + len(levels), figsize=(2 * (1 + len(levels)), 2 * len(classes)))
    for c in range(len(classes)):
        for j, (title, data) in enumerate([("original", x)] + [(f"L{lv}", recon[(stage, lv)]) for lv in levels]):
            pts = data[first[c]].reshape(-1)
            ax = axes[c, j]
            ax.plot(pts.real, pts.imag, ",", alpha=0.4)
            ax.set_xlim(-1.1, 1.1), ax.set_ylim(-1.1, 1.1), ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(classes[c], fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "iq_scatter.png", dpi=100)
    plt.close(fig)

    # Spectrogram and first 100 I/Q samples: original vs level-4 reconstruction.
    top = levels[-1]
    fig, axes = plt.subplots(len(classes), 4, figsize=(13, 2.1 * len(classes)))
    for c in range(len(classes)):
        i = first[c][0]
        for j, (name, data) in enumerate([("original", x), (f"L{top}", recon[(stage, top)])]):
            _, _, _, image = axes[c, j].specgram(data[i], NFFT=64, noverlap=32, Fs=1.0, vmin=-60, vmax=0)
            axes[c, j].set_title(f"{classes[c]} {name}", fontsize=8)
            axes[c, j].set_xlabel("time (samples)", fontsize=7)
            axes[c, j].set_ylabel("frequency (cycles/sample)", fontsize=7)
            fig.colorbar(image, ax=axes[c, j], label="power (dB)", pad=0.01)
            axes[c, 2 + j].plot(data[i][:100].real, lw=0.9, label="I")
            axes[c, 2 + j].plot(data[i][:100].imag, lw=0.9, label="Q")
            axes[c, 2 + j].set_title(f"{classes[c]} {name}: first 100 samples", fontsize=8)
            axes[c, 2 + j].set_xlabel("sample", fontsize=7)
            axes[c, 2 + j].set_ylabel("amplitude (max |x| = 1)", fontsize=7)
            axes[c, 2 + j].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(out_dir / "spectrogram_first_samples.png", dpi=90)
    plt.close(fig)

    # Confusion matrices at levels 1 and 4.
    rows = report["stages"][stage]
    pick = [lv for lv in (1, 4) if lv < len(rows)]
    fig, axes = plt.subplots(1, len(pick), figsize=(5.2 * len(pick), 4.6), squeeze=False)
    for ax, lv in zip(axes[0], pick):
        m = np.array(rows[lv]["confusion"], dtype=float)
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for (a, b), v in np.ndenumerate(m):
            ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_title(f"{STAGE_LABELS[stage]} level {lv}: accuracy {rows[lv]['accuracy']:.3f}", fontsize=9)
        ax.set_xlabel("predicted"), ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(out_dir / "confusion.png", dpi=110)
    plt.close(fig)


def evaluate_run(run_dir: Path, data: dict, log=None, out_dir: Path | None = None, judges=None) -> dict:
    """The report of a training run: every stage on the clean test split (RUN_DIR/evaluation), and, when
    the run trained on impaired data, the same on the impaired test split (evaluation/impaired)."""
    out_dir = out_dir or run_dir / "evaluation"
    stage_dirs = {s: run_dir / "stages" / s for s in STAGE_LABELS if (run_dir / "stages" / s / "codec.json").exists()}
    # a shipped stage with an exemplar bank is reported without it too (the network's own rendering)
    for derived, (source, _) in DERIVED_STAGES.items():
        if source in stage_dirs and (stage_dirs[source] / "exemplars.json").exists():
            stage_dirs[derived] = stage_dirs[source]
    report = evaluate_models(stage_dirs, data.get("test_clean", data["test"]), data["train"], out_dir, log=log,
                             judges=judges)
    if "test_clean" in data:
        # the shipped stage and the chain it replaces (the other stages only on the clean split, for time)
        compared = {s: d for s, d in stage_dirs.items() if s in ("hqarf", "direct", "network")} or stage_dirs
        impaired = evaluate_models(compared, data["test"], data["train"], out_dir / "impaired", log=log,
                                   baselines=False, test_name="impaired", judges=judges)
        report["impaired_headline"] = impaired["headline"]
        (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def model_provenance(model_dir) -> dict:
    """The training provenance in a model's codec manifest ({} where it has none or cannot be read)."""
    try:
        return json.loads((Path(model_dir) / "codec.json").read_text()).get("provenance") or {}
    except (OSError, ValueError):
        return {}


def trained_impairments(model_dir) -> dict | None:
    """The receiver impairments a model was trained with (its manifest's provenance), or None."""
    return (model_provenance(model_dir).get("data") or {}).get("impairments")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run-dir", type=Path, help="a train.py run directory (evaluates its three stages)")
    src.add_argument("--model", type=Path, help="a model directory (codec + classifier), e.g. the shipped one")
    p.add_argument("--per-class", type=int, default=1000, help="test frames per class (default 1000)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default RUN_DIR/evaluation or ./evaluation)")
    p.add_argument("--no-baselines", action="store_true", help="skip the conventional codecs")
    p.add_argument("--write-provenance", action="store_true",
                   help="with --run-dir: write the report's metrics and PROVENANCE.md beside RUN_DIR/model, as "
                        "train.py does when it evaluates (for a run trained with --no-evaluate)")
    p.add_argument("--judges", type=int, nargs="+", default=[], metavar="SEED",
                   help="more unseen judges: classifiers of the held-out recipe with these seeds, trained on the "
                        "preset's original frames the first time (minutes each; cached in --judges-dir), scored "
                        "beside the held-out classifier (training/judges.py); e.g. --judges 4242 9001")
    p.add_argument("--judges-dir", type=Path, default=None, help="the judges' cache (default .cache/judges)")
    args = p.parse_args(argv)
    test = generate("test", args.per_class, DataConfig())
    train = generate("train", max(1, min(1000, args.per_class)), DataConfig())
    judges = None
    if args.judges:
        from training.judges import DEFAULT_CACHE, load_judges
        model_dir = args.run_dir / "model" if args.run_dir else args.model
        run = model_provenance(model_dir)
        judges = load_judges(args.judges, load_classifier(model_dir).classes, preset=run.get("preset", "default"),
                             run_seed=int(run.get("seed", 0)), cache_dir=args.judges_dir or DEFAULT_CACHE)
    if args.run_dir:
        data = {"test": test, "train": train}
        spec = trained_impairments(args.run_dir / "model")
        if spec is not None:  # the run trained on impaired frames: report both test sets, as train.py does
            imp = Impairments(**spec)
            data = {"test_clean": test, "test": (impair(test[0], "test", imp)[0], test[1]),
                    "train": (impair(train[0], "train", imp)[0], train[1])}
        started = time.time()
        report = evaluate_run(args.run_dir, data, out_dir=args.out, judges=judges)
        if args.write_provenance:
            from training.checkpoints import Checkpoints
            from training.provenance import finalize_provenance
            model_dir = args.run_dir / "model"
            ckpt = Checkpoints(args.run_dir)
            ckpt.progress["durations_s"]["evaluate"] = round(time.time() - started, 1)
            provenance = json.loads((model_dir / "codec.json").read_text())["provenance"]
            finalize_provenance(args.run_dir, model_dir, provenance, ckpt, report, None,
                                evaluated_by=invocation_command())
    else:
        stages = {"hqarf": args.model}
        if (manifest_path(args.model, "codec").parent / "exemplars.json").exists():
            stages["network"] = args.model
        evaluate_models(stages, test, train, args.out or Path("evaluation"),
                        baselines=not args.no_baselines, judges=judges)
    return 0


if __name__ == "__main__":
    sys.exit(main())
