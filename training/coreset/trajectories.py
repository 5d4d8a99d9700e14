# SPDX-License-Identifier: GPL-3.0-or-later
"""Prediction trajectories of a full-data classifier run: per epoch and training frame, correctness,
true-class probability and EL2N (the input of every score), and their file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gnuradio.hqarf.frames import to_iq

TRAJECTORY_FILE = "trajectories.npz"

# -- trajectories ---------------------------------------------------------------------------------
class TrajectoryRecorder:
    """Per-epoch correctness, true-class probability and EL2N of every training frame."""

    def __init__(self, labels: np.ndarray, epochs: int, source: str = "batch"):
        if source not in ("batch", "eval"):
            raise ValueError("trajectory source must be 'batch' or 'eval'")
        n = len(labels)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.epochs, self.source = epochs, source
        self.correct = np.zeros((epochs, n), np.uint8)
        self.p_true = np.zeros((epochs, n), np.float16)
        self.el2n = np.zeros((epochs, n), np.float16)
        self.seen = np.zeros((epochs, n), bool)

    @torch.no_grad()
    def update(self, epoch: int, idx: np.ndarray, logits: torch.Tensor):
        prob = torch.softmax(logits.detach().float(), -1).cpu().numpy()
        y = self.labels[idx]
        p_true = prob[np.arange(len(idx)), y]
        onehot = np.zeros_like(prob)
        onehot[np.arange(len(idx)), y] = 1.0
        self.correct[epoch, idx] = prob.argmax(-1) == y
        self.p_true[epoch, idx] = p_true
        self.el2n[epoch, idx] = np.sqrt(((prob - onehot) ** 2).sum(-1))
        self.seen[epoch, idx] = True

    @torch.no_grad()
    def record_eval(self, epoch: int, net: torch.nn.Module, x: np.ndarray, device, batch: int = 512):
        net.eval()
        for i in range(0, len(x), batch):
            idx = np.arange(i, min(i + batch, len(x)))
            self.update(epoch, idx, net(to_iq(x[idx], device)))

    def save(self, path: Path, **meta):
        if not self.seen.all():
            raise RuntimeError("some frames have no prediction in some epoch")
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, correct=self.correct, p_true=self.p_true, el2n=self.el2n, labels=self.labels,
                            meta=json.dumps({"source": self.source, **meta}))
        tmp.replace(path)


def load_trajectories(path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / TRAJECTORY_FILE
    with np.load(path) as f:
        out = {k: f[k] for k in ("correct", "p_true", "el2n", "labels")}
        out["meta"] = json.loads(str(f["meta"]))
    return out

