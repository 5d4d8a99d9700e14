# SPDX-License-Identifier: GPL-3.0-or-later
"""The convolutional building blocks of every level: residual blocks, the encoder and decoder of
one level, and the running normaliser of a level's input latent."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin, cout, k=3, stride=1):
    return nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2)


class ResidualBlock(nn.Module):
    """Mish(x + conv(h/2 -> h)(Mish(conv(h -> h/2)(x)))), as in HQA."""

    def __init__(self, width: int):
        super().__init__()
        self.squeeze = _conv(width, width // 2)
        self.expand = _conv(width // 2, width)

    def forward(self, x):
        return F.mish(x + self.expand(F.mish(self.squeeze(x))))


class Encoder(nn.Module):
    """Halves the time axis: (B, Cin, T) -> (B, D, T/2), batch-normalised."""

    def __init__(self, cin: int, width: int, code_dim: int, blocks: int):
        super().__init__()
        self.net = nn.Sequential(
            _conv(cin, width // 2, stride=2), nn.Mish(),
            _conv(width // 2, width), nn.Mish(),
            *[ResidualBlock(width) for _ in range(blocks)],
            nn.Conv1d(width, code_dim, 1),
            nn.BatchNorm1d(code_dim),
        )

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """Doubles the time axis: (B, D, T) -> (B, Cout, 2T); tanh output only at level 0."""

    def __init__(self, code_dim: int, width: int, cout: int, blocks: int, tanh: bool):
        super().__init__()
        layers = [_conv(code_dim, width), nn.Mish(), *[ResidualBlock(width) for _ in range(blocks)],
                  nn.Upsample(scale_factor=2, mode="nearest"),
                  _conv(width, width // 2), nn.Mish(), _conv(width // 2, cout)]
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class SemanticHead(nn.Module):
    """A frame's class estimate from a continuous latent: (B, D, T) -> (B, classes) logits; three
    convolutions (two of stride 2), then mean, spread and peak over time."""

    def __init__(self, code_dim: int, classes: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(code_dim, width, 3, stride=2, padding=1), nn.Mish(),
                                 nn.Conv1d(width, width, 3, stride=2, padding=1), nn.Mish(),
                                 nn.Conv1d(width, width, 3, padding=1), nn.Mish())
        self.out = nn.Linear(3 * width, classes)

    def forward(self, z):
        h = self.net(z)
        return self.out(torch.cat([h.mean(-1), h.std(-1), h.amax(-1)], -1))


class RunningNorm(nn.Module):
    """Per-channel running mean/std of the latent a level receives.

    Statistics update in training mode and are applied in BOTH modes (the public code skipped the
    normalisation at inference on the encode side only, so its encoder saw a different input).
    """

    def __init__(self, channels: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def set_statistics(self, z: torch.Tensor):
        """Set the statistics exactly from a (N, C, T) sample of the incoming latent."""
        self.mean.copy_(z.mean(dim=(0, 2)))
        self.var.copy_(z.var(dim=(0, 2)))
        self.initialised.fill_(True)

    def normalise(self, z):
        if self.training:
            with torch.no_grad():
                mean, var = z.mean(dim=(0, 2)), z.var(dim=(0, 2))
                if not bool(self.initialised):
                    self.mean.copy_(mean), self.var.copy_(var), self.initialised.fill_(True)
                else:
                    self.mean.lerp_(mean, self.momentum), self.var.lerp_(var, self.momentum)
        return (z - self.mean[:, None]) / torch.sqrt(self.var[:, None] + self.eps)

    def denormalise(self, z):
        return z * torch.sqrt(self.var[:, None] + self.eps) + self.mean[:, None]
