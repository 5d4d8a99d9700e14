# SPDX-License-Identifier: GPL-3.0-or-later
"""Codec v3: the global token of the semantic levels (HQARFConfig.semantic_levels)."""
import numpy as np
import pytest
import torch

from gnuradio import hqarf
from gnuradio.hqarf.model import HQARF, HQARFConfig

from conftest import TINY, make_codec

SEMANTIC = dict(direct_levels=(1, 2, 3, 4), semantic_levels=(2, 3, 4), semantic_classes=6)


def semantic_model(seed=0, film=True) -> HQARF:
    torch.manual_seed(seed)
    model = HQARF(HQARFConfig(**{**TINY, **SEMANTIC})).eval()
    if film:  # a trained model's conditioning is not the identity it starts as
        with torch.no_grad():
            for g in model.direct.values():
                for f in getattr(g, "film", ()):
                    f.weight.normal_(0, 0.3)
    return model


def test_config_is_validated():
    with pytest.raises(ValueError, match="direct levels"):
        HQARFConfig(**{**TINY, "semantic_levels": (3,), "semantic_classes": 6})
    with pytest.raises(ValueError, match="semantic_source"):
        HQARFConfig(**{**TINY, **SEMANTIC, "semantic_levels": (1, 2)})
    with pytest.raises(ValueError, match="semantic_classes"):
        HQARFConfig(**{**TINY, **SEMANTIC, "semantic_classes": 65})
    # a manifest written before codec v3 has none of the keys: no semantic level
    assert HQARFConfig.from_dict({k: v for k, v in HQARFConfig(**TINY).to_dict().items()
                                  if not k.startswith("semantic")}).semantic_levels == ()


def test_the_token_takes_the_last_index_and_the_bits_per_frame_stay():
    model, plain = semantic_model(film=False), HQARF(HQARFConfig(**{**TINY, "direct_levels": (1, 2, 3, 4)}))
    x = torch.randn(5, 2, 1024)
    with torch.no_grad():
        heads = model.semantic(model._encode_path(x, 2)[1]).argmax(-1)
        for level in range(5):
            idx = model.encode(x, level)
            assert idx.shape == (5, plain.config.tokens(level)) and idx.dtype == torch.int64
            local = model.levels[level].quantizer.indices(model.encode_continuous(x, level))
            if level >= 2:
                assert torch.equal(idx[:, -1], heads) and torch.equal(idx[:, -1], model.semantic_token(x))
                assert torch.equal(idx[:, :-1], local[:, :-1]) and int(idx[:, -1].max()) < 6
            else:
                assert torch.equal(idx, local)


def test_decoding_follows_the_token_and_starts_as_the_unconditioned_decoder():
    model = semantic_model()
    x = torch.randn(4, 2, 1024)
    with torch.no_grad():
        for level in (2, 3, 4):
            idx = model.encode(x, level)
            other = idx.clone()
            other[:, -1] = (idx[:, -1] + 1) % 6
            y, y2 = model.decode(idx, level), model.decode(other, level)
            assert y.shape == (4, 2, 1024) and not torch.allclose(y, y2)
            z_q = model.levels[level].quantizer.lookup(idx)
            assert torch.equal(model.decode_codewords(z_q, level, idx[:, -1]), y)
            with pytest.raises(ValueError, match="token"):
                model.decode_codewords(z_q, level)
            # the last position's local code is gone: the index there is the token only
            g = model.direct[str(level)]
            g.init_from_chain(model.levels)  # conditioning back to the identity
            neighbour = torch.cat([z_q[..., :-1], z_q[..., -2:-1]], -1)
            assert torch.allclose(model.decode(idx, level), model.decode(other, level))
            for stage, i in zip(g.stages, range(level, -1, -1)):
                neighbour = model.levels[i].restore(stage(neighbour))
            unconditioned = neighbour
            assert torch.allclose(model.decode(idx, level), unconditioned, atol=1e-6)


def test_tokens_no_head_emits_do_not_condition():
    model = semantic_model()
    g = model.direct["3"]
    assert torch.count_nonzero(g.token_embedding.weight[6:]) == 0
    assert torch.count_nonzero(g.token_embedding.weight[:6]) > 0


def test_saved_semantic_model_round_trips_through_the_codec(tmp_path, rng):
    directory = make_codec(tmp_path, seed=2, **SEMANTIC)
    codec = hqarf.load_codec(directory)
    assert codec.model.config.semantic_levels == (2, 3, 4)
    frames = (rng.standard_normal((3, 1024)) + 1j * rng.standard_normal((3, 1024))).astype(np.complex64)
    for level in range(5):
        codes = codec.encode(frames, level)
        assert codes.shape == (3, codec.model.config.tokens(level))
        assert codec.bits_per_frame(level) == 6 * codec.model.config.tokens(level)
        out = codec.decode(codes, level)
        assert out.shape == frames.shape and np.isfinite(out).all()
        again = hqarf.load_codec(directory).decode(codes, level)
        assert np.array_equal(out, again)


def test_costs_count_the_head_at_the_semantic_levels_only():
    from gnuradio.hqarf.costs import level_costs
    with_head = level_costs(HQARFConfig(**{**TINY, **SEMANTIC}))
    without = level_costs(HQARFConfig(**{**TINY, "direct_levels": (1, 2, 3, 4)}))
    config = HQARFConfig(**{**TINY, **SEMANTIC})
    for a, b in zip(with_head, without):
        level = a["level"]
        extra = a["encode_macs"] - b["encode_macs"]
        assert (extra > 0) == (level >= 2), level
        # FiLM is a per-frame linear map, not counted per sample; but FiLM'd codewords are no longer
        # codewords, so a semantic level's first convolution runs as one, where a plain direct level
        # reads it from per-codeword tables (Decoder.from_codes) at no multiply-accumulate per frame
        first_conv = config.tokens(level) * config.code_dim * config.decoder_widths[level] * 3
        assert a["decode_macs"] == b["decode_macs"] + (first_conv if level >= 2 else 0), level


def test_checkpoint_of_an_older_architecture_loads_only_with_the_new_parts_fresh(tmp_path):
    from safetensors.torch import save_file
    from training.checkpoints import Checkpoints
    old = HQARF(HQARFConfig(**{**TINY, "direct_levels": (1, 2, 3, 4)}))
    ckpt = Checkpoints(tmp_path)
    ckpt.dir.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(ckpt.dir / "direct.safetensors"))
    new = semantic_model()
    with pytest.raises(RuntimeError):
        ckpt.load("direct", new)
    with pytest.raises(SystemExit, match="does not fit"):
        ckpt.load("direct", new, fresh=["semantic."])
    assert ckpt.load("direct", new, fresh=["semantic.", "direct.2.", "direct.3.", "direct.4."])
    assert torch.equal(new.levels[0].encoder.net[0].weight, old.levels[0].encoder.net[0].weight)


def test_a_level_1_source_and_a_wider_head_carry_the_token_from_level_1(tmp_path):
    torch.manual_seed(1)
    config = HQARFConfig(**{**TINY, **SEMANTIC, "semantic_levels": (1, 2, 3, 4), "semantic_source": 1,
                            "semantic_width": 24})
    model = HQARF(config).eval()
    assert model.semantic.out.in_features == 3 * 24
    x = torch.randn(3, 2, 1024)
    with torch.no_grad():
        heads = model.semantic(model.encode_continuous(x, 1)).argmax(-1)
        for level in range(5):
            idx = model.encode(x, level)
            assert idx.shape == (3, config.tokens(level))
            if level >= 1:
                assert torch.equal(idx[:, -1], heads)
                assert model.decode(idx, level).shape == (3, 2, 1024)
    # a checkpoint whose head had another width loads with the head left out when it is redone
    from safetensors.torch import save_file
    from training.checkpoints import Checkpoints
    old = semantic_model()
    ckpt = Checkpoints(tmp_path)
    ckpt.dir.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(ckpt.dir / "direct.safetensors"))
    head_before = model.semantic.out.weight.clone()
    assert ckpt.load("direct", model, fresh=["semantic.", "direct.1."])
    assert torch.equal(model.semantic.out.weight, head_before)  # the head is redone: not loaded
    assert torch.equal(model.levels[0].encoder.net[0].weight, old.levels[0].encoder.net[0].weight)
