# SPDX-License-Identifier: GPL-3.0-or-later
"""The coreset grid's report: aggregation over seeds, the Markdown tables and the accuracy plot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# -- report ---------------------------------------------------------------------------------------
def done_results(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["arch"], r.get("method"), r.get("fraction"), r["seed"], r["epochs_asked"], r["min_steps"])] = r
    return done


def mean_by_esn0(rows) -> dict | None:
    """Per-bin mean over runs of their test_accuracy_by_esn0 (None when the runs have none)."""
    parts = [r.get("test_accuracy_by_esn0") for r in rows]
    if not parts or any(p is None for p in parts):
        return None
    acc = np.array([[np.nan if a is None else a for a in p["accuracy"]] for p in parts], dtype=np.float64)
    seen = ~np.isnan(acc)
    mean = np.where(seen, acc, 0.0).sum(0) / np.maximum(1, seen.sum(0))  # a bin no run has stays None
    return {"edges_db": parts[0]["edges_db"],
            "accuracy": [round(float(m), 4) if s else None for m, s in zip(mean, seen.any(0))]}


def seed_stats(values) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "n": int(len(a))}


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


