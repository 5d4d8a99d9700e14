# SPDX-License-Identifier: GPL-3.0-or-later
"""Codec core: shapes, dtypes, determinism per level, the quantiser's schedule and code reset,
and weights files that fail loudly."""
import json

import numpy as np
import pytest
import torch

from conftest import random_frames
from gnuradio.hqarf import WeightsError, load_codec
from gnuradio.hqarf.costs import level_costs
from gnuradio.hqarf.model import HQARF, HQARFConfig
from gnuradio.hqarf.quantizer import Quantizer


@pytest.fixture(scope="module")
def codec(tiny_model_dir):
    return load_codec(tiny_model_dir)


def test_geometry(codec):
    assert (codec.levels, codec.frame_len, codec.bits_per_index) == (5, 1024, 6)
    assert [codec.tokens(level) for level in range(5)] == [512, 256, 128, 64, 32]
    assert [round(codec.compression_ratio(level), 1) for level in range(5)] == [21.3, 42.7, 85.3, 170.7, 341.3]


def test_shapes_dtypes_and_determinism(codec, rng):
    x = random_frames(rng, 5)
    for level in range(codec.levels):
        codes = codec.encode(x, level)
        assert codes.shape == (5, 512 >> level) and codes.dtype == np.int64
        assert codes.min() >= 0 and codes.max() < 64
        assert np.array_equal(codes, codec.encode(x, level))
        y = codec.decode(codes, level)
        assert y.shape == (5, 1024) and y.dtype == np.complex64
        assert np.array_equal(y, codec.decode(codes, level))
        assert np.abs(y).max() <= np.sqrt(2) + 1e-6  # tanh output on I and Q


def test_encode_is_scale_invariant_and_batch_independent(codec, rng):
    x = random_frames(rng, 4)
    codes = codec.encode(x, 2)
    assert np.array_equal(codes, codec.encode(x * 123.0, 2))
    assert np.array_equal(codes[1:2], codec.encode(x[1], 2))


def test_sampled_indices_are_seeded(codec, rng):
    x = random_frames(rng, 2)
    a = codec.encode(x, 1, sample=True, seed=5)
    assert np.array_equal(a, codec.encode(x, 1, sample=True, seed=5))
    assert not np.array_equal(a, codec.encode(x, 1, sample=True, seed=6))


def test_bad_inputs(codec, rng):
    x = random_frames(rng, 1)
    with pytest.raises(ValueError, match="level"):
        codec.encode(x, 5)
    with pytest.raises(ValueError, match="shape"):
        codec.encode(np.zeros((2, 100), np.complex64), 0)
    with pytest.raises(ValueError, match="complex"):
        codec.encode(np.zeros((1, 1024), np.float32), 0)
    bad = x.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        codec.compress(bad, 0)
    with pytest.raises(ValueError, match="0..63"):
        codec.decode(np.full((1, 32), 64), 4)


def test_zero_frame(codec):
    y = codec.decompress(codec.compress(np.zeros((1, 1024), np.complex64), 0))
    assert np.all(y == 0)


def test_hae_path_and_normalisation_in_eval(rng):
    torch.manual_seed(0)
    model = HQARF(HQARFConfig(encoder_widths=(8,) * 5, decoder_widths=(8,) * 5, code_dim=8)).eval()
    x = torch.randn(3, 2, 1024)
    assert model.reconstruct_continuous(x, 4).shape == (3, 2, 1024)
    # Normalisation above level 0 is applied at inference too: changing the stored statistics changes codes.
    z = model.encode_continuous(x, 1)
    model.levels[1].norm.mean.fill_(5.0)
    assert not torch.allclose(z, model.encode_continuous(x, 1))


def test_dead_code_reset_moves_least_used_code():
    torch.manual_seed(0)
    q = Quantizer(4, 3)
    q.usage.copy_(torch.tensor([100.0, 50.0, 1.0, 30.0]))
    before = q.codebook.detach().clone()
    assert q.reset_dead_codes(noise_divisor=100.0)
    assert torch.allclose(q.codebook[2], before[0], atol=0.1) and not torch.equal(q.codebook[2], before[2])
    assert torch.equal(q.codebook[[0, 1, 3]], before[[0, 1, 3]]) and q.usage.sum() == 0
    q.usage.copy_(torch.tensor([100.0, 50.0, 10.0, 30.0]))
    assert not q.reset_dead_codes()


def test_dead_code_reset_moves_several_codes_to_used_ones():
    torch.manual_seed(0)
    q = Quantizer(6, 3)
    q.usage.copy_(torch.tensor([100.0, 0.0, 50.0, 1.0, 0.0, 2.0]))
    before = q.codebook.detach().clone()
    assert q.reset_dead_codes(max_codes=2) == 2
    moved = [i for i in range(6) if not torch.equal(q.codebook[i], before[i])]
    assert moved == [1, 4]  # the two least used (both unused); codes 3 and 5 wait for the next check
    for i in moved:  # each now sits next to a used code (0 or 2)
        assert min(torch.dist(q.codebook[i], before[j]) for j in (0, 2)) < 0.1


def test_dead_code_reset_batch_mode_restarts_codes_on_encoder_outputs():
    torch.manual_seed(0)
    q = Quantizer(6, 3)
    z = torch.randn(2, 3, 5) + 10.0  # latents far from the N(0, 1) codebook
    result = q.relaxed(z, tau=0.5)
    assert result.codewords.shape == (2, 3, 5) and result.indices.shape == (2, 5) and q.usage.sum() == 0
    q.record_usage(result.indices, z)  # the training loop keeps the statistics, not the relaxation
    assert q.usage.sum() == 10
    q.usage.copy_(torch.tensor([100.0, 0.0, 50.0, 1.0, 0.0, 2.0]))
    before = q.codebook.detach().clone()
    assert q.reset_dead_codes(max_codes=3, mode="batch") == 3
    moved = [i for i in range(6) if not torch.equal(q.codebook[i], before[i])]
    assert moved == [1, 3, 4]
    latents = z.transpose(1, 2).reshape(-1, 3)
    for i in moved:  # each dead code now is one of the batch's encoder outputs
        assert torch.cdist(q.codebook[i][None].detach(), latents).min() < 1e-6
    with pytest.raises(ValueError, match="reset mode"):
        q.usage.fill_(1.0)
        q.reset_dead_codes(mode="nearest")


def test_relaxed_quantiser_terms():
    torch.manual_seed(0)
    q = Quantizer(8, 4)
    z = torch.randn(2, 4, 10)
    result = q.relaxed(z, tau=1e-3)
    # at a tiny temperature the relaxed sample is (almost) a codeword
    dist_to_book = torch.cdist(result.codewords.transpose(1, 2).reshape(-1, 4), q.codebook).min(-1).values
    assert dist_to_book.max() < 1e-2
    assert result.kl >= -1e-5 and result.commitment > 0 and result.indices.shape == (2, 10)
    assert torch.equal(result.indices, q.indices(z))  # the nearest codes
    q.record_usage(result.indices, z)
    assert q.usage.sum() == 20


def test_level_costs_paper_model():
    costs = level_costs(HQARFConfig())
    # The wide decoders dominate (published: about 8.3 M parameters at level 4 alone).
    assert 10e6 < costs[4]["decoder_params"] < 12e6
    assert all(a["decode_macs"] < b["decode_macs"] for a, b in zip(costs, costs[1:]))


def test_missing_and_corrupt_weights(tiny_model_dir, tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_codec(tmp_path / "nothing")
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    data = bytearray((broken / "codec.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (broken / "codec.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"codec\.safetensors.*fingerprint"):
        load_codec(broken)
    (broken / "codec.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match=r"codec\.safetensors.*corrupt"):
        load_codec(broken)
    (broken / "codec.json").write_text("{not json")
    with pytest.raises(WeightsError, match=r"codec\.json"):
        load_codec(broken)
    (broken / "codec.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(WeightsError, match="not a gr-hqarf codec"):
        load_codec(broken)


def test_default_model_missing_is_a_clear_error(monkeypatch, tmp_path):
    import gnuradio.hqarf.weights as weights
    monkeypatch.setattr(weights, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(WeightsError, match="train"):
        load_codec()


def test_weights_are_not_pickle(tiny_model_dir):
    head = (tiny_model_dir / "codec.safetensors").read_bytes()[:8]
    header_len = int.from_bytes(head, "little")
    header = json.loads((tiny_model_dir / "codec.safetensors").read_bytes()[8:8 + header_len])
    assert "levels.0.quantizer.codebook" in header


def test_straight_through_quantiser_forwards_codewords_and_passes_gradients():
    torch.manual_seed(0)
    q = Quantizer(8, 4)
    z = torch.randn(2, 4, 10, requires_grad=True)
    z_q = q.relaxed(z, tau=0.667, hard=True).codewords
    dist_to_book = torch.cdist(z_q.detach().transpose(1, 2).reshape(-1, 4), q.codebook.detach()).min(-1).values
    assert dist_to_book.max() < 1e-5  # exactly codewords, even at a high temperature
    z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
