# SPDX-License-Identifier: GPL-3.0-or-later
"""The convolutional building blocks of every level: residual blocks, the encoder and decoder of
one level, and the running normaliser of a level's input latent."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish, x tanh(softplus(x)). Without gradients it is computed as x - 2x / (n + 2), n = e^x (e^x + 2)
    (the same function: tanh(log(1 + e^x)) = n / (n + 2)): one exponential, no logarithm or tanh, the
    last step one fused addcdiv; 3x faster than torch's kernel on the CPU (inference is mostly
    activations at these widths) and within 2e-6 of the exact value. With gradients, and in an ONNX
    export, torch's own."""
    if (x.requires_grad and torch.is_grad_enabled()) or torch.onnx.is_in_onnx_export():
        return F.mish(x)  # ONNX has no addcdiv; ONNX Runtime has its own Mish kernels
    e = x.clamp(max=20.0).exp_()  # above 20, mish(x) = x in float32 (n + 2 > 2^55)
    return torch.addcdiv(x, x, (e + 2.0).mul_(e).add_(2.0), value=-2.0)


class Mish(nn.Module):
    def forward(self, x):
        return mish(x)


def _conv(cin, cout, k=3, stride=1):
    return nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2)


class ResidualBlock(nn.Module):
    """Mish(x + conv(h/2 -> h)(Mish(conv(h -> h/2)(x)))), as in HQA."""

    def __init__(self, width: int):
        super().__init__()
        self.squeeze = _conv(width, width // 2)
        self.expand = _conv(width // 2, width)

    def forward(self, x):
        return mish(x + self.expand(mish(self.squeeze(x))))


class Encoder(nn.Module):
    """Halves the time axis: (B, Cin, T) -> (B, D, T/2), batch-normalised."""

    def __init__(self, cin: int, width: int, code_dim: int, blocks: int):
        super().__init__()
        self.net = nn.Sequential(
            _conv(cin, width // 2, stride=2), Mish(),
            _conv(width // 2, width), Mish(),
            *[ResidualBlock(width) for _ in range(blocks)],
            nn.Conv1d(width, code_dim, 1),
            nn.BatchNorm1d(code_dim),
        )

    def forward(self, x):
        return self.net(x)

    def features(self, x):
        """The features before the last 1x1 projection (and its batch norm)."""
        return self.net[:-2](x)

    def folded_projection(self) -> tuple:
        """The last 1x1 convolution with the batch norm's inference affine folded in: z = W h + b,
        W (D, width), b (D,), equal to net(x) in eval mode for h = features(x)."""
        conv, bn = self.net[-2], self.net[-1]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return conv.weight[:, :, 0] * scale[:, None], (conv.bias - bn.running_mean) * scale + bn.bias


def conv_of_codes(conv: nn.Conv1d, codebook: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """conv(codebook[idx]) for a stride-1 "same" convolution, without looking the codewords up.

    Each tap j maps every codeword to a fixed output, so its outputs form a table (K, Cout) and the
    convolution is a sum of k table rows per position: no multiply-accumulate per position. (B, T)
    indices -> (B, Cout, T). Zero padding at the frame's edges is the tap left out, as in the
    convolution. Equal to the convolution within float rounding."""
    w = conv.weight
    cout, dim, k = w.shape
    pad = conv.padding[0]
    tables = codebook @ w.permute(1, 2, 0).reshape(dim, k * cout)  # (K, k * Cout): row = codeword
    # an all-zero row K stands for the padding, so the edges need no branch and no zero-filled copy
    tables = torch.cat([tables, torch.zeros_like(tables[:1])])
    edge = torch.full_like(idx[:, :pad], codebook.shape[0])
    e = F.embedding(torch.cat([edge, idx, edge], 1), tables).unflatten(-1, (k, cout))
    t = idx.shape[-1]
    y = e[:, 0:t, 0] + conv.bias
    for j in range(1, k):
        y = y + e[:, j:j + t, j]
    return y.transpose(1, 2).contiguous()


def codes_convolvable(conv: nn.Conv1d) -> bool:
    """Whether conv_of_codes computes this convolution (stride 1, odd kernel, "same" zero padding)."""
    k = conv.kernel_size[0]
    return (conv.stride == (1,) and conv.dilation == (1,) and conv.groups == 1 and k % 2 == 1
            and conv.padding == (k // 2,) and conv.padding_mode == "zeros" and conv.bias is not None)


class Decoder(nn.Module):
    """Doubles the time axis: (B, D, T) -> (B, Cout, 2T); tanh output only at level 0."""

    def __init__(self, code_dim: int, width: int, cout: int, blocks: int, tanh: bool):
        super().__init__()
        layers = [_conv(code_dim, width), Mish(), *[ResidualBlock(width) for _ in range(blocks)],
                  nn.Upsample(scale_factor=2, mode="nearest"),
                  _conv(width, width // 2), Mish(), _conv(width // 2, cout)]
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)

    def from_codes(self, idx: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """forward(codebook[idx] as (B, D, T)) with the first convolution read from tables
        (conv_of_codes): at level 0 that convolution is most of the decoder's work."""
        first = self.net[0]
        if not codes_convolvable(first):
            return self.net(F.embedding(idx, codebook).transpose(1, 2))
        return self.net[1:](conv_of_codes(first, codebook, idx))


class SemanticHead(nn.Module):
    """A frame's class estimate from a continuous latent: (B, D, T) -> (B, classes) logits; three
    convolutions (two of stride 2), then mean, spread and peak over time."""

    def __init__(self, code_dim: int, classes: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(code_dim, width, 3, stride=2, padding=1), Mish(),
                                 nn.Conv1d(width, width, 3, stride=2, padding=1), Mish(),
                                 nn.Conv1d(width, width, 3, padding=1), Mish())
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
