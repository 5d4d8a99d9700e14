#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the shipped sample recording examples/data/6mod_sample.sigmf-meta + .sigmf-data.

N frames of each 6Mod class from the TEST split (never seen in training), grouped by class so a
waterfall or time plot shows six blocks; one `core:label` annotation per frame. cf32_le, each
frame at max |x| = 1, the generator's sample rate. Deterministic: rerunning writes the same bytes.

    ./dev.sh env python training/make_sample.py                     # 8 frames per class
    ./dev.sh env python training/make_sample.py --frames-per-class 20 --interleaved -o /tmp/sample
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.common import REPO

import numpy as np

from gnuradio.hqarf.sigmf import frame_annotations, write_sigmf
from training.data import CLASSES, SPLIT_SEEDS, DataConfig, generate, torchsig

DEFAULT_OUTPUT = REPO / "examples" / "data" / "6mod_sample"
SPLIT = "test"


def make_sample(output=DEFAULT_OUTPUT, frames_per_class: int = 8, grouped: bool = True,
                config: DataConfig = DataConfig()) -> tuple[Path, Path]:
    """Generate (or load from the data cache) the frames and write the SigMF pair; returns its paths."""
    x, y = generate(SPLIT, frames_per_class, config, progress=False)
    # generate() interleaves the classes (example i has label i % 6); stable sort groups them and
    # keeps each class's frames in split order.
    order = np.argsort(y, kind="stable") if grouped else np.arange(len(y))
    x, y = x[order], y[order]
    names = [config.classes[k] for k in y]
    annotations = frame_annotations(names, config.frame_len, **{"hqarf:class_index": [int(k) for k in y],
                                                                "hqarf:example_index": [int(i) for i in order]})
    layout = "grouped by class" if grouped else "classes interleaved"
    global_fields = {
        "core:description": (f"6Mod sample: {frames_per_class} frames of {config.frame_len} complex samples "
                             f"per class ({', '.join(config.classes)}), {layout}, from the {SPLIT} split; "
                             f"each frame scaled to max |x| = 1. One core:label annotation per frame."),
        "core:recorder": f"gr-hqarf training/make_sample.py (torchsig {torchsig.__version__})",
        "hqarf:split": SPLIT,
        "hqarf:split_seed": SPLIT_SEEDS[SPLIT],
        "hqarf:frames_per_class": frames_per_class,
        "hqarf:frame_len": config.frame_len,
        "hqarf:classes": list(config.classes),
        "hqarf:layout": "grouped" if grouped else "interleaved",
        "hqarf:data_config_key": config.key(),
        "hqarf:data_config": config.to_dict(),
        "hqarf:torchsig_version": torchsig.__version__,
    }
    return write_sigmf(output, x.reshape(-1), sample_rate=config.sample_rate, global_fields=global_fields,
                       annotations=annotations)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames-per-class", "-n", type=int, default=8, help="frames of each class (default 8)")
    p.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT,
                   help="SigMF base name (default examples/data/6mod_sample)")
    p.add_argument("--interleaved", action="store_true", help="classes in turn instead of grouped")
    args = p.parse_args(argv)
    if args.frames_per_class < 1:
        p.error("--frames-per-class must be at least 1")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta, data = make_sample(args.output, args.frames_per_class, not args.interleaved)
    n = args.frames_per_class * len(CLASSES)
    print(f"wrote {meta} and {data.name}: {n} frames, {data.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
