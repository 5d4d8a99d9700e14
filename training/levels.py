# SPDX-License-Identifier: GPL-3.0-or-later
"""One HQARF level of one stage: its objective, the set-up that freezes the rest, the optimiser
loop, and the validation of its reconstructions.

Lower levels are frozen and in eval mode; the level being trained reads the continuous latent of
the level below, computed on the fly (the lower encoders are tiny next to the decoder being trained).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gnuradio.hqarf.frames import to_iq
from gnuradio.hqarf.model import HQARF
from training.common import INFERENCE_BATCH, Dist, RunLog, batches, learning_rate, maybe_ddp, per_level, temperature


class CodeClassHead(nn.Module):
    """Training only (never saved with the model): reads a level's (relaxed) codewords and predicts
    the frozen classifier's posterior of the original frame, so the encoder and the codebook are
    pushed to keep the class in the codes themselves (the `code_class` coefficient)."""

    def __init__(self, code_dim: int, classes: int, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(code_dim, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(width, width, 3, padding=1), nn.ReLU())
        self.out = nn.Linear(2 * width, classes)

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        h = self.body(z_q)
        return self.out(torch.cat([h.mean(-1), h.amax(-1)], 1))


class LevelObjective(nn.Module):
    """Loss of level `level`: [MSE + l_cos COS + l_kl KL + l_c commit] / dims on the level's own
    (normalised) input, plus optional class terms from the frozen classifier: `task`, its KL
    divergence between the original frame and its full reconstruction from this level, and
    `code_class`, the KL divergence between its posterior of the original frame and a training-only
    head's prediction from the level's codewords (no labels either way)."""

    def __init__(self, model: HQARF, level: int, quantize: bool, coefs: dict, classifier: nn.Module | None):
        super().__init__()
        self.model, self.level, self.quantize, self.coefs = model, level, quantize, coefs
        self.classifier = classifier
        self.code_head = None
        if quantize and classifier is not None and coefs.get("code_class", 0) > 0:
            with torch.no_grad():
                probe = torch.zeros(1, model.config.in_channels, model.config.frame_len, device=next(classifier.parameters()).device)
                classes = classifier(probe).shape[-1]
            self.code_head = CodeClassHead(model.config.code_dim, classes)

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

    def forward(self, x, tau: float, log_posterior: torch.Tensor | None = None):
        """`log_posterior`: the frozen classifier's log-posteriors of the frames `x` where the caller has
        them (train_log_posterior); computed here otherwise."""
        lvl = self.model.levels[self.level]
        c = self.coefs
        target = lvl.prepare(self.lower_latent(x))
        z_e = lvl.encoder(target)
        if self.quantize:
            quantized = lvl.quantizer.relaxed(z_e, tau, c.get("hard", False))
            lvl.quantizer.record_usage(quantized.indices, z_e)
            z_q, kl, commit, idx = quantized.codewords, quantized.kl, quantized.commitment, quantized.indices
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
        if self.code_head is not None:
            p_all = self.original_log_posterior(x, log_posterior)
            code = F.kl_div(torch.log_softmax(self.code_head(z_q), -1), p_all, log_target=True, reduction="batchmean")
            loss = loss + c["code_class"] * code
            parts["code_class"] = code.item()
        if self.classifier is not None and c.get("task", 0) > 0:
            # The task term on the first `task_frames` frames of the batch only: decoding down to
            # I/Q and the classifier cost several times the level itself.
            n = min(len(x), int(c.get("task_frames") or len(x)))
            xhat = self.decode_below(lvl.restore(y[:n]))
            p_orig = self.original_log_posterior(x[:n], None if log_posterior is None else log_posterior[:n])
            log_q = torch.log_softmax(self.classifier(xhat), -1)
            task = F.kl_div(log_q, p_orig, log_target=True, reduction="batchmean")
            loss = loss + c["task"] * task
            parts["task"] = task.item()
        return loss, parts, idx

    @torch.no_grad()
    def original_log_posterior(self, x, given: torch.Tensor | None) -> torch.Tensor:
        return given if given is not None else torch.log_softmax(self.classifier(x), -1)


@torch.no_grad()
def train_log_posterior(data: dict, classifier: nn.Module, ctx: Dist, batch: int = INFERENCE_BATCH) -> torch.Tensor:
    """The frozen classifier's log-posteriors of the training frames (N, classes), computed once per run and
    kept in `data`: the frames and the classifier are the same in every level of every chain stage, and
    computing them per batch was a tenth of a level's step time (session 18)."""
    cached = data.get("train_log_posterior")
    if cached is None or cached[0] is not classifier:
        classifier.eval()
        x = data["train"][0]
        logp = torch.cat([torch.log_softmax(classifier(to_iq(x[i:i + batch], ctx.device)), -1)
                          for i in range(0, len(x), batch)])
        cached = data["train_log_posterior"] = (classifier, logp)
    return cached[1]


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


def level_coefficients(cfg: dict, stage: str, level: int) -> dict:
    """The loss coefficients of one level of one stage: the classifier term's weight scaled per
    (stage, level) where the preset says so (0: no term), no KL before the 'hqarf' stage, no
    commitment without a quantiser."""
    coefs = dict(cfg["coefs"])
    coefs["task"] = coefs.get("task", 0.0) * per_level(cfg.get("task_scale", {}).get(stage, 1.0), level)
    # The code-level class term (quantised stages only): per level, from the preset's code_class.
    coefs["code_class"] = float(per_level(cfg.get("code_class", {}).get(stage, 0.0), level)) if stage != "hae" else 0.0
    if stage != "hqarf":
        coefs["kl"] = 0.0
    if level in cfg.get("task_full_batch", {}).get(stage, ()):
        coefs["task_frames"] = None  # the classifier term on the whole batch at this level
    if stage == "hae":
        coefs["commit"] = 0.0
    return coefs


def prepare_level(model: HQARF, level: int, quantize: bool, x: np.ndarray, cfg: dict, ctx: Dist,
                  gen: torch.Generator, fresh_codebook: bool) -> list:
    """Freeze everything but this level's encoder, decoder (and codebook), take the normaliser's
    statistics from the frozen levels below, optionally draw a fresh codebook; returns the
    trainable parameters, with the level in training mode."""
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
    set_level_training(lvl)
    return trainable


def set_level_training(lvl) -> None:
    """The level being trained in training mode (the frozen levels below stay in eval mode)."""
    lvl.encoder.train()
    lvl.decoder.train()


def train_level(model: HQARF, level: int, stage: str, data: dict, cfg: dict, ctx: Dist, log: RunLog,
                seed: int, classifier: nn.Module | None = None, fresh_codebook: bool = False) -> dict:
    """Train one level of one stage ('hae', 'hqarf_nokl' or 'hqarf'); returns the validation metrics of
    the weights it leaves in place (the last epoch's, or with cfg keep_best the best epoch's)."""
    quantize = stage != "hae"
    coefs = level_coefficients(cfg, stage, level)
    x, _ = data["train"]
    xv, yv = data["val"]
    lvl = model.levels[level]
    trainable = prepare_level(model, level, quantize, x, cfg, ctx, torch.Generator().manual_seed(seed),
                              fresh_codebook)
    code_class = coefs.get("code_class", 0) > 0  # always 0 in the HAE stage (level_coefficients)
    if code_class:
        torch.manual_seed(seed)  # the code-class head's initialisation, reproducible per (seed, level)
    objective = LevelObjective(model, level, quantize, coefs,
                               classifier if coefs.get("task", 0) > 0 or code_class else None).to(ctx.device)
    if objective.code_head is not None:
        trainable = trainable + list(objective.code_head.parameters())
    epochs = cfg.get("epochs_override") or per_level(cfg["level_epochs"][stage], level)
    run = LevelRun(objective, trainable, cfg, ctx, epochs * max(1, (len(x) // ctx.world) // cfg["batch"]))
    if objective.classifier is not None:
        run.log_posterior = train_log_posterior(data, objective.classifier, ctx)
    # Model selection on the validation split: keep the epoch whose reconstructions the classifier
    # recognises best. In a fine-tuning stage (a trained level, no fresh codebook) the starting point
    # is a candidate too, so the stage can only keep or improve the level's validation accuracy.
    keep_best = bool(cfg.get("keep_best")) and classifier is not None
    best = None
    if keep_best and quantize and not fresh_codebook:
        start = validate_level(model, level, quantize, xv, yv, ctx, classifier)
        best = (start["val_accuracy"], 0, copy.deepcopy(lvl.state_dict()), start)
        log.note(f"{stage} L{level} start: val " + ", ".join(f"{k} {v:.4g}" for k, v in start.items()))
        set_level_training(lvl)
    for epoch in range(epochs):
        desc = f"{stage} level {level} epoch {epoch + 1}/{epochs}"
        train_metrics = run.epoch(list(batches(len(x), cfg["batch"], seed, epoch, ctx)), x, desc)
        val = validate_level(model, level, quantize, xv, yv, ctx, classifier)
        set_level_training(lvl)
        log.metrics(stage=stage, level=level, epoch=epoch + 1, tau=run.tau, lr=run.opt.param_groups[0]["lr"],
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


class LevelRun:
    """The optimiser side of training one level: Adam with the flat-then-cosine learning rate, the
    linear Gumbel temperature, gradient clipping at 1.0 and the periodic dead-code restarts."""

    def __init__(self, objective: LevelObjective, trainable: list, cfg: dict, ctx: Dist, total_steps: int):
        self.objective, self.trainable, self.cfg, self.ctx = objective, trainable, cfg, ctx
        self.wrapped = maybe_ddp(objective, ctx)
        self.total, self.step, self.tau = total_steps, 0, None
        self.log_posterior = None  # the classifier's log-posteriors of the training frames, where the objective uses them
        self.opt = torch.optim.Adam(trainable, lr=cfg["lr"])
        level = objective.level
        self.reset_codes = per_level(cfg.get("reset_codes", 1), level)
        self.reset_mode = per_level(cfg.get("reset_mode", "split"), level)

    def epoch(self, order: list, x: np.ndarray, desc: str) -> dict:
        """One pass over the batches `order`; the epoch's mean losses (averaged over ranks)."""
        cfg, ctx, quantizer = self.cfg, self.ctx, self.objective.model.levels[self.objective.level].quantizer
        sums: dict = {}
        bar = tqdm(order, desc=desc, disable=not ctx.main, leave=False)
        for idx in bar:
            for g in self.opt.param_groups:
                g["lr"] = learning_rate(self.step, self.total, cfg["lr"], cfg["lr"] / 10)
            self.tau = temperature(self.step, self.total)
            logp = None if self.log_posterior is None else self.log_posterior[torch.as_tensor(idx)]
            loss, parts, _ = self.wrapped(to_iq(x[idx], ctx.device), self.tau, logp)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
            self.opt.step()
            self.step += 1
            if self.objective.quantize and self.step % cfg["reset_every"] == 0:
                quantizer.reset_dead_codes(noise_divisor=100.0, max_codes=self.reset_codes, mode=self.reset_mode)
                ctx.broadcast_(quantizer.codebook.data)
            for k, v in {"loss": loss.item(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.4f}", tau=f"{self.tau:.3f}")
        n = max(1, (len(x) // ctx.world) // cfg["batch"])
        return {k: ctx.all_reduce_mean(v / n) for k, v in sums.items()}


VALIDATION_CHUNK = INFERENCE_BATCH


@torch.no_grad()
def validation_codes(model: HQARF, level: int, xv: np.ndarray, ctx: Dist) -> list:
    """The validation frames' level-`level` indices, chunk by chunk as validate_level encodes them."""
    model.eval()
    return [model.encode(to_iq(xv[i:i + VALIDATION_CHUNK], ctx.device), level) for i in range(0, len(xv), VALIDATION_CHUNK)]


@torch.no_grad()
def validate_level(model: HQARF, level: int, quantize: bool, xv: np.ndarray, yv: np.ndarray, ctx: Dist,
                   classifier: nn.Module | None, critics=(), codes: list | None = None) -> dict:
    """Reconstruction SNR of frames from this level, codebook use, and ModRec accuracy on them (of the
    project classifier; with `critics`, their mean accuracy too, as val_accuracy_critics). `codes`: the
    frames' indices per chunk of VALIDATION_CHUNK (validation_codes) where the encoders are frozen."""
    model.eval()
    out: dict = {}
    if quantize and codes is None:
        codes = validation_codes(model, level, xv, ctx)
    recon = []
    for j, i in enumerate(range(0, len(xv), VALIDATION_CHUNK)):
        if quantize:
            recon.append(model.decode(codes[j], level))
        else:
            recon.append(model.reconstruct_continuous(to_iq(xv[i:i + VALIDATION_CHUNK], ctx.device), level))
    xhat = torch.cat(recon)
    xt = to_iq(xv, ctx.device)
    out["val_snr_db"] = float(10 * torch.log10(xt.pow(2).sum() / (xhat - xt).pow(2).sum().clamp_min(1e-20)))
    if quantize:
        ppl, dead = perplexity(torch.cat(codes), model.config.codebook_size)
        out["val_perplexity"], out["val_dead_codes"] = ppl, dead

    def accuracy_of(net: nn.Module) -> float:
        net.eval()
        pred = torch.cat([net(xhat[i:i + INFERENCE_BATCH]).argmax(-1) for i in range(0, len(xhat), INFERENCE_BATCH)])
        return float((pred.cpu().numpy() == yv).mean())

    if classifier is not None:
        out["val_accuracy"] = accuracy_of(classifier)
    if critics:
        out["val_accuracy_critics"] = float(np.mean([accuracy_of(c) for c in critics]))
    return out


