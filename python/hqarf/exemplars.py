# SPDX-License-Identifier: GPL-3.0-or-later
"""Exemplar rendering: at the top levels the decoder outputs a real frame of the transmitted class.

At 768 / 384 / 192 bits a frame's waveform cannot be rebuilt (a frame holds hundreds of symbols), so the
network's rendering is a band-limited guess of the right class whose fine statistics (amplitude rings, phase
steps) classifiers of other architectures read differently from one training to the next (training/README.md,
sessions 19-26). An exemplar bank replaces that guess by a recorded frame: training frames of each class
(clean and through the receiver model), stored at unit scale beside the codec with the log-spectrum of the
network's own rendering of each at every bank level. Decoding a bank level renders the frame with the network
as before, then takes the exemplar of the frame's global token (its class) whose rendering's spectrum is
nearest to it (so bandwidth, noise level and carrier offset follow the frame), the best correlated of the
`top_k` nearest, rotated to the rendering's phase. The output is a real signal of the class, not this frame's
samples: its SNR against the original is 2-5.5 dB lower than the network's rendering (shipped model, levels 4-2),
while its statistics are those of a real frame (docs/design.md "Exemplar rendering").

Decoder side only: the encoder, the bits and the wire format are unchanged, and a receiver may decode with or
without the bank (hqarf.load_codec(exemplars=False)). Stored as ``exemplars.safetensors`` + ``exemplars.json``
in the model directory (weights.py: no pickle, fingerprints checked); the manifest names the codec it was
built for, and a bank built for another codec is refused at load.
"""
from __future__ import annotations

import numpy as np
import torch

from . import weights as weights_io

KIND = "exemplars"
SPECTRUM_BINS = 64
TOP_K = 8
# Frames per rendering step: the candidates' copy is (step, top_k, frame_len) complex64 (8 MB at 128).
STEP = 128


def log_spectrum(frames: np.ndarray, bins: int = SPECTRUM_BINS) -> np.ndarray:
    """(N, L) complex -> (N, bins) float32: the log of each frame's share of power in `bins` equal bands of
    its FFT (L divisible by bins). Scale-free, so a rendering and an exemplar compare whatever their level."""
    frames = np.asarray(frames)
    power = np.abs(np.fft.fft(frames, axis=-1)) ** 2
    bands = power.reshape(len(frames), bins, -1).sum(-1)
    total = bands.sum(-1, keepdims=True)
    share = bands / np.where(total > 0, total, 1.0)
    return np.log(share + 1e-6).astype(np.float32)


class ExemplarBank:
    """Exemplar frames (K, L) complex64 at unit scale, their classes (K,), and per bank level the
    log-spectra (K, bins) of the network's rendering of each exemplar at that level."""

    def __init__(self, frames, labels, features: dict, top_k: int = TOP_K, manifest: dict | None = None):
        self.frames = np.ascontiguousarray(frames, dtype=np.complex64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.features = {int(level): np.asarray(f, dtype=np.float32) for level, f in features.items()}
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        self.top_k = int(top_k)
        self.manifest = dict(manifest or {})
        k, length = self.frames.shape if self.frames.ndim == 2 else (None, None)
        if k is None or self.labels.ndim != 1 or len(self.labels) != k or not k:
            raise ValueError(f"exemplar frames {self.frames.shape} and labels {self.labels.shape} do not match")
        for level, f in self.features.items():
            if f.ndim != 2 or f.shape[0] != k or not f.shape[1] or length % f.shape[1]:
                raise ValueError(f"exemplar features of level {level} have shape {f.shape}, expected ({k}, bins) "
                                 f"with bins dividing {length}")
        # the exemplars of each class, for distances computed class by class
        self._members = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}

    @property
    def levels(self) -> tuple:
        return tuple(sorted(self.features))

    @property
    def frame_len(self) -> int:
        return self.frames.shape[1]

    def render(self, rendering: np.ndarray, tokens: np.ndarray, level: int) -> np.ndarray:
        """The network's `rendering` (N, L) at `level` and each frame's class token (N,) -> (N, L) complex64:
        per frame the exemplar of its class chosen as the module says, at unit scale. A frame whose token has
        no exemplar (a token no head emits) keeps its rendering."""
        out = np.array(rendering, dtype=np.complex64, copy=True)
        for i in range(0, len(out), STEP):
            out[i:i + STEP] = self._render(out[i:i + STEP], np.asarray(tokens[i:i + STEP]), int(level))
        return out

    def _render(self, r: np.ndarray, tokens: np.ndarray, level: int) -> np.ndarray:
        feats = self.features[level]
        s = log_spectrum(r, feats.shape[1]).astype(np.float64)
        out = r.copy()
        for c, members in self._members.items():
            rows = np.flatnonzero(tokens == c)
            if not len(rows):
                continue
            # squared distances as differences, row by row the same arithmetic whatever the batch (a matrix
            # product's summation order depends on its shape, and near-ties would then pick other exemplars)
            dist = ((s[rows, None, :] - feats[members][None].astype(np.float64)) ** 2).sum(-1)
            k = min(self.top_k, len(members))
            near = members[np.argsort(dist, axis=1, kind="stable")[:, :k]]  # ties to the lower index
            corr = np.einsum("nl,nkl->nk", r[rows].astype(np.complex128), self.frames[near].conj())
            pick = np.abs(corr).argmax(1)
            which = np.arange(len(rows))
            phase = corr[which, pick]
            size = np.abs(phase)
            rotation = np.where(size > 0, phase / np.where(size > 0, size, 1), 1)
            out[rows] = (self.frames[near[which, pick]] * rotation[:, None]).astype(np.complex64)
        return out

    # -- files ----------------------------------------------------------------------------------
    def state(self) -> dict:
        iq = np.stack([self.frames.real, self.frames.imag], 1).astype(np.float16)
        out = {"frames": torch.from_numpy(iq), "labels": torch.from_numpy(self.labels)}
        out.update({f"features.{level}": torch.from_numpy(f) for level, f in self.features.items()})
        return out

    def save(self, directory, codec_fingerprint: str, **manifest) -> str:
        """Write exemplars.safetensors + exemplars.json beside the codec whose fingerprint is given."""
        config = {"levels": list(self.levels), "top_k": self.top_k, "frames": int(len(self.frames)),
                  "frame_len": self.frame_len, "spectrum_bins": int(next(iter(self.features.values())).shape[1]),
                  "codec_fingerprint": codec_fingerprint}
        path = weights_io.save(directory, KIND, self.state(), {"config": config, **manifest})
        self.manifest = weights_io.load(path, KIND)[0]
        return str(path)


def check_fits(config, levels, frame_len: int) -> None:
    """ValueError unless a bank of `levels` and `frame_len`-sample frames fits a codec of HQARFConfig
    `config`: its levels must carry a class token (the last index), its frames the codec's length."""
    levels = list(levels)
    if not set(levels) <= set(config.semantic_levels):
        raise ValueError(f"exemplar levels {levels} must carry a class token (semantic_levels "
                         f"{list(config.semantic_levels)})")
    if frame_len != config.frame_len:
        raise ValueError(f"exemplar frames of {frame_len} samples for a codec of {config.frame_len}")


def exists(path) -> bool:
    """Whether the model directory (or codec manifest path) `path` has an exemplar bank."""
    mpath = weights_io.manifest_path(path, "codec")
    return (mpath.parent / f"{KIND}.json").exists()


def load(path, codec_fingerprint: str, config) -> ExemplarBank:
    """The exemplar bank of model directory `path`, checked against the codec (its fingerprint and
    HQARFConfig): WeightsError naming the file on anything that does not fit."""
    directory = weights_io.manifest_path(path, "codec").parent
    manifest, state, mpath = weights_io.load(directory, KIND)
    cfg = manifest.get("config")
    if not isinstance(cfg, dict):
        raise weights_io.WeightsError(f"{mpath}: no config")
    if cfg.get("codec_fingerprint") != codec_fingerprint:
        raise weights_io.WeightsError(f"{mpath}: built for codec {cfg.get('codec_fingerprint')!r}, not this "
                                      f"model's {codec_fingerprint}: rebuild it (training/train.py --resume)")
    levels = cfg.get("levels")
    if not isinstance(levels, list) or not levels or any(
            not isinstance(v, int) or isinstance(v, bool) or v not in config.semantic_levels for v in levels) or len(
            set(levels)) != len(levels):
        raise weights_io.WeightsError(f"{mpath}: levels {levels!r} must be levels that carry a class token "
                                      f"({list(config.semantic_levels)})")
    frames, labels = state.get("frames"), state.get("labels")
    features = {v: state.get(f"features.{v}") for v in levels}
    expected = {"frames", "labels", *(f"features.{v}" for v in levels)}
    if set(state) != expected or frames.ndim != 3 or frames.shape[1:] != (2, config.frame_len):
        raise weights_io.WeightsError(f"{mpath}: tensors {sorted(state)} do not form a bank of "
                                      f"{config.frame_len}-sample frames for levels {levels}")
    if labels.ndim != 1 or len(labels) != len(frames) or labels.numel() == 0 or labels.is_floating_point() or bool(
            (labels < 0).any() or (labels >= config.semantic_classes).any()):
        raise weights_io.WeightsError(f"{mpath}: labels must be one class in 0..{config.semantic_classes - 1} "
                                      f"per frame")
    iq = frames.float().numpy()
    if not np.isfinite(iq).all() or any(not torch.isfinite(f).all() for f in features.values()):
        raise weights_io.WeightsError(f"{mpath}: frames or features are not finite")
    complex_frames = iq[:, 0] + 1j * iq[:, 1]
    peaks = np.abs(complex_frames).max(1)
    if not 0.99 <= peaks.min() <= peaks.max() <= 1.01:
        raise weights_io.WeightsError(f"{mpath}: exemplar frames must be at unit scale (max |x| = 1 each)")
    try:
        return ExemplarBank(complex_frames, labels.numpy(), {v: f.numpy() for v, f in features.items()},
                            top_k=cfg.get("top_k", TOP_K), manifest=manifest)
    except (TypeError, ValueError) as exc:
        raise weights_io.WeightsError(f"{mpath}: {exc}") from None


def build(codec, frames: np.ndarray, labels: np.ndarray, levels, top_k: int = TOP_K) -> ExemplarBank:
    """A bank from unit-scale `frames` of known `labels`: each rendered by `codec`'s network at every level
    of `levels` (encode, then decode without a bank) for its spectrum."""
    frames = np.asarray(frames, dtype=np.complex64)
    check_fits(codec.config, levels, frames.shape[-1])
    features = {}
    for level in levels:
        rendering = codec.decode(codec.encode(frames, level), level, exemplars=False)
        features[int(level)] = log_spectrum(rendering)
    return ExemplarBank(frames, labels, features, top_k=top_k)
