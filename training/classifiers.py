# SPDX-License-Identifier: GPL-3.0-or-later
"""The classifier-family stages of `training/train.py`: the project classifier, the held-out one, the
training-only critics of the direct decoders, and the unknown detector with its flag. Each trains on
original frames (the detector on reconstructions too) and ends as a frozen network in eval mode."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from gnuradio.hqarf.classifier import (Classifier, ClassifierConfig, ModRecNet, build_network, folded_copy,
                                      load_classifier)
from gnuradio.hqarf.codec import Codec
from gnuradio.hqarf.costs import count_parameters
from gnuradio.hqarf.model import HQARF
from training.checkpoints import Checkpoints
from training.common import Dist, RunLog
from training.coreset.experiment import CoresetError, read_coreset
from training.data import (OUT_OF_SET_TRAIN, DataConfig, carrier_frames, generate, impair, noise_frames,
                           preset_impairments)
from training.classifier_loop import accuracy, train_classifier

HELDOUT_SEED = 7919  # the held-out classifier trains with the run's seed plus this


def load_coreset(path: Path, train_per_class: int, n_train: int):
    """Indices of a coreset file, checked against the training split they will index."""
    try:
        coreset = read_coreset(path)
    except CoresetError as exc:
        raise SystemExit(str(exc)) from None
    idx, spec = coreset["indices"], coreset["data"]
    info = {"file": str(path), "method": coreset["method"], "fraction": coreset["fraction"], "seed": coreset["seed"],
            "size": int(len(idx))}
    if spec is None:
        raise SystemExit(f"{path}: the file does not say which data it indexes (select it again with this version)")
    if spec.get("variant") != "clean" or int(spec.get("train_per_class", -1)) != train_per_class:
        raise SystemExit(f"{path}: selected on {spec.get('variant')} data with {spec.get('train_per_class')} frames "
                         f"per class; this preset trains on clean data with {train_per_class} per class")
    if len(idx) == 0 or idx.min() < 0 or idx.max() >= n_train or len(np.unique(idx)) != len(idx):
        raise SystemExit(f"{path}: indices out of range or repeated for a training split of {n_train} frames")
    return idx, info


def detector_from_project(project: ModRecNet) -> ModRecNet:
    """A detector network (the project classifier's classes plus "none of them") that starts as the
    project classifier: same architecture and weights, the known classes' head rows copied, the new
    row freshly initialised."""
    n = project.config.num_classes
    net = ModRecNet(dataclasses.replace(project.config, num_classes=n + 1))
    with torch.no_grad():
        net.load_state_dict({k: v for k, v in project.state_dict().items() if not k.startswith("head.")},
                            strict=False)
        net.head.weight[:n] = project.head.weight
        net.head.bias[:n] = project.head.bias
    return net


def reconstructions(codec: HQARF, frames: np.ndarray, per_level: int, seed: int, exemplars=None) -> tuple:
    """`per_level` frames of `frames` (drawn per level, reproducibly from `seed`) through the codec at
    every level, as a Codec with the exemplar bank `exemplars` (None: the network at every level) encodes
    and decodes them: (complex frames, the indices of the frames they reconstruct)."""
    shipped = Codec(codec, device=str(next(codec.parameters()).device), exemplars=exemplars)
    out, picked = [], []
    for level in range(codec.config.levels):
        idx = np.sort(np.random.default_rng(seed + level).choice(len(frames), min(per_level, len(frames)),
                                                                 replace=False))
        out.append(shipped.decode(shipped.encode(frames[idx], level), level))
        picked.append(idx)
    return np.concatenate(out), np.concatenate(picked)


def with_clean(frames: np.ndarray, clean: np.ndarray, share: float, seed: int) -> np.ndarray:
    """`frames` with about `share` of them (drawn reproducibly from `seed`) replaced by their clean copies
    `clean` (the same frames before the receiver model)."""
    if not share:
        return frames
    if clean.shape != frames.shape:
        raise ValueError(f"clean copies of shape {clean.shape} for frames of shape {frames.shape}")
    pick = np.random.default_rng(seed).random(len(frames)) < share
    out = frames.copy()
    out[pick] = clean[pick]
    return out


def unknown_detector_stage(cfg: dict, data: dict, args, ckpt: "Checkpoints", ctx: Dist, log: RunLog, want,
                           n_classes: int, project: ModRecNet | None = None, codec: HQARF | None = None) -> ModRecNet:
    """The unknown detector: a CNN over the known classes plus "none of them", trained on the training
    split and on torchsig signals outside it (outlier exposure: the preset's ``out_of_set_classes``, by default
    training/data.py OUT_OF_SET_TRAIN) and
    on noise alone, all through the same receiver model. With ``detector_reconstructions: N`` (and the
    trained `codec`), N training frames per level reconstructed by the codec join the known classes
    under their own labels, so a codec's artefacts are not taken for an unknown signal. With
    ``unknown_init: "project"`` it has the project classifier's architecture and starts from its
    weights (the known classes' head rows included), so it starts from features that already tell
    near classes apart."""
    from_project = cfg.get("unknown_init") == "project"
    if from_project and project is None:
        raise ValueError("unknown_init 'project' needs the project classifier")
    # its initial weights and training the same whether the codec was trained in this invocation or loaded
    torch.manual_seed(args.seed * 1000 + 700)
    net = (detector_from_project(project) if from_project
           else ModRecNet(ClassifierConfig(num_classes=n_classes + 1, **cfg["unknown_detector"])))
    if not (ckpt.done("unknown_detector") and (args.resume or not want("unknown_detector"))) and want("unknown_detector"):
        teacher = detector_teacher(cfg, n_classes, log)
        t = time.time()
        per_class, kinds = cfg["out_of_set_per_class"], out_of_set_classes(cfg)
        xo, _ = generate("train", per_class, DataConfig(classes=kinds), cache_dir=args.data_cache, progress=ctx.main)
        xv, _ = generate("val", max(1, per_class // 4), DataConfig(classes=kinds), cache_dir=args.data_cache,
                         progress=ctx.main)
        n_noise = int(cfg.get("noise_outliers", 0))
        if n_noise:  # an empty channel: noise alone, white and band-limited (training/impairments.py noise_frames)
            xo = np.concatenate([xo, noise_frames("train", n_noise, xo.shape[-1])[0]])
            xv = np.concatenate([xv, noise_frames("val", max(1, n_noise // 4), xv.shape[-1])[0]])
        n_carrier = int(cfg.get("carrier_outliers", 0))
        if n_carrier:  # unmodulated carriers (CW, spurs): training/impairments.py carrier_frames
            xo = np.concatenate([xo, carrier_frames("train", n_carrier, xo.shape[-1])[0]])
            xv = np.concatenate([xv, carrier_frames("val", max(1, n_carrier // 4), xv.shape[-1])[0]])
        imp = preset_impairments(cfg)
        if imp is not None:
            # outliers at low SNR look like noisy known signals: optionally only from outlier_snr_db_min up
            imp = dataclasses.replace(imp, snr_db_min=max(imp.snr_db_min, cfg.get("outlier_snr_db_min", imp.snr_db_min)))
            xo, xv = impair(xo, "train", imp, first_index=10 ** 7)[0], impair(xv, "val", imp, first_index=10 ** 7)[0]
        log.note(f"unknown detector: {len(xo)} out-of-set training frames ({', '.join(kinds)}"
                 f"{', ' + str(n_noise) + ' of noise alone' if n_noise else ''}"
                 f"{', ' + str(n_carrier) + ' of unmodulated carriers' if n_carrier else ''}) in {time.time() - t:.1f} s")
        x, y = data["train"]
        x_val, y_val = data["val"]
        n_rec = int(cfg.get("detector_reconstructions") or 0)
        if n_rec:
            if codec is None:
                raise SystemExit("the unknown detector learns the codec's reconstructions (detector_reconstructions): "
                                 "train every codec stage first")
            t = time.time()
            # a share of them from the clean (unimpaired) copies of the same frames: at a static phase a clean
            # frame's reconstruction can differ from every noisy one's (session 24: seed 3's level-4 8pam, all of
            # it flagged when clean, 2 % after the receiver model)
            share = float(cfg.get("detector_clean_share") or 0.0) if "train_clean" in data else 0.0
            src, src_val = x, x_val
            if share:
                src = with_clean(x, data["train_clean"][0], share, seed=args.seed + 31339)
                src_val = with_clean(x_val, data["val_clean"][0], share, seed=args.seed + 31340)
            xr, ir = reconstructions(codec, src, n_rec, seed=args.seed + 31337)
            xrv, irv = reconstructions(codec, src_val, max(1, n_rec // 10), seed=args.seed + 31338)
            x, y = np.concatenate([x, xr]), np.concatenate([y, y[ir]])
            x_val, y_val = np.concatenate([x_val, xrv]), np.concatenate([y_val, y_val[irv]])
            log.note(f"unknown detector: {len(xr)} reconstructions of training frames ({n_rec} per level"
                     f"{f', {share:g} of their sources clean' if share else ''}) among the known classes, "
                     f"in {time.time() - t:.1f} s")
        mixed = {"train": (np.concatenate([x, xo]), np.concatenate([y, np.full(len(xo), n_classes)])),
                 "val": (np.concatenate([x_val, xv]), np.concatenate([y_val, np.full(len(xv), n_classes)]))}
        classifier_stage(net, "unknown_detector", {**cfg, "classifier_epochs": cfg["unknown_epochs"],
                                                   "classifier_lr": cfg.get("unknown_lr", cfg["classifier_lr"]),
                                                   "distill": cfg.get("detector_distill", DISTILL)},
                         mixed, args, ckpt, ctx, log, want, seed=args.seed + 104729,
                         unknown_rate=cfg.get("unknown_false_flag_rate", 0.01), teacher=teacher)
    else:
        classifier_stage(net, "unknown_detector", cfg, data, args, ckpt, ctx, log, want, seed=args.seed + 104729)
    return net


# Knowledge distillation of the unknown detector from a teacher's (train.py --detector-teacher), where the preset
# sets no detector_distill: half the loss the labels', half the teacher's outputs at temperature 2.
DISTILL = {"alpha": 0.5, "temperature": 2.0}


def detector_teacher(cfg: dict, n_classes: int, log: RunLog) -> ModRecNet | None:
    """The trained detector that the preset's ``detector_teacher`` model directory holds (its batch norms folded:
    it only runs forward), or None where the preset names none. Its outputs must be the known classes plus
    "unknown"; the directory and the detector's fingerprint go into the run's log (and, with the preset's
    entries, into the model's provenance)."""
    path = cfg.get("detector_teacher")
    if not path:
        return None
    teacher = load_classifier(path, kind="unknown_detector")
    if teacher.config.num_classes != n_classes + 1:
        raise SystemExit(f"--detector-teacher {path}: its detector has {teacher.config.num_classes} outputs, this "
                         f"run's {n_classes + 1} (the known classes and unknown)")
    cfg["detector_teacher_fingerprint"] = teacher.manifest.get("fingerprint")
    log.note(f"unknown detector: distilled from the detector of {path} (fingerprint "
             f"{cfg['detector_teacher_fingerprint']}), {cfg.get('detector_distill', DISTILL)}")
    return folded_copy(teacher.net)


def out_of_set_classes(cfg: dict) -> tuple:
    """The torchsig kinds the unknown detector learns as "none of them"."""
    return tuple(cfg.get("out_of_set_classes") or OUT_OF_SET_TRAIN)


def fit_unknown_flag(project: Classifier, data: dict, log: RunLog, detector=None,
                     outlier_classes: tuple = OUT_OF_SET_TRAIN, false_flag_rate: float = 0.01,
                     codec: HQARF | None = None, exemplars=None, originals_threshold: float | None = None) -> Classifier:
    """Out-of-set statistics for the unknown flag: class means and covariance of the project classifier's
    features on training frames at 10 dB or more (the in-set signals a receiver should recognise), the
    threshold at 1 % of the clean validation frames; the detector's at `false_flag_rate` of them. With the
    trained `codec`, the detector's threshold is also set on the clean validation frames' reconstructions at
    every level: the largest of the per-set thresholds, so at most `false_flag_rate` of the originals and of
    each level's reconstructions (what a cloud-side ModRec sink sees, with the run's exemplar bank
    `exemplars` where it has one) are above it. `originals_threshold`: the detector's threshold on the clean
    validation frames where the caller has already computed it (train.py, for the exemplar bank)."""
    x, y = data["train"]
    snr = data.get("train_snr_db")
    keep = np.ones(len(x), bool) if snr is None else snr >= 10.0
    calibration = data.get("val_clean", data["val"])[0]
    threshold = project.fit_out_of_set(x[keep], y[keep], calibration, false_flag_rate=0.01)
    log.note(f"unknown flag (Mahalanobis): fitted on {int(keep.sum())} training frames, threshold {threshold:.3f} "
             f"(1 % of {len(calibration)} clean validation frames above it)")
    if detector is not None:
        wrapped = detector_classifier(detector, project.classes)
        per_set = {"originals": calibration_threshold(wrapped, calibration, false_flag_rate)
                   if originals_threshold is None else originals_threshold}
        if codec is not None:  # every calibration frame at every level, as the shipped Codec decodes it
            rec, _ = reconstructions(codec, calibration, len(calibration), seed=0, exemplars=exemplars)
            for level, frames in enumerate(np.split(rec, codec.config.levels)):
                per_set[f"level {level}"] = calibration_threshold(wrapped, frames, false_flag_rate)
        threshold = max(per_set.values())
        wrapped.manifest["unknown_detector"] = {
            "threshold": threshold, "false_flag_rate": false_flag_rate, "calibration_frames": int(len(calibration)),
            "calibration_thresholds": per_set,
            "score": "probability of the last output (none of the known classes)",
            "out_of_set_training_classes": list(outlier_classes)}
        project.detector = wrapped
        sets = "" if codec is None else (
            " and of their reconstructions at each level; per set " +
            ", ".join(f"{k} {v:.4f}" for k, v in per_set.items()))
        log.note(f"unknown flag (detector): threshold {threshold:.4f} (at most {100 * false_flag_rate:g} % of the "
                 f"clean validation frames above it{sets})")
    return project


def detector_classifier(detector: ModRecNet, classes) -> Classifier:
    """The trained unknown detector as a Classifier over `classes` plus "unknown" (its last output)."""
    return Classifier(detector, {"classes": [*classes, "unknown"]}, kind="unknown_detector")


def calibration_threshold(detector: Classifier, frames: np.ndarray, false_flag_rate: float) -> float:
    """The unknown score that `false_flag_rate` of `frames` (all of known classes) are above."""
    return float(np.quantile(detector.predict_proba(frames)[:, -1], 1 - false_flag_rate))


def classifier_stage(net, name: str, cfg: dict, data: dict, args, ckpt: "Checkpoints", ctx: Dist, log: RunLog, want,
                     seed: int, unknown_rate: float | None = None, teacher=None):
    """Train (or load from the run's checkpoint) one ModRec classifier on original frames; leaves it
    frozen in eval mode. `unknown_rate`: its last output is "none of them" (the unknown detector;
    training.classifier_loop.train_classifier; `teacher`: distilled from it, as there)."""
    if ckpt.done(name) and (args.resume or not want(name)):
        ckpt.load(name, net)
        log.note(f"{name}: loaded from checkpoint")
    elif want("classifier") or want(name):
        t = time.time()
        log.note(f"{name}: {count_parameters(net)} parameters ({net.config.arch})")
        train_data = data
        if args.coreset is not None:
            idx, cfg["classifier_coreset"] = load_coreset(args.coreset, cfg["data"]["train"], len(data["train"][0]))
            train_data = {**data, "train": (data["train"][0][idx], data["train"][1][idx])}
            log.note(f"{name}: trained on coreset {args.coreset} ({len(idx)} of {len(data['train'][0])} frames)")
        train_classifier(net, train_data, cfg, ctx, log, seed, name=name, unknown_rate=unknown_rate, teacher=teacher)
        acc = accuracy(net, *data["val"], ctx.device)
        if ctx.main:
            ckpt.save(name, None, net, time.time() - t, {"val_accuracy": acc})
    elif args.stage != "evaluate":
        raise SystemExit(f"the {name} stage has not run in this run directory yet")
    net.to(ctx.device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def critic_stages(cfg: dict, data: dict, args, ckpt: Checkpoints, ctx: Dist, log: RunLog, n_classes: int) -> list:
    """The direct decoders' training-only critics (preset ``critics``: ``seeds``, offsets of the run's
    seed, and optionally ``classifier``, the architecture, and ``epochs``; default: the held-out
    classifier's). Each is a ModRec classifier trained on original frames like the held-out one, with
    its own seed; their output distributions on reconstructions enter the direct decoders' loss
    (``direct_coefs`` ``critic``). The held-out classifier is never among them, so it still judges a
    codec that never saw it (training/README.md, sessions 12-13). Checkpoints critic0, critic1, ...;
    not written into the model."""
    spec = cfg.get("critics") or {}
    arch = spec.get("classifier", cfg.get("heldout_classifier") or {})
    stage_cfg = {**cfg, "classifier_epochs": spec.get("epochs", cfg.get("heldout_epochs", cfg["classifier_epochs"]))}
    nets = []
    for i, offset in enumerate(spec.get("seeds", ())):
        if offset in (0, HELDOUT_SEED):
            raise SystemExit(f"critics: seed offset {offset} is the project or held-out classifier's; a judge "
                             "must stay out of the loss it judges")
        torch.manual_seed(args.seed + offset)  # its initial weights, whatever ran before it (--resume)
        net = build_network(ClassifierConfig(num_classes=n_classes, **arch))
        nets.append(classifier_stage(net, f"critic{i}", stage_cfg, data, args, ckpt, ctx, log, lambda _: True,
                                     seed=args.seed + offset))
    return nets
