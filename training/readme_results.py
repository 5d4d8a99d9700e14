#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the README's results table and summary from an evaluation report.

    python training/readme_results.py docs/results/report.json            # print the block
    python training/readme_results.py docs/results/report.json --readme README.md   # replace it in place

The block sits between the markers `<!-- results:begin -->` and `<!-- results:end -->`; every number
in it comes from the report, so the README cannot drift from the measured figures.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
GOALS = (0.99, 0.98, 0.97, 0.95, 0.90)


def _levels(items) -> str:
    items = list(items)
    return ", ".join(str(i) for i in items) if items else "none"


def shipped_stage(report: dict) -> str:
    """The stage the report's shipped model is: the direct decoders (codec v2, v3) where present."""
    return "direct" if "direct" in report["stages"] else "hqarf"


def render(report: dict) -> str:
    stages = {name: {row["level"]: row for row in rows} for name, rows in report["stages"].items()}
    main = shipped_stage(report)
    hq = stages[main]
    levels = sorted(hq)
    paper = report["paper_hqarf"]["accuracy"]
    classes = report["classes"]
    heldout = all("accuracy_heldout" in hq[lv] for lv in levels)
    chain = stages.get("hqarf") if main == "direct" else None
    # the shipped codec without its exemplar bank (evaluate.py's stage "network"), where it has one
    network = stages.get("network")
    network_heldout = network is not None and all("accuracy_heldout" in network[lv] for lv in levels)
    # the levels the shipped decoder renders with exemplars: as each row records it (reports from before
    # session 29 do not: there, where the network rendering's SNR differs)
    rendered = [lv for lv in levels if hq[lv].get("rendering") == "exemplar" or (
        "rendering" not in hq[lv] and network is not None and network[lv]["snr_db"] != hq[lv]["snr_db"])]
    best = {}
    for level in levels:
        rows = [(name, {r["level"]: r for r in rows}[level]["accuracy"])
                for name, rows in report["conventional"].items()]
        best[level] = max(rows, key=lambda t: t[1])
    head = ["level", "bits/frame", "bytes/frame (16-frame msgs)", "CR vs cf32", "published HQARF", "**shipped**"]
    head += ["shipped, held-out classifier"] if heldout else []
    head += ["network rendering (no exemplars)" + (": project / held-out" if network_heldout else "")] if network else []
    head += ["chain decoder (v1 recipe)"] if chain else []
    # a run --init-from a model has no HAE or no-KL stage weights: those columns only where evaluated
    earlier = [(n, label) for n, label in (("hqarf_nokl", "HQARF without KL"), ("hae", "HAE (no quantiser)"))
               if n in stages]
    head += [label for _, label in earlier] + ["best conventional codec at the same bits", "SNR (dB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for level in levels:
        r = hq[level]
        cells = [str(level), str(r["bits_per_frame"]), f"{r['bytes_per_frame_16']:.1f}",
                 f"{r['compression_ratio_cf32']:.1f}", f"{paper[level]:.3f}", f"**{r['accuracy']:.3f}**"]
        cells += [f"{r['accuracy_heldout']:.3f}"] if heldout else []
        if network is not None:
            same = "" if level in rendered else " (the same)"
            cells.append(f"{network[level]['accuracy']:.3f}" + (f" / {network[level]['accuracy_heldout']:.3f}"
                                                               if network_heldout else "") + same)
        cells += [f"{chain[level]['accuracy']:.3f}"] if chain else []
        cells += [f"{stages[n][level]['accuracy']:.3f}" for n, _ in earlier]
        snr = f"{r['snr_db']:.1f}" + (f" (network {network[level]['snr_db']:.1f})"
                                      if level in rendered and network is not None else "")
        cells += [f"{best[level][0]} {best[level][1]:.3f}", snr]
        lines.append("| " + " | ".join(cells) + " |")
    acc = {level: hq[level]["accuracy"] for level in levels}
    meets = [lv for lv in levels if acc[lv] >= paper[lv] - 5e-4]
    short = [lv for lv in levels if lv not in meets]
    beats = [lv for lv in levels if acc[lv] > best[lv][1]]
    goals = [lv for lv in levels if lv < len(GOALS) and acc[lv] >= GOALS[lv]]
    text = [f"The shipped model reaches the published HQARF accuracy at level(s) {_levels(meets)}"
            + (f" and falls short at level(s) {_levels(short)}" if short else "")
            + f"; it beats every conventional codec of the report at level(s) {_levels(beats)}. "
            + "The goals (" + " / ".join(f"{g:.2f}" for g in GOALS) + f") are met at level(s) {_levels(goals)}."]
    if heldout:
        gap = max(abs(hq[lv]["accuracy"] - hq[lv]["accuracy_heldout"]) for lv in levels)
        text.append(f"The held-out classifier (another architecture, in no loss) "
                    f"is within {gap:.3f} of the project classifier at every level.")
    if rendered:
        text.append(f"At level(s) {_levels(rendered)} the shipped decoder outputs exemplars: real training frames of "
                    "the transmitted class, chosen by the network's rendering (`hqarf.exemplars`"
                    + ("; its SNR against the original is the lower one); the network rendering column decodes "
                       "without them." if network is not None else ")."))
    judges = hq[levels[0]].get("accuracy_judges") or {}
    if judges:
        text.append(f"Unseen judges (classifiers of the held-out recipe with seeds {', '.join(n.removeprefix('seed') for n in judges)}, "
                    "in no loss; `evaluate.py --judges`): levels 0-4 "
                    + "; ".join(" / ".join(f"{hq[lv]['accuracy_judges'][n]:.3f}" for lv in levels) for n in judges) + ".")
    weak = []
    for level in levels:
        lost = [f"{c} {a:.2f}" for c, a in zip(classes, hq[level]["per_class"]) if a < 0.5]
        if lost:
            weak.append(f"at level {level}: " + ", ".join(lost))
    if weak:
        text.append("Classes below 0.5: " + "; ".join(weak) + ".")
    text.append("Unused codes at levels " + " / ".join(str(lv) for lv in levels) + ": "
                + " / ".join(str(hq[lv]["dead_codes"]) for lv in levels) + " of 64.")
    top = levels[-2:]
    if "hae" in stages:
        text.append("The continuous HAE keeps " + " / ".join(f"{stages['hae'][lv]['accuracy']:.3f}" for lv in top)
                    + " at levels " + " / ".join(str(lv) for lv in top) + ".")
    z = report["lossless_zstd_int16"]
    text.append(f"Lossless zstd on int16 IQ reaches only {z['compression_ratio_cf32']:.1f}x against cf32; "
                f"{report['svd_99_energy_components']} of 2048 real SVD components keep 99 % of the energy.")
    imp = report.get("impaired_headline")
    if imp:
        text.append("On the impaired test split (SNR 0-30 dB with 20 % clean, random phase, +-1 % offset): originals "
                    f"{imp['original_accuracy']:.3f}, levels 0-4 "
                    + " / ".join(f"{a:.3f}" for a in imp["accuracy_per_level"])
                    + (" (held-out classifier: originals " + f"{imp['original_accuracy_heldout']:.3f}, levels "
                       + " / ".join(f"{a:.3f}" for a in imp["accuracy_per_level_heldout"]) + ")"
                       if "accuracy_per_level_heldout" in imp else "") + ".")
    return "\n".join(lines) + "\n\n" + " ".join(text) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path)
    p.add_argument("--readme", type=Path, default=None, help="replace the block between the markers in this file")
    args = p.parse_args(argv)
    block = render(json.loads(args.report.read_text()))
    if args.readme is None:
        sys.stdout.write(block)
        return 0
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.readme}: markers {BEGIN} / {END} not found")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    args.readme.write_text(pattern.sub(lambda _: f"{BEGIN}\n{block}{END}", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
