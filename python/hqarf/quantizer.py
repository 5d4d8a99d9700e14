# SPDX-License-Identifier: GPL-3.0-or-later
"""The codebook of one level: nearest-code search for inference, the Gumbel-softmax relaxation for
training (returning a QuantizedResult) and the training-only dead-code statistics and restarts."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def first_argmin_(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """scores.argmin(dim), ties to the lowest index, overwriting `scores` (a temporary); 2-3x faster
    than torch's argmin over a short axis (K = 64 codes) on the CPU, which runs it scalar.

    min and sign are vectorised: scores minus their minimum are 0 exactly at the minimum (x - x) and
    > 0 elsewhere, so k + K sign(scores - min) is k at a minimum and at least K elsewhere, and its
    minimum is the lowest index of a minimum. In an ONNX export, ArgMin itself (same result). NaN
    scores give 0."""
    if torch.onnx.is_in_onnx_export():
        return scores.argmin(dim)
    k = scores.shape[dim]
    shape = [1] * scores.dim()
    shape[dim] = k
    index = torch.arange(k, dtype=scores.dtype, device=scores.device).reshape(shape)
    scores.sub_(scores.amin(dim, keepdim=True)).sign_().mul_(float(k)).add_(index)
    return scores.amin(dim).nan_to_num_(0.0).long()


@dataclass
class QuantizedResult:
    """What the training path of a quantiser gives back (as EnCodec's QuantizedResult)."""

    codewords: torch.Tensor    # (B, D, T): the (relaxed) codewords the decoder sees
    kl: torch.Tensor           # KL divergence of q(k|t) to a uniform prior, summed
    commitment: torch.Tensor   # expected squared distance to the codewords under q, summed
    indices: torch.Tensor      # (B, T): the nearest codes (no gradient)


class Quantizer(nn.Module):
    """Codebook of K vectors of dimension D with a Gumbel-softmax relaxation for training."""

    def __init__(self, codebook_size: int, code_dim: int):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim))
        # Usage counts since the last dead-code check (training only).
        self.register_buffer("usage", torch.zeros(codebook_size))
        self.recent = None  # the last training batch's encoder outputs (not saved)

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, T) -> (B, T, K) squared Euclidean distances to every codeword.

        One GEMM per frame: ||z||^2 + ||c||^2 - 2 z.c, the cross term accumulated into the norms
        by baddbmm (beta = 1, alpha = -2). Per frame, so a frame's codes do not depend on how many
        frames share the call (one GEMM over the whole batch rounded differently at batch 1)."""
        zt = z.transpose(1, 2)
        norms = zt.pow(2).sum(-1, keepdim=True) + self.codebook.pow(2).sum(-1)
        return torch.baddbmm(norms, zt, self.codebook.t().expand(z.shape[0], -1, -1), alpha=-2.0)

    def indices(self, z: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Nearest codeword (argmax of q(k|t) = softmax(-d)), or a sample of q when `sample`.

        Ties go to the lowest codeword index (argmin's first minimum, in torch and in ONNX)."""
        if not sample:
            return self._search(self.codebook, torch.zeros_like(self.codebook[:, 0]), z)
        d = self.distances(z)
        probs = torch.softmax(-d, -1)
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return flat.reshape(probs.shape[:-1])

    def indices_of_projection(self, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The nearest codes of z = weight h + bias (an encoder's last 1x1 projection) without forming z.

        ||z - c_k||^2 = ||z||^2 + ||c_k||^2 - 2 c_k.bias - 2 (c_k weight).h, so the argmin needs one
        GEMM of the features h (B, W, T) against C weight (K, W): W x K multiply-accumulates per token
        instead of D x (W + K). Equal to indices(z) up to float rounding: a token whose two nearest
        codewords are within rounding of each other can take the other."""
        c = self.codebook
        return self._search(c @ weight, c @ bias, h)

    def _search(self, directions: torch.Tensor, offsets: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """argmin_k ||c_k||^2 - 2 offsets_k - 2 directions_k . x_t per token of x (B, W, T), ties to the
        lowest k: the nearest codes, ||z_t||^2 left out (the same for every k). Scores are laid out
        (B, K, T), so no transposed copy of x is made and the search reduces over a strided axis with
        vector instructions. One GEMM per frame (bmm), so a frame's codes do not depend on how many
        frames share the call."""
        c = self.codebook
        constant = (c.pow(2).sum(-1) - 2.0 * offsets)[:, None]
        b, t = x.shape[0], x.shape[-1]
        scores = torch.baddbmm(constant.expand(b, -1, t), directions.expand(b, -1, -1), x, alpha=-2.0)
        return first_argmin_(scores, 1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) indices -> (B, D, T) codewords."""
        return F.embedding(idx, self.codebook).transpose(1, 2)

    def relaxed(self, z: torch.Tensor, tau: float, hard: bool = False) -> QuantizedResult:
        """Training path: Gumbel-softmax sample, KL to a uniform prior, commitment term.

        hard=False is the papers' soft relaxation (the decoder sees mixtures of codewords); hard=True
        is the straight-through variant: the forward pass uses one sampled codeword, as inference
        does, and the gradient is the soft sample's. Pure: `record_usage` keeps the dead-code
        statistics."""
        d = self.distances(z)
        logits = -d
        log_q = torch.log_softmax(logits, -1)
        q = log_q.exp()
        soft = F.gumbel_softmax(logits, tau=tau, hard=hard, dim=-1)
        z_q = (soft @ self.codebook).transpose(1, 2)
        K = self.codebook.shape[0]
        kl = (q * (log_q + math.log(K))).sum()
        commit = (q * d).sum()
        with torch.no_grad():
            idx = d.argmin(-1)
        return QuantizedResult(z_q, kl, commit, idx)

    @torch.no_grad()
    def record_usage(self, indices: torch.Tensor, z: torch.Tensor) -> None:
        """Count a training batch's nearest codes (for reset_dead_codes) and keep its encoder
        outputs `z`, where dead codes restart in reset mode "batch"."""
        self.usage += torch.bincount(indices.reshape(-1), minlength=self.codebook.shape[0]).to(self.usage.dtype)
        self.recent = z.detach()

    @torch.no_grad()
    def reset_dead_codes(self, noise_divisor: float = 100.0, threshold: float = 0.03, max_codes: int = 1,
                         mode: str = "split") -> int:
        """Move codes used under `threshold` x the most-used one (the least-used first, at most
        `max_codes` of them). mode "split": next to used codes (plus N(0,1)/noise_divisor); with
        max_codes=1 the HQA policy (next to the most-used code), with more the sources are drawn in
        proportion to use. mode "batch": onto encoder outputs of the last training batch (random
        restarts, as in Jukebox and SoundStream), so a dead code lands where latents are.
        Zeroes the counts; returns how many codes moved."""
        if mode not in ("split", "batch"):
            raise ValueError(f"unknown reset mode {mode!r}")
        usage = self.usage
        moved = 0
        if usage.max() > 0:
            dead = [int(i) for i in torch.argsort(usage) if usage[i] < threshold * usage.max()][:max_codes]
            if mode == "batch" and self.recent is not None:
                flat = self.recent.transpose(1, 2).reshape(-1, self.recent.shape[1])
                targets = flat[torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)]
            else:
                if len(dead) == 1 and max_codes == 1:
                    sources = [int(usage.argmax())]
                else:
                    sources = torch.multinomial(usage / usage.sum(), max(1, len(dead)), replacement=True).tolist()
                targets = [self.codebook[s] + torch.randn_like(self.codebook[s]) / noise_divisor for s in sources]
            for code, target in zip(dead, targets):
                self.codebook[code] = target
                moved += 1
        usage.zero_()
        return moved
