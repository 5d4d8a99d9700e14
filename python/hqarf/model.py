# SPDX-License-Identifier: GPL-3.0-or-later
"""The HQARF network in plain PyTorch: its configuration, the levels, the direct decoders and the
inference paths. Layers live in layers.py, the quantiser in quantizer.py, cost profiling in costs.py.

Shapes follow the published design (see docs/design.md); widths, residual blocks, codebook size and
dimension are configurable so smaller CPU-friendly models can be trained with the same code.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from .layers import Decoder, Encoder, RunningNorm, SemanticHead
from .quantizer import Quantizer


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
    # Levels whose last index is a global token instead of a local code (codec v3): a small head
    # on the continuous latent of level `semantic_source` estimates the frame's class (one of
    # `semantic_classes`), and G_i renders the frame conditioned on it (FiLM at every stage's
    # input). The bits per frame stay the same: the token takes the last position's index.
    semantic_levels: tuple = ()
    semantic_classes: int = 0
    semantic_source: int = 2
    semantic_width: int = 32  # the head's channels

    def __post_init__(self):
        for name in ("direct_levels", "semantic_levels"):
            object.__setattr__(self, name, tuple(sorted({int(v) for v in getattr(self, name)})))
        if any(not 0 <= v < self.levels for v in self.direct_levels):
            raise ValueError(f"direct_levels {self.direct_levels} must lie in 0..{self.levels - 1}")
        if self.semantic_levels:
            if not set(self.semantic_levels) <= set(self.direct_levels):
                raise ValueError(f"semantic_levels {self.semantic_levels} must be direct levels {self.direct_levels}")
            if min(self.semantic_levels) < self.semantic_source or self.semantic_source < 0:
                raise ValueError(f"semantic_levels {self.semantic_levels} must lie at or above semantic_source "
                                 f"{self.semantic_source}")
            if not 2 <= self.semantic_classes <= self.codebook_size:
                raise ValueError(f"semantic_classes {self.semantic_classes} must lie in 2..codebook_size")
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
    latent un-normalisation between them and no re-quantisation (codec v2). At a semantic level the
    frame's global token conditions every stage: its embedding scales and shifts the stage's input
    channels (FiLM, initialised to the identity)."""

    CONTEXT = 64  # width of the token embedding

    def __init__(self, config: HQARFConfig, level: int):
        super().__init__()
        self.level = level
        self.stages = nn.ModuleList(
            Decoder(config.code_dim, config.decoder_widths[i], config.in_channels if i == 0 else config.code_dim,
                    config.residual_blocks[i], tanh=i == 0)
            for i in range(level, -1, -1))
        self.semantic = level in config.semantic_levels
        if self.semantic:
            self.token_embedding = nn.Embedding(config.codebook_size, self.CONTEXT)
            with torch.no_grad():  # tokens no head emits: no conditioning
                self.token_embedding.weight[config.semantic_classes:] = 0
            self.film = nn.ModuleList(nn.Linear(self.CONTEXT, 2 * config.code_dim) for _ in self.stages)
            self.reset_conditioning()

    @torch.no_grad()
    def reset_conditioning(self):
        """FiLM at the identity: the token conditions nothing yet."""
        for f in getattr(self, "film", ()):
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)

    @torch.no_grad()
    def init_from_chain(self, levels: nn.ModuleList):
        """Start from the trained chain D_i ... D_0 (the re-quantisation simply left out), with no
        conditioning on the global token yet."""
        for stage, i in zip(self.stages, range(self.level, -1, -1)):
            stage.load_state_dict(levels[i].decoder.state_dict())
        self.reset_conditioning()

    def from_codes(self, idx: torch.Tensor, levels: nn.ModuleList) -> torch.Tensor:
        """forward(the level's codewords of `idx`) at a level without a global token, the first
        stage's first convolution read from per-codeword tables (Decoder.from_codes)."""
        z = levels[self.level].restore(self.stages[0].from_codes(idx, levels[self.level].quantizer.codebook))
        return self._stages(z, levels, None, start=1)

    def forward(self, z_q: torch.Tensor, levels: nn.ModuleList, token: torch.Tensor | None = None) -> torch.Tensor:
        context = self.token_embedding(token.long()) if self.semantic else None
        return self._stages(z_q, levels, context)

    def _stages(self, z: torch.Tensor, levels: nn.ModuleList, context: torch.Tensor | None, start: int = 0):
        """Stages start, start + 1, ... (levels level - start down to 0), each FiLM'd by `context` (if
        any), decoded and un-normalised with its level's statistics."""
        for k in range(start, len(self.stages)):
            if context is not None:
                scale_shift = self.film[k](context)[:, :, None]
                z = z * (1 + scale_shift[:, : z.shape[1]]) + scale_shift[:, z.shape[1]:]
            z = levels[self.level - k].restore(self.stages[k](z))
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
        if config.semantic_levels:
            self.semantic = SemanticHead(config.code_dim, config.semantic_classes, width=config.semantic_width)

    # -- continuous latents -------------------------------------------------------------------
    def _encode_path(self, x: torch.Tensor, level: int) -> tuple:
        """The continuous latent of `level` and that of `semantic_source` on the way (or None)."""
        z, source = x, None
        for lvl in self.levels[: level + 1]:
            z = lvl.encoder(lvl.prepare(z))
            if lvl.index == self.config.semantic_source:
                source = z
        return z, source

    def encode_continuous(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """(B, 2, L) -> continuous latent z_e of `level`, (B, D, L / 2**(level+1))."""
        return self._encode_path(x, level)[0]

    def token(self, source: torch.Tensor) -> torch.Tensor:
        """The global token (B,) from the continuous latent of `semantic_source` (the head's class estimate)."""
        return self.semantic(source).argmax(-1)

    def semantic_token(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) -> (B,) the global token of the semantic levels."""
        return self.token(self._encode_path(x, self.config.semantic_source)[1])

    def encode(self, x: torch.Tensor, level: int, sample: bool = False, generator=None) -> torch.Tensor:
        """(B, 2, L) real I/Q -> (B, T_level) codeword indices. Only these leave the sensor. At a
        semantic level the last index is the frame's global token.

        In eval mode the top level's latent is not formed unless the global token needs it: its
        nearest codes come from the features before the encoder's last projection, the projection and
        batch norm folded into the code search (Quantizer.indices_of_projection); at level 0 that is a
        quarter of the multiply-accumulates. Sampling (`sample`) uses the distances themselves."""
        top = self.levels[level]
        if not (sample or top.encoder.training) and self.folds_projection(level):
            below, source = self._encode_path(x, level - 1) if level > 0 else (x, None)
            idx = top.quantizer.indices_of_projection(top.encoder.features(top.prepare(below)),
                                                      *top.encoder.folded_projection())
        else:
            z, source = self._encode_path(x, level)
            idx = top.quantizer.indices(z, sample, generator)
        if level in self.config.semantic_levels:
            token = self.token(source).to(idx.dtype)
            idx = torch.cat([idx[:, :-1], token[:, None]], 1)
        return idx

    def folds_projection(self, level: int) -> bool:
        """Whether inference at `level` searches the nearest codes from the encoder's features with its
        last projection folded in (encode): not where the global token needs that level's latent."""
        return not (level in self.config.semantic_levels and level == self.config.semantic_source)

    def decode(self, idx: torch.Tensor, level: int) -> torch.Tensor:
        """Indices of `level` -> (B, 2, L): D_level, un-normalise, re-quantise with the codebook below,
        ..., D_0 (tanh). Argmax re-quantisation keeps decoding deterministic."""
        if level in self.config.semantic_levels:
            return self.decode_codewords(self.levels[level].quantizer.lookup(idx), level, idx[:, -1])
        # The same path as decode_codewords, the first convolution of each decoder that reads
        # codewords taken from per-codeword tables (Decoder.from_codes).
        if level in self.config.direct_levels:
            return self.direct[str(level)].from_codes(idx, self.levels)
        for i in range(level, -1, -1):
            lvl = self.levels[i]
            y = lvl.restore(lvl.decoder.from_codes(idx, lvl.quantizer.codebook))
            if i == 0:
                return y
            idx = self.levels[i - 1].quantizer.indices(y)
        raise AssertionError("unreachable")

    def decode_codewords(self, z_q: torch.Tensor, level: int, token: torch.Tensor | None = None) -> torch.Tensor:
        """Level-`level` codewords (B, D, T) -> (B, 2, L), the decoding path `decode` uses.

        Differentiable in `z_q`: every lower re-quantisation passes gradients straight through
        (forward pass identical to `decode`), so attacks and losses can reach through the decoder.
        A level in `config.direct_levels` decodes with its own G_i and re-quantises nothing; a
        semantic level needs its global token (B,), and its last position's codeword is replaced by
        its neighbour's (that index is the token, not a local code)."""
        if level in self.config.semantic_levels:
            if token is None:
                raise ValueError(f"level {level} carries a global token: pass token=")
            z_q = torch.cat([z_q[..., :-1], z_q[..., -2:-1]], -1)
            return self.direct[str(level)](z_q, self.levels, token)
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
