# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared plumbing of the training package: distributed set-up, schedules, provenance, logging.

Training depends on the codec core (gnuradio.hqarf, from the checkout through ./dev.sh's PYTHONPATH
or installed) and torchsig; nothing at run time depends on it.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


# -- distributed ------------------------------------------------------------------------------
class Dist:
    """torchrun-aware context: rank, world size, device; a no-op in a plain single process."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
        if device == "cuda":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def broadcast_(self, tensor: torch.Tensor):
        if self.world > 1:
            dist.broadcast(tensor, 0)

    def all_reduce_mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n items (equal sizes so collectives stay in step)."""
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def close(self):
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# Frames per forward pass where training runs a frozen network without gradients (validation, the
# classifier's view of the originals, the token head's latents): at 64 the activations stay in the
# CPU's caches; 256-512 frames took 1.4-2.5x as long for the same numbers (session 18).
INFERENCE_BATCH = 64


def batches(n: int, batch: int, seed: int, epoch: int, ctx: Dist):
    """This rank's shuffled batches of indices for one epoch (same count on every rank)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)[ctx.shard(n)]
    usable = len(order) - len(order) % batch if len(order) >= batch else len(order)
    for i in range(0, usable, batch):
        yield order[i:i + batch]


def maybe_ddp(module: nn.Module, ctx: Dist) -> nn.Module:
    if ctx.world == 1:
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)


def per_level(value, level: int):
    """A preset value given once for every level, or as a tuple with one entry per level."""
    return value[level] if isinstance(value, (list, tuple)) else value


# -- schedules --------------------------------------------------------------------------------
def learning_rate(step: int, total: int, peak: float, floor: float, flat_fraction: float = 2 / 3) -> float:
    """Flat `peak` for the first 2/3 of training, then a cosine to `floor` (the public code
    alternated peak/floor every step instead)."""
    flat = int(total * flat_fraction)
    if step < flat:
        return peak
    progress = (step - flat) / max(1, total - flat)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def temperature(step: int, total: int, start: float = 0.667, end: float = 0.001) -> float:
    """Gumbel-softmax temperature, linear from `start` to `end` over the whole run (the public
    code compounded the decay and reached the floor after about two epochs)."""
    return start + (end - start) * min(1.0, step / max(1, total - 1))


# -- command lines --------------------------------------------------------------------------------
def comma_list(text: str, kind=str) -> list:
    """'0.1, 0.3,' -> [0.1, 0.3] with kind=float: a command-line list, empty items dropped."""
    return [kind(v.strip()) for v in text.split(",") if v.strip()]


# -- provenance -------------------------------------------------------------------------------
def invocation_command() -> str:
    """This process's command line as provenance records it: `python training/SCRIPT.py ARGS`."""
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class RunLog:
    """Append-only JSON-lines metrics file plus a human log in the run directory."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.start = time.time()
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def metrics(self, **row):
        """One row of metrics.jsonl, and metrics.csv rewritten beside it (for spreadsheets and pandas)."""
        if self.enabled:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"time_s": round(time.time() - self.start, 2), **row}) + "\n")
            write_metrics_csv(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.csv")

    def note(self, text: str):
        if self.enabled:
            line = f"[{time.strftime('%H:%M:%S')}] {text}"
            print(line, flush=True)
            with open(self.run_dir / "train.log", "a") as f:
                f.write(line + "\n")


def write_metrics_csv(jsonl: Path, csv_path: Path) -> None:
    """The rows of a metrics.jsonl as CSV: one column per key, in order of first appearance, empty
    where a row has no such key (classifier and level rows carry different metrics)."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)
