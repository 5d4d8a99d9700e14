# SPDX-License-Identifier: GPL-3.0-or-later
"""The ModRec classifiers in plain PyTorch over complex IQ frames: the project's 1-D residual CNN
(``arch="cnn"``) and a small transformer over IQ patches (``arch="transformer"``).

Both are trained on original (uncompressed) frames only. The CNN is the project classifier (the codec's
training sees its features); the transformer is the held-out evaluation classifier, shipped as
``heldout_classifier.*`` and never used in codec training or model selection.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import weights as weights_io
from .codec import CHUNK
from .frames import as_frames, iq_array, to_iq
from .runtime import DEFAULT_RUNTIME, Runtime
from .signal_features import (AMPLITUDE_BINS, PHASE_LAGS, SPECTRAL_POWERS, STATISTICS,  # noqa: F401 (re-exported)
                              SYMBOL_STATISTICS, _integer_power, features, spectral_features, statistic_features,
                              symbol_features, unit_rms)


ARCHITECTURES = ("cnn", "transformer")


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 6
    frame_len: int = 1024
    stem_width: int = 32
    widths: tuple = (32, 64, 96, 128)
    blocks: tuple = (1, 1, 1, 1)
    dropout: float = 0.1
    arch: str = "cnn"
    # transformer only: samples per patch (token), model width, layers, attention heads
    patch: int = 16
    dim: int = 64
    depth: int = 3
    heads: int = 4
    # cnn only: width of a second branch over offset-invariant spectra (spectral_features); 0 = none
    spectral_width: int = 0
    # cnn only: width of a small layer over per-frame statistics (statistic_features: amplitude histogram,
    # phase-difference moments, spectral line heights); 0 = none
    statistics_width: int = 0
    # cnn only, with statistics_width: statistics at the symbol instants among them (symbol_features)
    symbol_statistics: bool = False

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.widths) != len(self.blocks):
            raise ValueError("widths and blocks need one entry per stage")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.arch == "transformer" and (self.frame_len % self.patch or self.dim % self.heads):
            raise ValueError("transformer: frame_len must be a multiple of patch and dim of heads")

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
        width = 2 * cin
        if config.spectral_width:
            w = config.spectral_width
            self.spectral = nn.Sequential(
                nn.Conv1d(len(SPECTRAL_POWERS) + 1, w, 7, stride=2, padding=3, bias=False), nn.BatchNorm1d(w),
                nn.ReLU(), _Block(w, w, 2), _Block(w, 2 * w, 2))
            width += 4 * w
        if config.statistics_width:
            count = STATISTICS + (SYMBOL_STATISTICS if config.symbol_statistics else 0)
            self.statistics = nn.Sequential(nn.BatchNorm1d(count), nn.Linear(count, config.statistics_width), nn.ReLU())
            width += config.statistics_width
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.num_classes)

    def forward(self, iq: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) I/Q -> (B, classes) logits."""
        return self.head(self.dropout(self.pooled(iq)))

    def pooled(self, iq: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads (B, 2 * width, plus 4 * spectral_width): where the
        out-of-set score is measured."""
        h = self.stages(self.stem(features(iq)))
        out = [h.mean(-1), h.amax(-1)]
        spectra = spectral_features(iq) if self.config.spectral_width else None
        if spectra is not None:
            s = self.spectral(spectra)
            out += [s.mean(-1), s.amax(-1)]
        if self.config.statistics_width:
            stats = statistic_features(iq, spectra)
            if self.config.symbol_statistics:
                stats = torch.cat([stats, symbol_features(iq)], 1)
            out.append(self.statistics(stats))
        return torch.cat(out, 1)

    def feature_maps(self, iq: torch.Tensor) -> list[torch.Tensor]:
        """The activations after the stem and after every block, then the pooled features and the
        logits: what a perceptual (feature-matching) loss compares."""
        h = self.stem(features(iq))
        maps = [h]
        for block in self.stages:
            h = block(h)
            maps.append(h)
        branches = self.config.spectral_width or self.config.statistics_width
        pooled = self.pooled(iq) if branches else torch.cat([h.mean(-1), h.amax(-1)], 1)
        return maps + [pooled, self.head(self.dropout(pooled))]


class PatchTransformerNet(nn.Module):
    """A small transformer over non-overlapping patches of I, Q and amplitude at unit RMS.

    Chosen to differ from the CNN in everything a codec could overfit to: no convolution stack, no
    phase-difference channel, global attention instead of local receptive fields."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        tokens = config.frame_len // config.patch
        self.embed = nn.Conv1d(3, config.dim, config.patch, stride=config.patch)
        self.position = nn.Parameter(torch.zeros(1, tokens, config.dim))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(config.dim, config.heads, 2 * config.dim, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_classes)

    def pooled(self, iq: torch.Tensor) -> torch.Tensor:
        iq = unit_rms(iq)
        x = torch.cat([iq, iq.pow(2).sum(1, keepdim=True).sqrt()], 1)
        h = self.embed(x).transpose(1, 2) + self.position
        return self.norm(self.encoder(h)).mean(1)

    def forward(self, iq: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(iq))


def folded_copy(net: nn.Module) -> nn.Module:
    """A copy of `net` for inference, every batch norm that follows a convolution folded into its weights
    (fuse_conv_bn_eval; `net` itself unchanged): the same logits within float rounding (1e-6), 1.2x faster for
    the project classifier on the CPU, where each batch norm is one more pass over the activations."""
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        if isinstance(module, _Block):
            module.conv1, module.bn1 = fuse_conv_bn_eval(module.conv1, module.bn1), nn.Identity()
            module.conv2, module.bn2 = fuse_conv_bn_eval(module.conv2, module.bn2), nn.Identity()
        elif isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv1d) and isinstance(bn, nn.BatchNorm1d):
                    module._modules[a], module._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return net


def build_network(config: ClassifierConfig) -> nn.Module:
    """The network a config describes (old manifests without ``arch`` are CNNs)."""
    return ModRecNet(config) if config.arch == "cnn" else PatchTransformerNet(config)


OUT_OF_SET_PREFIX = "out_of_set."


class Classifier:
    """A loaded ModRec classifier: predict(x) / predict_proba(x) on complex64 (N, frame_len), and, where
    the model carries out-of-set statistics, classify(x) with a per-frame "unknown" flag.

    The out-of-set score is the Mahalanobis distance of a frame's pooled features to the nearest class
    mean (class means and one shared covariance of the training frames), divided by the feature count;
    its threshold is set on clean validation frames (manifest "out_of_set")."""

    def __init__(self, net: nn.Module, manifest: dict | None = None, device: str = "cpu", kind: str = "classifier",
                 out_of_set: dict | None = None, runtime: str = DEFAULT_RUNTIME, num_threads: int = 0,
                 chunk: int = CHUNK, weights_dir=None):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.chunk = int(chunk)
        self.config = net.config
        self.manifest = dict(manifest or {})
        self.kind = kind
        # {"mean": (C, F), "precision": (F, F)} tensors, or None
        self.out_of_set = {k: v.to(self.device) for k, v in out_of_set.items()} if out_of_set else None
        # The unknown detector (a Classifier over the classes plus "none of them"), or None.
        self.detector: Classifier | None = None
        self.classes = list(self.manifest.get("classes", [str(i) for i in range(self.config.num_classes)]))
        if len(self.classes) != self.config.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.config.num_classes} outputs")
        fp = self.manifest.get("fingerprint") or weights_io.fingerprint(net.state_dict())
        if runtime == "onnx":
            # features() uses complex tensors, which torch.onnx cannot export (aten::complex): the
            # classifier runs frozen TorchScript instead (identical logits).
            runtime = "torchscript"
        self._runtime_args = (runtime, num_threads, self.device, "clf" + fp, weights_dir,
                              lambda kind, level: torch.zeros(2, 2, self.frame_len))
        self._runtime_lock = threading.Lock()
        self._runtime_version = None
        self._current_runtime()

    def _weights_version(self) -> tuple:
        """Changes whenever a parameter or buffer of self.net is replaced or modified in place (an optimiser
        step, load_state_dict): the runtime's folded copy is then made again from the new weights. Writes
        through `.data`, and to tensors made in inference mode, are not seen: build a new Classifier then."""
        return tuple((id(t), -1 if t.is_inference() else t._version)
                     for t in itertools.chain(self.net.parameters(), self.net.buffers()))

    def _current_runtime(self) -> Runtime:
        version = self._weights_version()
        with self._runtime_lock:
            if version != self._runtime_version:
                self.runtime = Runtime(folded_copy(self.net), *self._runtime_args)
                self._runtime_version = version
            return self.runtime

    @property
    def frame_len(self) -> int:
        return self.config.frame_len

    def logits(self, x) -> np.ndarray:
        frames = as_frames(x, self.frame_len)
        runtime = self._current_runtime()
        out = [y.astype(np.float32) for y in runtime.map("net", None, iq_array(frames), self.chunk)]
        return np.concatenate(out) if out else np.zeros((0, self.config.num_classes), np.float32)

    def predict_proba(self, x) -> np.ndarray:
        """(N, classes) float32 probabilities."""
        logits = torch.from_numpy(self.logits(x))
        return torch.softmax(logits, -1).numpy()

    def predict(self, x) -> np.ndarray:
        """(N,) int64 class indices (names: self.classes)."""
        return self.logits(x).argmax(-1).astype(np.int64)

    # -- signals outside the known classes ------------------------------------------------------
    @torch.inference_mode()
    def embeddings(self, x) -> np.ndarray:
        frames = as_frames(x, self.frame_len)
        out = [self.net.pooled(to_iq(frames[i:i + CHUNK], self.device)).float().cpu()
               for i in range(0, len(frames), CHUNK)]
        return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)

    @property
    def unknown_threshold(self) -> float | None:
        """The model's default threshold on its unknown score (None: the model cannot flag unknowns).
        With an unknown detector beside the classifier, the detector's threshold."""
        if self.detector is not None:
            return self.detector.detector_threshold
        info = self.manifest.get("out_of_set")
        return float(info["threshold"]) if self.out_of_set is not None and isinstance(info, dict) else None

    @property
    def detector_threshold(self) -> float | None:
        info = self.manifest.get("unknown_detector")
        return float(info["threshold"]) if isinstance(info, dict) else None

    def unknown_score(self, x) -> np.ndarray:
        """(N,) per-frame unknown score, higher = less like the known classes: the unknown detector's
        probability of "none of the classes" where the model has one, else the Mahalanobis score."""
        if self.detector is not None:
            return self.detector.predict_proba(x)[:, -1]
        return self.out_of_set_score(x)

    def fit_out_of_set(self, x, y, x_calibration, false_flag_rate: float = 0.01) -> float:
        """Fit the class means and shared covariance on (x, y); set the threshold so that
        `false_flag_rate` of `x_calibration` (clean in-set frames) would be flagged. Returns it."""
        e = torch.from_numpy(self.embeddings(x)).double()
        y = torch.as_tensor(np.asarray(y), dtype=torch.long)
        means = torch.stack([e[y == c].mean(0) for c in range(self.config.num_classes)])
        centred = e - means[y]
        cov = centred.T @ centred / max(1, len(e) - 1)
        cov = cov + 1e-3 * torch.diagonal(cov).mean() * torch.eye(cov.shape[0], dtype=cov.dtype)  # shrinkage
        self.out_of_set = {"mean": means.float().to(self.device), "precision": torch.linalg.inv(cov).float().to(self.device)}
        threshold = float(np.quantile(self.out_of_set_score(x_calibration), 1 - false_flag_rate))
        self.manifest["out_of_set"] = {"score": "mahalanobis / features", "threshold": threshold,
                                       "false_flag_rate": false_flag_rate, "fit_frames": int(len(e)),
                                       "calibration_frames": int(len(x_calibration))}
        return threshold

    def out_of_set_score(self, x) -> np.ndarray:
        """(N,) float: squared Mahalanobis distance to the nearest class mean per feature (higher = less
        like any known class)."""
        if self.out_of_set is None:
            raise ValueError("this model carries no out-of-set statistics (train it with this version)")
        e = torch.from_numpy(self.embeddings(x)).to(self.device)
        mean, precision = self.out_of_set["mean"], self.out_of_set["precision"]
        d = e[:, None, :] - mean[None]
        dist = torch.einsum("ncf,fg,ncg->nc", d, precision, d)
        return (dist.min(-1).values / e.shape[1]).cpu().numpy()

    def classify(self, x, threshold: float | None = None, classes_from: str = "classifier") -> dict:
        """Per frame: predicted class index, confidence (max softmax), the unknown score and the unknown
        flag (score above `threshold`, default the model's). A model that cannot flag unknowns gives a
        NaN score and flags nothing.

        `classes_from`: "classifier" (default) takes the class from this classifier and the score from the
        unknown detector (two networks); "detector" takes both from the unknown detector, one network: the
        class is the argmax of its outputs for the known classes, the confidence their softmax (about twice
        as fast; the detector saw reconstructions in training, so it is no independent judge of a codec)."""
        threshold = self.unknown_threshold if threshold is None else float(threshold)
        if self.check_classes_from(classes_from) == "detector":
            logits = torch.from_numpy(self.detector.logits(x))
            proba = torch.softmax(logits[:, :-1], -1).numpy()
            score = torch.softmax(logits, -1)[:, -1].numpy()
            unknown = score > threshold if threshold is not None else np.zeros(len(score), bool)  # no threshold
            return {"prediction": proba.argmax(-1).astype(np.int64), "confidence": proba.max(-1),
                    "score": score, "unknown": unknown}
        logits = torch.from_numpy(self.logits(x))
        proba = torch.softmax(logits, -1).numpy()
        out = {"prediction": proba.argmax(-1).astype(np.int64), "confidence": proba.max(-1)}
        if self.unknown_threshold is None:
            out["score"] = np.full(len(proba), np.nan, np.float32)
            out["unknown"] = np.zeros(len(proba), bool)
            return out
        out["score"] = self.unknown_score(x)
        out["unknown"] = out["score"] > threshold
        return out

    def check_classes_from(self, classes_from) -> str:
        """`classes_from` for classify, checked: one of CLASSES_FROM, and for "detector" an unknown detector that
        answers for this classifier's classes and frames (its outputs: these classes, then "none of them").
        ValueError otherwise."""
        if classes_from not in CLASSES_FROM:
            raise ValueError(f"classes_from must be one of {CLASSES_FROM}, got {classes_from!r}")
        if classes_from == "classifier":
            return classes_from
        detector = self.detector
        if detector is None:
            raise ValueError("this model has no unknown detector: classes can only come from the classifier")
        if detector.classes[:-1] != self.classes:
            raise ValueError(f"the unknown detector's classes {detector.classes[:-1]} are not the classifier's "
                             f"{self.classes}")
        if detector.frame_len != self.frame_len:
            raise ValueError(f"the unknown detector's frames have {detector.frame_len} samples, the classifier's "
                             f"{self.frame_len}")
        return classes_from

    def save(self, directory, **manifest) -> str:
        body = {"config": self.config.to_dict(), "classes": self.classes,
                **{k: v for k, v in self.manifest.items()
                   if k not in ("format", "format_version", "weights", "fingerprint", "config", "classes")},
                **manifest}
        state = dict(self.net.state_dict())
        if self.out_of_set is not None:
            state.update({OUT_OF_SET_PREFIX + k: v for k, v in self.out_of_set.items()})
        path = weights_io.save(directory, self.kind, state, body)
        self.manifest = weights_io.load(path, self.kind)[0]
        return str(path)


# The kinds of classifier a model directory holds: the project classifier, the held-out evaluation
# classifier, and the unknown detector (the classes plus a last output "none of them").
KINDS = ("classifier", "heldout_classifier", "unknown_detector")
# Where Classifier.classify takes the class from (the ModRec sink's and the classify command's choice).
CLASSES_FROM = ("classifier", "detector")


def load_classifier(path=None, device: str = "cpu", kind: str = "classifier", runtime: str = DEFAULT_RUNTIME,
                    num_threads: int = 0, chunk: int = CHUNK) -> Classifier:
    """Load a classifier from a model directory or manifest; None or "" loads the shipped default.

    ``kind="heldout_classifier"`` loads the held-out evaluation classifier of the model directory.
    runtime / num_threads / chunk as for hqarf.load_codec."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    manifest, state, mpath = weights_io.load(path, kind)
    try:
        net = build_network(ClassifierConfig.from_dict(manifest.get("config", {})))
    except (TypeError, ValueError) as exc:
        raise weights_io.WeightsError(f"{mpath}: invalid classifier config ({exc})") from None
    out_of_set = {k[len(OUT_OF_SET_PREFIX):]: state.pop(k) for k in list(state) if k.startswith(OUT_OF_SET_PREFIX)}
    if out_of_set and set(out_of_set) != {"mean", "precision"}:
        raise weights_io.WeightsError(f"{mpath}: incomplete out-of-set statistics ({sorted(out_of_set)})")
    weights_io.load_into(net, state, mpath.parent / manifest["weights"])
    try:
        loaded = Classifier(net, manifest, device=device, kind=kind, out_of_set=out_of_set or None,
                            runtime=runtime, num_threads=num_threads, chunk=chunk, weights_dir=mpath.parent)
    except ValueError as exc:
        raise weights_io.WeightsError(f"{mpath}: {exc}") from None
    if kind == "classifier" and weights_io.manifest_path(mpath.parent, "unknown_detector").exists():
        loaded.detector = load_classifier(mpath.parent, device=device, kind="unknown_detector", runtime=runtime,
                                          num_threads=num_threads, chunk=chunk)
    return loaded
