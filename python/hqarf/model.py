# SPDX-License-Identifier: GPL-3.0-or-later
"""The HQARF network in plain PyTorch: per-level encoders, decoders and Gumbel-softmax quantisers.

Shapes follow the published design (see docs/design.md); widths, residual blocks, codebook size and
dimension are configurable so smaller CPU-friendly models can be trained with the same code.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HQARFConfig:
    """Architecture of a hierarchical codec. Defaults are the paper's (about 11 M parameters)."""

    levels: int = 5
    frame_len: int = 1024
    in_channels: int = 2
    encoder_widths: tuple = (16, 16, 32, 64, 128)
    decoder_widths: tuple = (16, 64, 256, 512, 1024)
    residual_blocks: tuple = (0, 2, 2, 2, 2)
    codebook_size: int = 64
    code_dim: int = 64
    # Levels decoded by their own decoder G_i straight to I/Q (codec v2) instead of the chain
    # D_i, re-quantise, D_{i-1}, ..., D_0. G_i has the chain's layers (so the same cost per frame)
    # but no re-quantisation, and is trained end to end for that level's output.
    direct_levels: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "direct_levels", tuple(sorted({int(v) for v in self.direct_levels})))
        if any(not 0 <= v < self.levels for v in self.direct_levels):
            raise ValueError(f"direct_levels {self.direct_levels} must lie in 0..{self.levels - 1}")
        for name in ("encoder_widths", "decoder_widths", "residual_blocks"):
            value = tuple(int(v) for v in getattr(self, name))
            object.__setattr__(self, name, value)
            if len(value) != self.levels:
                raise ValueError(f"{name} has {len(value)} entries, expected one per level ({self.levels})")
        if self.frame_len % (2 ** self.levels):
            raise ValueError(f"frame_len {self.frame_len} must be divisible by 2**levels")
        if self.codebook_size < 2:
            raise ValueError("codebook_size must be at least 2")
        for width in self.encoder_widths + self.decoder_widths:
            if width < 2 or width % 2:
                raise ValueError(f"widths must be even and >= 2, got {width}")

    @property
    def bits_per_index(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook_size)))

    def tokens(self, level: int) -> int:
        """Indices per frame at `level` (512 >> level for 1024-sample frames)."""
        return self.frame_len >> (level + 1)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "HQARFConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown codec config keys: {sorted(unknown)}")
        return cls(**d)


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
        d = self.distances(z)
        if not sample:
            return d.argmin(-1)
        probs = torch.softmax(-d, -1)
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return flat.reshape(probs.shape[:-1])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) indices -> (B, D, T) codewords."""
        return F.embedding(idx, self.codebook).transpose(1, 2)

    def relaxed(self, z: torch.Tensor, tau: float, hard: bool = False):
        """Training path: Gumbel-softmax sample, KL to a uniform prior, commitment term.

        hard=False is the papers' soft relaxation (the decoder sees mixtures of codewords); hard=True
        is the straight-through variant: the forward pass uses one sampled codeword, as inference
        does, and the gradient is the soft sample's."""
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
            self.usage += torch.bincount(idx.reshape(-1), minlength=K).to(self.usage.dtype)
            self.recent = z.detach()  # where dead codes restart (reset_mode "batch"); drawn at the reset
        return z_q, kl, commit, idx

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


class Level(nn.Module):
    """One level of the hierarchy: (normaliser), encoder, quantiser, decoder."""

    def __init__(self, config: HQARFConfig, index: int):
        super().__init__()
        cin = config.in_channels if index == 0 else config.code_dim
        self.index = index
        self.norm = RunningNorm(cin) if index > 0 else None
        self.encoder = Encoder(cin, config.encoder_widths[index], config.code_dim,
                               config.residual_blocks[index])
        self.quantizer = Quantizer(config.codebook_size, config.code_dim)
        self.decoder = Decoder(config.code_dim, config.decoder_widths[index], cin,
                               config.residual_blocks[index], tanh=index == 0)

    def prepare(self, z_lower: torch.Tensor) -> torch.Tensor:
        """The input this level encodes and is trained to reconstruct (normalised above level 0)."""
        return self.norm.normalise(z_lower) if self.norm is not None else z_lower

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        return self.norm.denormalise(y) if self.norm is not None else y


class DirectDecoder(nn.Module):
    """G_i: level-i codewords -> I/Q through decoders shaped like D_i, ..., D_0, with the levels'
    latent un-normalisation between them and no re-quantisation (codec v2)."""

    def __init__(self, config: HQARFConfig, level: int):
        super().__init__()
        self.level = level
        self.stages = nn.ModuleList(
            Decoder(config.code_dim, config.decoder_widths[i], config.in_channels if i == 0 else config.code_dim,
                    config.residual_blocks[i], tanh=i == 0)
            for i in range(level, -1, -1))

    @torch.no_grad()
    def init_from_chain(self, levels: nn.ModuleList):
        """Start from the trained chain D_i ... D_0 (the re-quantisation simply left out)."""
        for stage, i in zip(self.stages, range(self.level, -1, -1)):
            stage.load_state_dict(levels[i].decoder.state_dict())

    def forward(self, z_q: torch.Tensor, levels: nn.ModuleList) -> torch.Tensor:
        z = z_q
        for stage, i in zip(self.stages, range(self.level, -1, -1)):
            z = levels[i].restore(stage(z))
        return z


class HQARF(nn.Module):
    """The whole hierarchy, with the inference paths the codec uses."""

    def __init__(self, config: HQARFConfig = HQARFConfig()):
        super().__init__()
        self.config = config
        self.levels = nn.ModuleList(Level(config, i) for i in range(config.levels))
        # Only created when used, so models without direct decoders keep their state dict (and
        # their weights fingerprint) unchanged.
        if config.direct_levels:
            self.direct = nn.ModuleDict({str(i): DirectDecoder(config, i) for i in config.direct_levels})

    # -- continuous latents -------------------------------------------------------------------
    def encode_continuous(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """(B, 2, L) -> continuous latent z_e of `level`, (B, D, L / 2**(level+1))."""
        z = x
        for lvl in self.levels[: level + 1]:
            z = lvl.encoder(lvl.prepare(z))
        return z

    def encode(self, x: torch.Tensor, level: int, sample: bool = False, generator=None) -> torch.Tensor:
        """(B, 2, L) real I/Q -> (B, T_level) codeword indices. Only these leave the sensor."""
        return self.levels[level].quantizer.indices(self.encode_continuous(x, level), sample, generator)

    def decode(self, idx: torch.Tensor, level: int) -> torch.Tensor:
        """Indices of `level` -> (B, 2, L): D_level, un-normalise, re-quantise with the codebook below,
        ..., D_0 (tanh). Argmax re-quantisation keeps decoding deterministic."""
        return self.decode_codewords(self.levels[level].quantizer.lookup(idx), level)

    def decode_codewords(self, z_q: torch.Tensor, level: int) -> torch.Tensor:
        """Level-`level` codewords (B, D, T) -> (B, 2, L), the decoding path `decode` uses.

        Differentiable in `z_q`: every lower re-quantisation passes gradients straight through
        (forward pass identical to `decode`), so attacks and losses can reach through the decoder.
        A level in `config.direct_levels` decodes with its own G_i and re-quantises nothing."""
        if level in self.config.direct_levels:
            return self.direct[str(level)](z_q, self.levels)
        z = z_q
        for i in range(level, -1, -1):
            lvl = self.levels[i]
            y = lvl.restore(lvl.decoder(z))
            if i == 0:
                return y
            below = self.levels[i - 1].quantizer
            zq = below.lookup(below.indices(y.detach()))
            z = y + (zq - y).detach()
        raise AssertionError("unreachable")

    def reconstruct_continuous(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """HAE path: encode and decode with no quantiser anywhere (the stage-1 model)."""
        z = self.encode_continuous(x, level)
        for i in range(level, -1, -1):
            lvl = self.levels[i]
            z = lvl.restore(lvl.decoder(z))
        return z


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def level_costs(config: HQARFConfig) -> list[dict]:
    """Parameters and multiply-accumulates per frame of encode and decode at each level: the
    networks' convolutions (encode_macs, decode_macs), the quantisers' distance GEMMs
    (encode_quantizer_macs, decode_quantizer_macs) and both (encode_total_macs, decode_total_macs)."""
    model = HQARF(config)
    out = []
    macs: dict = {}

    def hook(mod, inp, outp):
        if isinstance(mod, nn.Conv1d):
            k = mod.kernel_size[0]
            macs["n"] += outp.shape[-1] * mod.out_channels * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv1d)]
    model.eval()
    x = torch.zeros(1, config.in_channels, config.frame_len)
    with torch.no_grad():
        for level in range(config.levels):
            macs["n"] = 0
            idx = model.encode(x, level)
            enc = macs["n"]
            macs["n"] = 0
            model.decode(idx, level)
            dec = macs["n"]
            # The nearest-code searches: tokens x K x D multiply-accumulates each (the distance
            # GEMM), at `level` when encoding and at every re-quantisation below it when decoding.
            search = config.codebook_size * config.code_dim
            enc_q = config.tokens(level) * search
            dec_q = sum(config.tokens(i) for i in range(level)) * search
            params_encode = sum(count_parameters(model.levels[i].encoder) for i in range(level + 1))
            if level in config.direct_levels:
                params_decode = (count_parameters(model.direct[str(level)])
                                 + model.levels[level].quantizer.codebook.numel())
            else:
                params_decode = sum(count_parameters(model.levels[i].decoder)
                                    + model.levels[i].quantizer.codebook.numel() for i in range(level + 1))
            out.append({"level": level, "encode_macs": enc, "decode_macs": dec,
                        "encode_quantizer_macs": enc_q, "decode_quantizer_macs": dec_q,
                        "encode_total_macs": enc + enc_q, "decode_total_macs": dec + dec_q,
                        "encoder_params": params_encode, "decoder_params": params_decode})
    for h in handles:
        h.remove()
    return out
