# SPDX-License-Identifier: GPL-3.0-or-later
"""Codec v2's training loops: the direct decoders and the token's head. The ModRec classifiers' loop:
training/classifier_loop.py; one HQARF level of one stage: training/levels.py.
"""
from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gnuradio.hqarf.frames import to_iq
from gnuradio.hqarf.model import HQARF
from training.classifier_loop import random_rotation
from training.common import INFERENCE_BATCH, Dist, RunLog, batches, learning_rate, per_level
from training.data import Impairments, impair
from training.levels import validate_level, validation_codes


# -- codec v2: a direct decoder per level, trained end to end on I/Q ----------------------------
def stft_log_magnitude_loss(xhat: torch.Tensor, x: torch.Tensor, sizes=(16, 64, 256)) -> torch.Tensor:
    """Multi-resolution STFT loss on complex I/Q (B, 2, L): mean |log|X^| - log|X|| plus the spectral
    convergence, averaged over the window sizes (as in Parallel WaveGAN / DAC, two-sided spectra)."""
    zc = torch.complex(xhat[:, 0], xhat[:, 1])
    xc = torch.complex(x[:, 0], x[:, 1])
    total = xhat.new_zeros(())
    for n in sizes:
        window = torch.hann_window(n, device=x.device)
        kw = dict(n_fft=n, hop_length=n // 4, window=window, return_complex=True, onesided=False, center=False)
        s_hat, s = torch.stft(zc, **kw).abs(), torch.stft(xc, **kw).abs()
        total = total + (s_hat - s).norm() / s.norm().clamp_min(1e-8) \
            + (torch.log(s_hat + 1e-4) - torch.log(s + 1e-4)).abs().mean()
    return total / len(sizes)


def _unit_rms(iq: torch.Tensor) -> torch.Tensor:
    """(B, 2, L) I/Q as complex frames, mean removed and scaled to unit RMS."""
    z = torch.complex(iq[:, 0], iq[:, 1])
    z = z - z.mean(-1, keepdim=True)
    # a floor on the power: a near-silent reconstruction must not blow the normalised moments up
    p = z.abs().pow(2).mean(-1, keepdim=True).clamp_min(1e-3)
    return z / p.sqrt()


def signal_statistics(iq: torch.Tensor) -> torch.Tensor:
    """Per-frame statistics a modulation is recognised by, at unit RMS (B, 2, L) -> (B, 5):
    |C40|, C42, C63-like 6th-order moment, envelope spread (std of |x|) and the spread of the
    phase difference between neighbouring samples. Differentiable; see training/signal_properties.py
    for the report's versions."""
    z = _unit_rms(iq)
    a = z.abs()
    m20 = (z * z).mean(-1)
    m40 = z.pow(4).mean(-1)
    m42 = a.pow(4).mean(-1)
    c40 = m40 - 3 * m20 * m20
    c42 = m42 - m20.abs().pow(2) - 2
    m63 = a.pow(6).mean(-1)
    dphi = torch.angle(z[:, 1:] * z[:, :-1].conj())
    return torch.stack([c40.abs(), c42, m63 / 10, a.std(-1), dphi.std(-1)], -1)


def circularity(iq: torch.Tensor) -> torch.Tensor:
    """|E[z^2]| / E[|z|^2] per frame of (B, 2, L) I/Q, the mean removed: 1 for a real-valued signal
    at any carrier phase, 0 for a proper (circular) complex one. Differentiable."""
    z = _unit_rms(iq)
    return (z * z).mean(-1).abs()


def peak_non_circularity(iq: torch.Tensor, max_offset: float = 0.0125, pad: int = 4) -> torch.Tensor:
    """max over f of |E[z^2 exp(-j 2 pi f n)]| / E[|z|^2] per frame of (B, 2, L) I/Q, f within the
    +-2 max_offset (cycles per sample) where a carrier offset of at most max_offset puts the tone of z^2:
    the non-circularity of :func:`circularity` made blind to the carrier's frequency offset as well as
    its phase. 1 for a real-valued signal (4ask, 8pam) under any receiver rotation, near 0 for psk,
    qam and ofdm. The DFT is zero-padded `pad` times (the peak is within 3 % of the true one).
    Differentiable."""
    z = _unit_rms(iq)
    n = z.shape[-1]
    spectrum = torch.fft.fft(z * z, n=pad * n).abs() / n
    k = int(math.ceil(2 * max_offset * pad * n))
    return torch.cat([spectrum[:, :k + 1], spectrum[:, -k:]], -1).amax(-1)


AXIS_FLOOR = 0.02  # axis_loss's floor: a leak 20 dB below the axis counts little more than none


def axis_loss(xhat: torch.Tensor, x: torch.Tensor, floor: float = AXIS_FLOOR) -> torch.Tensor:
    """|log(1 - p(xhat) + floor) - log(1 - p(x) + floor)|, p the peak non-circularity, averaged over
    frames: 1 - p is twice the share of a frame's power off its principal axis, and the log makes a
    real signal's reconstruction pay for a small leak off its axis (held-out classifier: a clean 4ask
    with 8 % of its power off the axis is 32qam_cross; training/README.md, session 13); `floor` (a leak
    20 dB down) counts little more than none."""
    a = torch.log1p(floor - peak_non_circularity(xhat))
    b = torch.log1p(floor - peak_non_circularity(x))
    return (a - b).abs().mean()


def every_nth(n: int, share: float) -> np.ndarray:
    """A mask over n frames picking every round(1 / share)-th one: the frames a stage swaps for others."""
    return np.arange(n) % max(1, round(1 / share)) == 0


@contextlib.contextmanager
def thinned(net: nn.Module, p: float):
    """Run `net` with its dropout (modules and attention) at rate `p` in training mode (p <= 0: as it is);
    its rates and mode are restored after."""
    if p <= 0:
        yield net
        return
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    attns = [m for m in net.modules() if isinstance(m, nn.MultiheadAttention)]
    saved = ([m.p for m in drops], [m.dropout for m in attns], net.training)
    try:
        for m in drops:
            m.p = p
        for m in attns:
            m.dropout = p
        net.train()
        yield net
    finally:
        for m, v in zip(drops, saved[0]):
            m.p = v
        for m, v in zip(attns, saved[1]):
            m.dropout = v
        net.train(saved[2])


def kl_divergence(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """KL(target || output) of two batches of logits, averaged over the batch."""
    return F.kl_div(torch.log_softmax(logits, -1), torch.log_softmax(target_logits, -1), log_target=True,
                    reduction="batchmean")


class DirectObjective(nn.Module):
    """Loss of a direct decoder G_i (codec v2): the level's codes are fixed (frozen encoders and
    codebook); G_i maps their codewords to I/Q and is judged on the frame itself:
        IQ MSE + cos  (the samples)       + stft * multi-resolution log-spectrum (the band)
        + stats * per-frame statistics    + feature * the classifier's features (multi-layer) and
        + kl * its output distribution, both under a shared random phase / frequency-offset view
        (+ circ * the non-circularity |E[x^2]| / E[|x|^2]; 0 in the default preset, training/README.md)
        + critic * the mean KL of the training-only critics' outputs (training/classifiers.py), same view
        + axis * :func:`axis_loss` (the power off a frame's principal axis; its floor is ``axis_floor``,
        default AXIS_FLOOR: session 21's trial of 0.002 is in training/README.md)."""

    def __init__(self, model: HQARF, level: int, coefs: dict, classifier: nn.Module | None, critics=()):
        super().__init__()
        self.model, self.level, self.coefs, self.classifier = model, level, coefs, classifier
        self.critics = list(critics) if coefs.get("critic", 0) > 0 else []

    def forward(self, x: torch.Tensor, gen: torch.Generator):
        c = self.coefs
        with torch.no_grad():
            idx = self.model.encode(x, self.level)
            z_q = self.model.levels[self.level].quantizer.lookup(idx)
        token = idx[:, -1] if self.level in self.model.config.semantic_levels else None
        xhat = self.model.decode_codewords(z_q, self.level, token)
        dims = x.numel()
        mse = (xhat - x).pow(2).sum() / dims
        cos = (1 - F.cosine_similarity(xhat, x, dim=1, eps=1e-6)).sum() / dims
        loss = mse + c.get("cos", 0.7) * cos
        parts = {"mse": mse.item(), "cos": cos.item()}
        if c.get("stft", 0) > 0:
            spec = stft_log_magnitude_loss(xhat, x)
            loss, parts["stft"] = loss + c["stft"] * spec, spec.item()
        if c.get("stats", 0) > 0:
            # Huber: bounded gradients where a moment of a poor reconstruction is far off
            stats = F.smooth_l1_loss(signal_statistics(xhat), signal_statistics(x), reduction="sum") / len(x)
            loss, parts["stats"] = loss + c["stats"] * stats, stats.item()
        if c.get("circ", 0) > 0:
            # |E[x^2]| / E[|x|^2], the frame's non-circularity: 1 for a real signal (4ask, 8pam) at any
            # carrier phase, near 0 for psk / qam / fsk / ofdm. Reconstructions drift toward the middle
            # at levels 2-4 (4ask 1.00 -> 0.59, 32qam_cross 0.05 -> 0.48 at level 4; training/README.md).
            circ = F.smooth_l1_loss(circularity(xhat), circularity(x), reduction="sum") / len(x)
            loss, parts["circ"] = loss + c["circ"] * circ, circ.item()
        if c.get("axis", 0) > 0:
            axis = axis_loss(xhat, x, floor=c.get("axis_floor", AXIS_FLOOR))
            loss, parts["axis"] = loss + c["axis"] * axis, axis.item()
        task = self.classifier is not None and (c.get("feature", 0) > 0 or c.get("kl", 0) > 0)
        if task or self.critics:
            # on the first `task_frames` frames only: the classifier's passes cost as much as G_i's
            n = min(len(x), int(c.get("task_frames") or len(x)))
            view_hat, view = random_rotation([xhat[:n], x[:n]], gen)
        if self.critics:
            # Critics of another architecture than the project classifier's, trained on originals only:
            # the reconstruction must look like its class to judges the codec is not tuned against alone.
            # `critic_dropout` p > 0: the reconstruction's pass runs each critic with its dropout at p (a
            # different thinned critic every step, "ghost networks"), the original's pass without.
            ghost = float(c.get("critic_dropout", 0) or 0)
            crit = 0.0
            for net in self.critics:
                with torch.no_grad():
                    target = net(view)
                with thinned(net, ghost):
                    crit = crit + kl_divergence(net(view_hat), target)
            crit = crit / len(self.critics)
            loss, parts["critic"] = loss + c["critic"] * crit, crit.item()
        if task:
            with torch.no_grad():
                target = self.classifier.feature_maps(view)
            maps = self.classifier.feature_maps(view_hat)
            feat = sum((a - b).pow(2).mean() / b.pow(2).mean().clamp_min(1e-6)
                       for a, b in zip(maps[:-1], target[:-1])) / (len(maps) - 1)
            kl = kl_divergence(maps[-1], target[-1])
            loss = loss + c.get("feature", 0) * feat + c.get("kl", 0) * kl
            parts["feature"], parts["kl"] = feat.item(), kl.item()
        return loss, parts


def train_direct(model: HQARF, level: int, data: dict, cfg: dict, ctx: Dist, log: RunLog, seed: int,
                 classifier: nn.Module | None, critics=()) -> dict:
    """Train level `level`'s direct decoder G_i, initialised from the trained chain D_i ... D_0 (every
    other weight frozen). Keeps the best epoch by validation accuracy of the project classifier (the
    starting point a candidate); returns that epoch's validation metrics."""
    x, _ = data["train"]
    xv, yv = data["val"]
    share = float(per_level(cfg.get("direct_clean_share", 0.0), level))  # a share, or one per level
    if share and "train_clean" in data and "val_clean" in data:
        # A share of the training frames as generated (no noise, carrier phase 0), and the clean
        # validation frames beside the impaired ones: without them a clean 4ask (a real signal, which
        # the receiver model always rotates) was rendered as 32qam_cross at levels 2-4 (training/README.md).
        pick = every_nth(len(x), share)
        x = x.copy()
        x[pick] = data["train_clean"][0][pick]
        xv = np.concatenate([xv, data["val_clean"][0]])
        yv = np.concatenate([np.asarray(yv), np.asarray(data["val_clean"][1])])
    g = model.direct[str(level)]
    model.to(ctx.device)
    g.init_from_chain(model.levels)
    torch.manual_seed(seed)  # the global generator (the critics' dropout): the same whatever ran before this level
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = list(g.parameters())
    for p in trainable:
        p.requires_grad_(True)
    model.eval()
    coefs = {k: per_level(v, level) for k, v in cfg["direct_coefs"].items()}  # a weight, or one per level
    objective = DirectObjective(model, level, coefs, classifier, critics)
    epochs = cfg.get("epochs_override") or per_level(cfg["direct_epochs"], level)
    batch = cfg.get("direct_batch", cfg["batch"])
    per_epoch = max(1, (len(x) // ctx.world) // batch)
    if cfg.get("direct_steps"):  # an epoch of at most this many steps (a fresh share of the data each epoch)
        per_epoch = min(per_epoch, int(per_level(cfg["direct_steps"], level)))
    total = epochs * per_epoch
    lr = per_level(cfg.get("direct_lr", cfg["lr"] / 2), level)
    # The epoch kept: best by the project classifier's validation accuracy, or ("critics") by its mean
    # with the critics' mean accuracy (level 0's chain decoder was fitted to the project classifier's
    # labels, so that figure alone falls as the decoder stops gaming it; training/README.md, session 14).
    select = per_level(cfg.get("direct_select", "classifier"), level)
    if select not in ("classifier", "critics"):
        raise ValueError(f"direct_select must be 'classifier' or 'critics', got {select!r}")
    if select == "critics" and not objective.critics:
        raise ValueError("direct_select 'critics' needs critics in the loss (preset critics, direct_coefs critic)")

    def score(val: dict) -> float:
        if select == "critics":
            return (val.get("val_accuracy", 0.0) + val["val_accuracy_critics"]) / 2
        return val.get("val_accuracy", 0.0)
    opt = torch.optim.Adam(trainable, lr=lr)
    gen = torch.Generator().manual_seed(seed)

    codes = validation_codes(model, level, xv, ctx)  # the encoders are frozen: encode the validation frames once

    def validate():
        out = validate_level(model, level, True, xv, yv, ctx, classifier, objective.critics if select == "critics" else (),
                             codes=codes)
        g.train()
        return out

    start = validate()
    best = (score(start), 0, copy.deepcopy(g.state_dict()), start)
    log.note(f"direct L{level} start (chain without re-quantisation): val "
             + ", ".join(f"{k} {v:.4g}" for k, v in start.items()))
    step = 0
    for epoch in range(epochs):
        sums: dict = {}
        bar = tqdm(list(batches(len(x), batch, seed, epoch, ctx))[:per_epoch],
                   desc=f"direct level {level} epoch {epoch + 1}/{epochs}", disable=not ctx.main, leave=False)
        for idx in bar:
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, total, lr, lr / 10)
            loss, parts = objective(to_iq(x[idx], ctx.device), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            step += 1
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.4f}")
        train_metrics = {k: ctx.all_reduce_mean(v / per_epoch) for k, v in sums.items()}
        val = validate()
        log.metrics(stage="direct", level=level, epoch=epoch + 1, lr=opt.param_groups[0]["lr"],
                    **{f"train_{k}": v for k, v in train_metrics.items()}, **val)
        log.note(f"direct L{level} epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.4g}" for k, v in train_metrics.items())
                 + " | val " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
        if score(val) >= best[0]:
            best = (score(val), epoch + 1, copy.deepcopy(g.state_dict()), val)
    g.load_state_dict(best[2])
    log.note(f"direct L{level}: kept epoch {best[1]} of {epochs} (val {'accuracy' if select == 'classifier' else 'score'} "
             f"{best[0]:.4f})")
    for p in trainable:
        p.requires_grad_(False)
    model.eval()
    return {**best[3], "kept_epoch": best[1]}


# -- codec v3: the semantic levels' global token -------------------------------------------------
def train_semantic(model: HQARF, data: dict, cfg: dict, ctx: Dist, log: RunLog, seed: int) -> dict:
    """The global token's head: cross-entropy of the frame's class from the continuous latent of level
    `semantic_source` (every codec weight frozen). Keeps the best epoch by validation accuracy."""
    source = model.config.semantic_source
    head = model.semantic
    (x, y), (xv, yv) = data["train"], data["val"]
    model.to(ctx.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    @torch.no_grad()
    def latents(frames):
        return torch.cat([model.encode_continuous(to_iq(frames[i:i + INFERENCE_BATCH], ctx.device), source)
                          for i in range(0, len(frames), INFERENCE_BATCH)])

    # A share of frames with a static carrier (clean, a random phase, no frequency offset: a locked
    # receiver), in training and validation: the receiver model's offset turns every other frame's
    # phase within it, and the head had called a clean 4ask within 10 degrees of the I or Q axis
    # 32qam_cross or ofdm, which the direct decoders then rendered (training/README.md, session 13).
    share = float(cfg.get("semantic_static_share", 0.0)) if "train_clean" in data else 0.0
    pick = every_nth(len(x), share) if share else None

    def with_static(frames, epoch):
        if pick is None:
            return frames
        frames = frames.copy()
        phase = np.random.default_rng(seed + epoch).uniform(0, 2 * np.pi, (int(pick.sum()), 1))
        frames[pick] = (data["train_clean"][0][pick] * np.exp(1j * phase)).astype(frames.dtype)
        return frames

    if pick is not None and "val_clean" in data:
        xc, yc = data["val_clean"]
        turned = (xc * np.exp(1j * np.random.default_rng(seed - 1).uniform(0, 2 * np.pi, (len(xc), 1)))).astype(xc.dtype)
        xv, yv = np.concatenate([xv, xc, turned]), np.concatenate([np.asarray(yv), np.asarray(yc), np.asarray(yc)])
    z, zv = latents(with_static(x, 0)), latents(xv)
    # Fresh receiver impairments of the clean training frames every epoch after the first (the head
    # memorised one draw of them: training loss 0.0003 at validation 0.978, training/README.md).
    fresh = (Impairments(**cfg["impairments"]) if cfg.get("semantic_fresh_impairments")
             and cfg.get("impairments") is not None and "train_clean" in data else None)
    labels = torch.as_tensor(np.asarray(y), dtype=torch.long, device=ctx.device)
    trainable = list(head.parameters())
    for p in trainable:
        p.requires_grad_(True)
    epochs = cfg.get("epochs_override") or cfg.get("semantic_epochs", 10)
    batch, lr = cfg.get("semantic_batch", 128), cfg.get("semantic_lr", 2e-3)
    per_epoch = max(1, len(z) // batch)
    opt = torch.optim.Adam(trainable, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    best, step = (-1.0, 0, copy.deepcopy(head.state_dict())), 0
    for epoch in range(epochs):
        if fresh is not None and epoch > 0:
            z = latents(with_static(impair(data["train_clean"][0], "train", fresh, first_index=10 ** 6 * (epoch + 1))[0],
                                    epoch))
        elif pick is not None and epoch > 0:
            z = latents(with_static(x, epoch))
        head.train()
        perm = torch.randperm(len(z), generator=gen).to(ctx.device)
        total_loss = 0.0
        for i in range(per_epoch):
            b = perm[i * batch:(i + 1) * batch]
            for group in opt.param_groups:
                group["lr"] = learning_rate(step, epochs * per_epoch, lr, lr / 10)
            loss = F.cross_entropy(head(z[b]), labels[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total_loss += loss.item()
        head.eval()
        with torch.no_grad():
            acc = float((head(zv).argmax(-1).cpu().numpy() == np.asarray(yv)).mean())
        log.metrics(stage="semantic", epoch=epoch + 1, lr=opt.param_groups[0]["lr"], train_loss=total_loss / per_epoch,
                    val_accuracy=acc)
        log.note(f"semantic epoch {epoch + 1}/{epochs}: loss {total_loss / per_epoch:.4f} | val accuracy {acc:.4f}")
        if acc >= best[0]:
            best = (acc, epoch + 1, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    for p in trainable:
        p.requires_grad_(False)
    log.note(f"semantic: kept epoch {best[1]} of {epochs} (val accuracy {best[0]:.4f})")
    return {"val_accuracy": best[0], "kept_epoch": best[1]}
