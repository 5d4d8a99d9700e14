# SPDX-License-Identifier: GPL-3.0-or-later
"""What a model costs: parameters and multiply-accumulates per frame of encode and decode at each
level (bench, the model's costs.json and docs/speed.md read these)."""
from __future__ import annotations

import torch
from torch import nn

from .model import HQARF, HQARFConfig


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def level_costs(config: HQARFConfig) -> list[dict]:
    """Parameters and multiply-accumulates per frame of encode and decode at each level, as inference
    runs them: the networks' convolutions (encode_macs, decode_macs), the quantisers' distance GEMMs
    (encode_quantizer_macs, decode_quantizer_macs) and both (encode_total_macs, decode_total_macs).
    A decoder's first convolution read from per-codeword tables (Decoder.from_codes) is table
    look-ups and additions, not multiply-accumulates per frame: it is not counted (building the
    tables, K x D x k x Cout, happens once per call, whatever its batch)."""
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
            # Encoding with the projection folded into the search (HQARF.encode) skips the last 1x1
            # convolution (the hooks see it not run) and searches over the encoder's W features.
            search = config.codebook_size * config.code_dim
            enc_width = config.encoder_widths[level] if model.folds_projection(level) else config.code_dim
            enc_q = config.tokens(level) * config.codebook_size * enc_width
            # (a direct level's G_i re-quantises nothing)
            dec_q = 0 if level in config.direct_levels else sum(config.tokens(i) for i in range(level)) * search
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
