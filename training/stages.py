# SPDX-License-Identifier: GPL-3.0-or-later
"""The training loops: the ModRec classifier on originals, and one HQARF level of one stage.

Lower levels are frozen and in eval mode; the level being trained reads the continuous latent of
the level below, computed on the fly (the lower encoders are tiny next to the decoder being trained).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from training.common import Dist, RunLog, learning_rate, temperature
from hqarf.codec import to_iq
from hqarf.model import HQARF


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


# -- classifier -----------------------------------------------------------------------------------
def augment(iq: torch.Tensor, gen: torch.Generator, snr_db=(10.0, 40.0)) -> torch.Tensor:
    """AWGN at Es/N0 uniform in `snr_db` on half the batch: still original frames, but the
    classifier learns not to lean on details a codec (or a channel) smears."""
    b = iq.shape[0]
    power = iq.pow(2).sum(1).mean(-1)  # Es per complex sample
    esn0 = torch.empty(b).uniform_(float(snr_db[0]), float(snr_db[1]), generator=gen).to(iq.device)
    sigma = torch.sqrt(power / 10 ** (esn0 / 10) / 2)
    keep = (torch.rand(b, generator=gen) < 0.5).to(iq.device)
    noise = torch.randn(iq.shape, generator=gen).to(iq.device) * sigma[:, None, None]
    return torch.where(keep[:, None, None], iq, iq + noise)


def augment_view(iq: torch.Tensor, gen: torch.Generator, cfg: dict) -> torch.Tensor:
    """The classifier's training view of a batch: AWGN on half of it, then (with the preset's
    ``classifier_rotate``) a fresh random carrier phase and frequency offset per frame, so the
    classifier meets every phase of every frame, not one per frame of the data set."""
    iq = augment(iq, gen, cfg.get("classifier_augment_db", (10.0, 40.0)))
    max_offset = cfg.get("classifier_rotate")
    return iq if max_offset is None else random_rotation([iq], gen, max_offset)[0]


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray, device, batch: int = 512) -> float:
    net.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            correct += int((net(to_iq(x[i:i + batch], device)).argmax(-1).cpu().numpy() == y[i:i + batch]).sum())
    return correct / max(1, len(x))


def train_classifier(net: nn.Module, data: dict, cfg: dict, ctx: Dist, log: RunLog, seed: int):
    x, y = data["train"]
    xv, yv = data["val"]
    net.to(ctx.device)
    wrapped = maybe_ddp(net, ctx)
    epochs, batch = cfg["classifier_epochs"], cfg["classifier_batch"]
    steps = epochs * max(1, (len(x) // ctx.world) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["classifier_lr"], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["classifier_lr"], total_steps=max(1, steps),
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(seed + ctx.rank)
    y_t = torch.from_numpy(y)
    for epoch in range(epochs):
        wrapped.train()
        total, count = 0.0, 0
        bar = tqdm(list(batches(len(x), batch, seed, epoch, ctx)), desc=f"classifier epoch {epoch + 1}/{epochs}",
                   disable=not ctx.main, leave=False)
        for idx in bar:
            iq = augment_view(to_iq(x[idx], ctx.device), gen, cfg)
            loss = F.cross_entropy(wrapped(iq), y_t[idx].to(ctx.device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item(), count + 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        val_acc = accuracy(net, xv, yv, ctx.device)
        train_loss = ctx.all_reduce_mean(total / max(1, count))
        log.metrics(stage="classifier", epoch=epoch + 1, loss=train_loss, val_accuracy=val_acc)
        log.note(f"classifier epoch {epoch + 1}/{epochs}: loss {train_loss:.4f}, val accuracy {val_acc:.4f}")
    net.eval()
    return net


# -- one HQARF level ------------------------------------------------------------------------------
class LevelObjective(nn.Module):
    """Loss of level `level`: [MSE + l_cos COS + l_kl KL + l_c commit] / dims on the level's own
    (normalised) input, plus an optional task term: the classifier's KL divergence between the
    original frame and its full reconstruction from this level (the classifier stays frozen)."""

    def __init__(self, model: HQARF, level: int, quantize: bool, coefs: dict, classifier: nn.Module | None):
        super().__init__()
        self.model, self.level, self.quantize, self.coefs = model, level, quantize, coefs
        self.classifier = classifier

    def lower_latent(self, x):
        with torch.no_grad():
            return self.model.encode_continuous(x, self.level - 1) if self.level > 0 else x

    def decode_below(self, y_restored):
        """Decode from the level below down to I/Q, re-quantising with a straight-through
        estimator so the task loss reaches this level's decoder."""
        z = y_restored
        for i in range(self.level - 1, -1, -1):
            lvl = self.model.levels[i]
            if self.quantize:
                q = lvl.quantizer
                zq = q.lookup(q.indices(z.detach()))
                z = z + (zq - z).detach()
            z = lvl.restore(lvl.decoder(z))
        return z

    def forward(self, x, tau: float):
        lvl = self.model.levels[self.level]
        c = self.coefs
        target = lvl.prepare(self.lower_latent(x))
        z_e = lvl.encoder(target)
        if self.quantize:
            z_q, kl, commit, idx = lvl.quantizer.relaxed(z_e, tau, c.get("hard", False))
        else:
            z_q, idx = z_e, None
            kl = commit = z_e.new_zeros(())
        y = lvl.decoder(z_q)
        dims = target.numel()
        mse = (y - target).pow(2).sum()
        cos = (1 - F.cosine_similarity(y, target, dim=1, eps=1e-6)).sum()
        loss = (mse + c["cos"] * cos + c["kl"] * kl + c["commit"] * commit) / dims
        parts = {"mse": mse.item() / dims, "cos": cos.item() / dims, "kl": kl.item() / dims,
                 "commit": commit.item() / dims}
        if self.classifier is not None and c.get("task", 0) > 0:
            # The task term on the first `task_frames` frames of the batch only: decoding down to
            # I/Q and the classifier cost several times the level itself.
            n = min(len(x), int(c.get("task_frames") or len(x)))
            xhat = self.decode_below(lvl.restore(y[:n]))
            with torch.no_grad():
                p_orig = torch.log_softmax(self.classifier(x[:n]), -1)
            log_q = torch.log_softmax(self.classifier(xhat), -1)
            task = F.kl_div(log_q, p_orig, log_target=True, reduction="batchmean")
            loss = loss + c["task"] * task
            parts["task"] = task.item()
        return loss, parts, idx


def perplexity(idx: torch.Tensor, k: int) -> tuple[float, int]:
    counts = torch.bincount(idx.reshape(-1), minlength=k).double()
    p = counts / counts.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return float(ent.exp()), int((counts == 0).sum())


@torch.no_grad()
def init_codebook_from_data(model: HQARF, level: int, x: torch.Tensor, gen: torch.Generator):
    """Fresh codebook: K encoder outputs drawn from the data plus a little noise. Codes start
    where the latents are, so fewer die than with the N(0, 1) initialisation of the paper."""
    lvl = model.levels[level]
    z = lvl.encoder(lvl.prepare(model.encode_continuous(x, level - 1) if level > 0 else x))
    flat = z.transpose(1, 2).reshape(-1, z.shape[1])
    pick = torch.randperm(flat.shape[0], generator=gen)[: lvl.quantizer.codebook.shape[0]]
    book = flat[pick.to(flat.device)]
    lvl.quantizer.codebook.copy_(book + 0.01 * torch.randn(book.shape, generator=gen).to(book.device))


def per_level(value, level: int):
    """A preset value given once for every level, or as a tuple with one entry per level."""
    return value[level] if isinstance(value, (list, tuple)) else value


def train_level(model: HQARF, level: int, stage: str, data: dict, cfg: dict, ctx: Dist, log: RunLog,
                seed: int, classifier: nn.Module | None = None, fresh_codebook: bool = False) -> dict:
    """Train one level of one stage ('hae', 'hqarf_nokl' or 'hqarf'); returns the validation metrics of
    the weights it leaves in place (the last epoch's, or with cfg keep_best the best epoch's)."""
    quantize = stage != "hae"
    coefs = dict(cfg["coefs"])
    # The classifier term's weight, scaled per (stage, level) where the preset says so (0: no term).
    coefs["task"] = coefs.get("task", 0.0) * per_level(cfg.get("task_scale", {}).get(stage, 1.0), level)
    if stage != "hqarf":
        coefs["kl"] = 0.0
    if level in cfg.get("task_full_batch", {}).get(stage, ()):
        coefs["task_frames"] = None  # the classifier term on the whole batch at this level
    if not quantize:
        coefs["commit"] = 0.0
    x, _ = data["train"]
    xv, yv = data["val"]
    gen = torch.Generator().manual_seed(seed)
    model.to(ctx.device)
    lvl = model.levels[level]

    for p in model.parameters():
        p.requires_grad_(False)
    trainable = list(lvl.encoder.parameters()) + list(lvl.decoder.parameters())
    if quantize:
        trainable.append(lvl.quantizer.codebook)
    for p in trainable:
        p.requires_grad_(True)
    model.eval()
    sample = to_iq(x[: min(len(x), cfg["stats_frames"])], ctx.device)
    with torch.no_grad():
        if lvl.norm is not None:
            # The frozen lower encoders make the incoming statistics fixed: take them exactly.
            lvl.norm.set_statistics(model.encode_continuous(sample, level - 1))
    if fresh_codebook:
        init_codebook_from_data(model, level, sample, gen)
    ctx.broadcast_(lvl.quantizer.codebook.data)
    lvl.encoder.train()
    lvl.decoder.train()

    objective = LevelObjective(model, level, quantize, coefs, classifier if coefs.get("task", 0) > 0 else None)
    wrapped = maybe_ddp(objective, ctx)
    epochs = cfg.get("epochs_override") or per_level(cfg["level_epochs"][stage], level)
    reset_codes = per_level(cfg.get("reset_codes", 1), level)
    reset_mode = per_level(cfg.get("reset_mode", "split"), level)
    batch = cfg["batch"]
    per_epoch = max(1, (len(x) // ctx.world) // batch)
    total = epochs * per_epoch
    opt = torch.optim.Adam(trainable, lr=cfg["lr"])
    # Model selection on the validation split: keep the epoch whose reconstructions the classifier
    # recognises best. In a fine-tuning stage (a trained level, no fresh codebook) the starting point
    # is a candidate too, so the stage can only keep or improve the level's validation accuracy.
    keep_best = bool(cfg.get("keep_best")) and classifier is not None
    best = None
    if keep_best and quantize and not fresh_codebook:
        start = validate_level(model, level, quantize, xv, yv, ctx, classifier)
        best = (start["val_accuracy"], 0, copy.deepcopy(lvl.state_dict()), start)
        log.note(f"{stage} L{level} start: val " + ", ".join(f"{k} {v:.4g}" for k, v in start.items()))
        lvl.encoder.train()
        lvl.decoder.train()
    step = 0
    for epoch in range(epochs):
        sums: dict = {}
        bar = tqdm(list(batches(len(x), batch, seed, epoch, ctx)),
                   desc=f"{stage} level {level} epoch {epoch + 1}/{epochs}", disable=not ctx.main, leave=False)
        for idx in bar:
            for g in opt.param_groups:
                g["lr"] = learning_rate(step, total, cfg["lr"], cfg["lr"] / 10)
            tau = temperature(step, total)
            loss, parts, _ = wrapped(to_iq(x[idx], ctx.device), tau)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            step += 1
            if quantize and step % cfg["reset_every"] == 0:
                lvl.quantizer.reset_dead_codes(noise_divisor=100.0, max_codes=reset_codes, mode=reset_mode)
                ctx.broadcast_(lvl.quantizer.codebook.data)
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.4f}", tau=f"{tau:.3f}")
        n = max(1, per_epoch)
        train_metrics = {k: ctx.all_reduce_mean(v / n) for k, v in sums.items()}
        val = validate_level(model, level, quantize, xv, yv, ctx, classifier)
        lvl.encoder.train()
        lvl.decoder.train()
        log.metrics(stage=stage, level=level, epoch=epoch + 1, tau=tau, lr=opt.param_groups[0]["lr"],
                    **{f"train_{k}": v for k, v in train_metrics.items()}, **val)
        log.note(f"{stage} L{level} epoch {epoch + 1}/{epochs}: loss {train_metrics['loss']:.4f} | val "
                 + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
        if keep_best and (best is None or val["val_accuracy"] >= best[0]):
            best = (val["val_accuracy"], epoch + 1, copy.deepcopy(lvl.state_dict()), val)
    if keep_best and best is not None:
        lvl.load_state_dict(best[2])
        val = {**best[3], "kept_epoch": best[1]}
        log.note(f"{stage} L{level}: kept epoch {best[1]} of {epochs} (val accuracy {best[0]:.4f}"
                 + (", the stage's starting point)" if best[1] == 0 else ")"))
    for p in trainable:
        p.requires_grad_(False)
    model.eval()
    return val


@torch.no_grad()
def validate_level(model: HQARF, level: int, quantize: bool, xv: np.ndarray, yv: np.ndarray, ctx: Dist,
                   classifier: nn.Module | None) -> dict:
    """Reconstruction SNR of frames from this level, codebook use, and ModRec accuracy on them."""
    model.eval()
    out: dict = {}
    recon, codes = [], []
    for i in range(0, len(xv), 256):
        iq = to_iq(xv[i:i + 256], ctx.device)
        if quantize:
            idx = model.encode(iq, level)
            codes.append(idx)
            recon.append(model.decode(idx, level))
        else:
            recon.append(model.reconstruct_continuous(iq, level))
    xhat = torch.cat(recon)
    xt = to_iq(xv, ctx.device)
    out["val_snr_db"] = float(10 * torch.log10(xt.pow(2).sum() / (xhat - xt).pow(2).sum().clamp_min(1e-20)))
    if quantize:
        ppl, dead = perplexity(torch.cat(codes), model.config.codebook_size)
        out["val_perplexity"], out["val_dead_codes"] = ppl, dead
    if classifier is not None:
        classifier.eval()
        pred = torch.cat([classifier(xhat[i:i + 512]).argmax(-1) for i in range(0, len(xhat), 512)])
        out["val_accuracy"] = float((pred.cpu().numpy() == yv).mean())
    return out


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


def signal_statistics(iq: torch.Tensor) -> torch.Tensor:
    """Per-frame statistics a modulation is recognised by, at unit RMS (B, 2, L) -> (B, 5):
    |C40|, C42, C63-like 6th-order moment, envelope spread (std of |x|) and the spread of the
    phase difference between neighbouring samples. Differentiable; see training/signal_properties.py
    for the report's versions."""
    z = torch.complex(iq[:, 0], iq[:, 1])
    z = z - z.mean(-1, keepdim=True)
    # a floor on the power: a near-silent reconstruction must not blow the normalised moments up
    p = z.abs().pow(2).mean(-1, keepdim=True).clamp_min(1e-3)
    z = z / p.sqrt()
    a = z.abs()
    m20 = (z * z).mean(-1)
    m40 = z.pow(4).mean(-1)
    m42 = a.pow(4).mean(-1)
    c40 = m40 - 3 * m20 * m20
    c42 = m42 - m20.abs().pow(2) - 2
    m63 = a.pow(6).mean(-1)
    dphi = torch.angle(z[:, 1:] * z[:, :-1].conj())
    return torch.stack([c40.abs(), c42, m63 / 10, a.std(-1), dphi.std(-1)], -1)


def random_rotation(iq_pair: list[torch.Tensor], gen: torch.Generator, max_offset: float = 0.01) -> list[torch.Tensor]:
    """The same random carrier phase and frequency offset applied to every tensor of the list, frame by
    frame: the classifier terms then compare original and reconstruction under a random view."""
    b, _, n = iq_pair[0].shape
    phase = torch.rand(b, 1, generator=gen) * 2 * math.pi
    offset = (torch.rand(b, 1, generator=gen) * 2 - 1) * max_offset
    angle = (phase + 2 * math.pi * offset * torch.arange(n)).to(iq_pair[0].device)
    c, s = torch.cos(angle), torch.sin(angle)
    return [torch.stack([t[:, 0] * c - t[:, 1] * s, t[:, 0] * s + t[:, 1] * c], 1) for t in iq_pair]


class DirectObjective(nn.Module):
    """Loss of a direct decoder G_i (codec v2): the level's codes are fixed (frozen encoders and
    codebook); G_i maps their codewords to I/Q and is judged on the frame itself:
        IQ MSE + cos  (the samples)       + stft * multi-resolution log-spectrum (the band)
        + stats * per-frame statistics    + feature * the classifier's features (multi-layer) and
        + kl * its output distribution, both under a shared random phase / frequency-offset view."""

    def __init__(self, model: HQARF, level: int, coefs: dict, classifier: nn.Module | None):
        super().__init__()
        self.model, self.level, self.coefs, self.classifier = model, level, coefs, classifier

    def forward(self, x: torch.Tensor, gen: torch.Generator):
        c = self.coefs
        with torch.no_grad():
            z_q = self.model.levels[self.level].quantizer.lookup(self.model.encode(x, self.level))
        xhat = self.model.direct[str(self.level)](z_q, self.model.levels)
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
        if self.classifier is not None and (c.get("feature", 0) > 0 or c.get("kl", 0) > 0):
            # on the first `task_frames` frames only: the classifier's passes cost as much as G_i's
            n = min(len(x), int(c.get("task_frames") or len(x)))
            view_hat, view = random_rotation([xhat[:n], x[:n]], gen)
            with torch.no_grad():
                target = self.classifier.feature_maps(view)
            maps = self.classifier.feature_maps(view_hat)
            feat = sum((a - b).pow(2).mean() / b.pow(2).mean().clamp_min(1e-6)
                       for a, b in zip(maps[:-1], target[:-1])) / (len(maps) - 1)
            kl = F.kl_div(torch.log_softmax(maps[-1], -1), torch.log_softmax(target[-1], -1), log_target=True,
                          reduction="batchmean")
            loss = loss + c.get("feature", 0) * feat + c.get("kl", 0) * kl
            parts["feature"], parts["kl"] = feat.item(), kl.item()
        return loss, parts


def train_direct(model: HQARF, level: int, data: dict, cfg: dict, ctx: Dist, log: RunLog, seed: int,
                 classifier: nn.Module | None) -> dict:
    """Train level `level`'s direct decoder G_i, initialised from the trained chain D_i ... D_0 (every
    other weight frozen). Keeps the best epoch by validation accuracy of the project classifier (the
    starting point a candidate); returns that epoch's validation metrics."""
    x, _ = data["train"]
    xv, yv = data["val"]
    g = model.direct[str(level)]
    model.to(ctx.device)
    g.init_from_chain(model.levels)
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = list(g.parameters())
    for p in trainable:
        p.requires_grad_(True)
    model.eval()
    objective = DirectObjective(model, level, cfg["direct_coefs"], classifier)
    epochs = cfg.get("epochs_override") or per_level(cfg["direct_epochs"], level)
    batch = cfg.get("direct_batch", cfg["batch"])
    per_epoch = max(1, (len(x) // ctx.world) // batch)
    if cfg.get("direct_steps"):  # an epoch of at most this many steps (a fresh share of the data each epoch)
        per_epoch = min(per_epoch, int(per_level(cfg["direct_steps"], level)))
    total = epochs * per_epoch
    lr = cfg.get("direct_lr", cfg["lr"] / 2)
    opt = torch.optim.Adam(trainable, lr=lr)
    gen = torch.Generator().manual_seed(seed)

    def validate():
        out = validate_level(model, level, True, xv, yv, ctx, classifier)
        g.train()
        return out

    start = validate()
    best = (start.get("val_accuracy", -1.0), 0, copy.deepcopy(g.state_dict()), start)
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
        if val.get("val_accuracy", 0.0) >= best[0]:
            best = (val.get("val_accuracy", 0.0), epoch + 1, copy.deepcopy(g.state_dict()), val)
    g.load_state_dict(best[2])
    log.note(f"direct L{level}: kept epoch {best[1]} of {epochs} (val accuracy {best[0]:.4f})")
    for p in trainable:
        p.requires_grad_(False)
    model.eval()
    return {**best[3], "kept_epoch": best[1]}
