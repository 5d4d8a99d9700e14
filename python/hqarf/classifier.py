# SPDX-License-Identifier: GPL-3.0-or-later
"""The ModRec classifier: a small 1-D residual CNN in plain PyTorch over complex IQ frames.

Trained on original (uncompressed) frames only; used to judge what reconstructions keep.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import weights as weights_io
from .codec import CHUNK, as_frames, iq_array
from .runtime import DEFAULT_RUNTIME, Runtime


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 6
    frame_len: int = 1024
    stem_width: int = 32
    widths: tuple = (32, 64, 96, 128)
    blocks: tuple = (1, 1, 1, 1)
    dropout: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.widths) != len(self.blocks):
            raise ValueError("widths and blocks need one entry per stage")

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 5, stride=stride, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.skip = (nn.Sequential(nn.Conv1d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm1d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


def features(iq: torch.Tensor) -> torch.Tensor:
    """(B, 2, L) I/Q -> (B, 4, L): I, Q, amplitude and instantaneous-frequency, at unit RMS.

    RMS normalisation (not max) keeps the classifier indifferent to how a codec clips peaks; the
    amplitude and phase-difference channels are features convolutions find hard to build from I/Q."""
    rms = iq.pow(2).sum(1, keepdim=True).mean(-1, keepdim=True).clamp_min(1e-12).sqrt()
    iq = iq / rms
    amp = iq.pow(2).sum(1, keepdim=True).sqrt()
    z = torch.complex(iq[:, 0], iq[:, 1])
    dphi = torch.angle(z[:, 1:] * z[:, :-1].conj())
    dphi = F.pad(dphi, (1, 0))[:, None] * (amp > 0.05)
    return torch.cat([iq, amp, dphi], 1)


class ModRecNet(nn.Module):
    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        self.stem = nn.Sequential(nn.Conv1d(4, config.stem_width, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm1d(config.stem_width), nn.ReLU())
        stages, cin = [], config.stem_width
        for i, (w, b) in enumerate(zip(config.widths, config.blocks)):
            for j in range(b):
                stages.append(_Block(cin, w, stride=2 if (j == 0 and i > 0) else 1))
                cin = w
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * cin, config.num_classes)

    def forward(self, iq: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) I/Q -> (B, classes) logits."""
        h = self.stages(self.stem(features(iq)))
        pooled = torch.cat([h.mean(-1), h.amax(-1)], 1)
        return self.head(self.dropout(pooled))


class Classifier:
    """A loaded ModRec classifier: predict(x) / predict_proba(x) on complex64 (N, frame_len)."""

    def __init__(self, net: ModRecNet, manifest: dict | None = None, device: str = "cpu",
                 runtime: str = DEFAULT_RUNTIME, num_threads: int = 0, chunk: int = CHUNK, weights_dir=None):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.chunk = int(chunk)
        self.config = net.config
        self.manifest = dict(manifest or {})
        self.classes = list(self.manifest.get("classes", [str(i) for i in range(self.config.num_classes)]))
        if len(self.classes) != self.config.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.config.num_classes} outputs")
        fp = self.manifest.get("fingerprint") or weights_io.fingerprint(net.state_dict())
        if runtime == "onnx":
            # features() uses complex tensors, which torch.onnx cannot export (aten::complex): the
            # classifier runs frozen TorchScript instead, with the same codes-free, identical logits.
            runtime = "torchscript"
        self.runtime = Runtime(self.net, runtime, num_threads, self.device, "clf" + fp, weights_dir,
                               lambda kind, level: torch.zeros(2, 2, self.frame_len))

    @property
    def frame_len(self) -> int:
        return self.config.frame_len

    def logits(self, x) -> np.ndarray:
        frames = as_frames(x, self.frame_len)
        out = [self.runtime.call("net", None, iq_array(frames[i:i + self.chunk])).astype(np.float32)
               for i in range(0, len(frames), self.chunk)]
        return np.concatenate(out) if out else np.zeros((0, self.config.num_classes), np.float32)

    def predict_proba(self, x) -> np.ndarray:
        """(N, classes) float32 probabilities."""
        logits = torch.from_numpy(self.logits(x))
        return torch.softmax(logits, -1).numpy()

    def predict(self, x) -> np.ndarray:
        """(N,) int64 class indices (names: self.classes)."""
        return self.logits(x).argmax(-1).astype(np.int64)

    def save(self, directory, **manifest) -> str:
        body = {"config": self.config.to_dict(), "classes": self.classes,
                **{k: v for k, v in self.manifest.items()
                   if k not in ("format", "format_version", "weights", "fingerprint", "config", "classes")},
                **manifest}
        path = weights_io.save(directory, "classifier", self.net.state_dict(), body)
        self.manifest = weights_io.load(path, "classifier")[0]
        return str(path)


def load_classifier(path=None, device: str = "cpu", runtime: str = DEFAULT_RUNTIME, num_threads: int = 0,
                    chunk: int = CHUNK) -> Classifier:
    """Load a classifier from a model directory or manifest; None or "" loads the shipped default.
    runtime / num_threads / chunk as for hqarf.load_codec."""
    manifest, state, mpath = weights_io.load(path, "classifier")
    try:
        net = ModRecNet(ClassifierConfig.from_dict(manifest.get("config", {})))
    except (TypeError, ValueError) as exc:
        raise weights_io.WeightsError(f"{mpath}: invalid classifier config ({exc})") from None
    weights_io.load_into(net, state, mpath.parent / manifest["weights"])
    try:
        return Classifier(net, manifest, device=device, runtime=runtime, num_threads=num_threads, chunk=chunk,
                          weights_dir=mpath.parent)
    except ValueError as exc:
        raise weights_io.WeightsError(f"{mpath}: {exc}") from None
