# SPDX-License-Identifier: GPL-3.0-or-later
"""The one ModRec classifier training loop (the project and held-out classifiers, the unknown detector, the
critics, the judges and the coreset experiment all train with it) and its training view of a batch."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gnuradio.hqarf.frames import to_iq
from training.common import INFERENCE_BATCH, Dist, RunLog, batches, maybe_ddp


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


def outputs(net: nn.Module, x: np.ndarray, device, batch: int = INFERENCE_BATCH) -> np.ndarray:
    """(N, outputs) logits of `net` on frames `x`, in eval mode, `batch` frames at a time."""
    net.eval()
    with torch.inference_mode():
        out = [net(to_iq(x[i:i + batch], device)).float().cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray, device, batch: int = INFERENCE_BATCH) -> float:
    return share_right(outputs(net, x, device, batch), y)


def share_right(logits: np.ndarray, y: np.ndarray) -> float:
    """The share of frames whose largest output is their label (0 for no frames)."""
    return float((logits.argmax(-1) == y).mean()) if len(logits) else 0.0


def fit_classifier(net: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, batch: int, lr: float, seed: int,
                   ctx: Dist, view=augment, order=None, after_step=None, after_epoch=None, progress: bool = True,
                   teacher: nn.Module | None = None, distill: dict | None = None):
    """The one classifier training loop: AdamW (weight decay 1e-4), a one-cycle learning rate peaking at
    `lr`, cross-entropy with label smoothing 0.05, on `view(iq, generator)` of each batch.

    With a `teacher` (a trained network with the same outputs, frozen), knowledge distillation: the loss is
    (1 - alpha) times that cross-entropy plus alpha T^2 times the KL divergence of the net's outputs at
    temperature T from the teacher's on the same view of the batch (`distill`: {"alpha", "temperature"}), so
    the net learns where the teacher puts frames of no class it was trained on, not only the labels.

    `order(epoch)` gives the epoch's batches of indices (default: this rank's `batches`, so DDP ranks
    stay in step); `after_step(epoch, idx, logits)` runs after each optimiser step with the logits that
    step started from, `after_epoch(epoch, mean_loss)` after each epoch (this rank's mean loss). Leaves
    `net` in eval mode."""
    if order is None:
        order = lambda epoch: list(batches(len(x), batch, seed, epoch, ctx))  # noqa: E731
    net.to(ctx.device)
    wrapped = maybe_ddp(net, ctx)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * len(order(0))),
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(seed + ctx.rank)
    y_t = torch.from_numpy(np.asarray(y, dtype=np.int64))
    if teacher is not None:
        teacher.to(ctx.device).eval()
        alpha, temperature = float(distill["alpha"]), float(distill["temperature"])
    for epoch in range(epochs):
        wrapped.train()
        total, count = 0.0, 0
        bar = tqdm(order(epoch), desc=f"classifier epoch {epoch + 1}/{epochs}", disable=not (progress and ctx.main),
                   leave=False)
        for idx in bar:
            iq = view(to_iq(x[idx], ctx.device), gen)
            logits = wrapped(iq)
            loss = F.cross_entropy(logits, y_t[idx].to(ctx.device), label_smoothing=0.05)
            if teacher is not None:
                with torch.no_grad():
                    target = F.log_softmax(teacher(iq) / temperature, -1)
                follow = F.kl_div(F.log_softmax(logits / temperature, -1), target, log_target=True,
                                  reduction="batchmean") * temperature ** 2
                loss = (1 - alpha) * loss + alpha * follow
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(epoch, idx, logits)
            total, count = total + loss.item(), count + 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        if after_epoch is not None:
            after_epoch(epoch, total / max(1, count))
    net.eval()
    return net


def train_classifier(net: nn.Module, data: dict, cfg: dict, ctx: Dist, log: RunLog, seed: int, name: str = "classifier",
                     unknown_rate: float | None = None, teacher: nn.Module | None = None):
    """A ModRec classifier on the preset's training view of original frames, with the validation
    accuracy logged after every epoch. `unknown_rate`: the net's last output is "none of the known classes"
    (the unknown detector, whose validation labels have it): each epoch also logs the share of out-of-set
    validation frames whose unknown score is above the score that `unknown_rate` of the known validation frames
    exceed (a diagnostic of the epoch; the shipped threshold is set afterwards, by fit_unknown_flag). `teacher`:
    distilled from it as fit_classifier says, with the preset's ``distill`` entry."""
    xv, yv = data["val"]
    epochs = cfg["classifier_epochs"]

    def after_epoch(epoch, loss):
        train_loss = ctx.all_reduce_mean(loss)
        logits = outputs(net, xv, ctx.device)
        val_acc = share_right(logits, yv)
        extra = {} if unknown_rate is None else {
            "out_of_set_val_flagged": out_of_set_flagged(torch.from_numpy(logits).softmax(-1).numpy(), yv, unknown_rate)}
        log.metrics(stage="classifier", network=name, epoch=epoch + 1, loss=train_loss, val_accuracy=val_acc, **extra)
        log.note(f"{name} epoch {epoch + 1}/{epochs}: loss {train_loss:.4f}, val accuracy {val_acc:.4f}" +
                 "".join(f", out-of-set val frames flagged {v:.4f} (at the score {100 * unknown_rate:g} % of the "
                         f"known ones exceed)" for v in extra.values()))

    return fit_classifier(net, *data["train"], epochs=epochs, batch=cfg["classifier_batch"], lr=cfg["classifier_lr"],
                          seed=seed, ctx=ctx, view=lambda iq, gen: augment_view(iq, gen, cfg), after_epoch=after_epoch,
                          teacher=teacher, distill=cfg.get("distill"))


def out_of_set_flagged(prob: np.ndarray, y: np.ndarray, rate: float) -> float:
    """Share of the frames labelled "none of them" (the last output) whose score (that output's probability) is
    above the score `rate` of the other frames exceed."""
    score, unknown = prob[:, -1], y == prob.shape[1] - 1
    if not unknown.any() or unknown.all():
        return float("nan")
    return float((score[unknown] > np.quantile(score[~unknown], 1 - rate)).mean())


def random_rotation(iq_pair: list[torch.Tensor], gen: torch.Generator, max_offset: float = 0.01) -> list[torch.Tensor]:
    """The same random carrier phase and frequency offset applied to every tensor of the list, frame by
    frame: the classifier terms then compare original and reconstruction under a random view."""
    b, _, n = iq_pair[0].shape
    phase = torch.rand(b, 1, generator=gen) * 2 * math.pi
    offset = (torch.rand(b, 1, generator=gen) * 2 - 1) * max_offset
    angle = (phase + 2 * math.pi * offset * torch.arange(n)).to(iq_pair[0].device)
    c, s = torch.cos(angle), torch.sin(angle)
    return [torch.stack([t[:, 0] * c - t[:, 1] * s, t[:, 0] * s + t[:, 1] * c], 1) for t in iq_pair]
