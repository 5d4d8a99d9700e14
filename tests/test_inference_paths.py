# SPDX-License-Identifier: GPL-3.0-or-later
"""The inference shortcuts (issue 16) compute what the reference paths compute: Mish without a
logarithm, the encoder's last projection folded into the nearest-code search, and a decoder's first
convolution read from per-codeword tables. Each against the plain computation, at every level."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY
from gnuradio import hqarf
from gnuradio.hqarf.layers import Mish, codes_convolvable, conv_of_codes, mish
from gnuradio.hqarf.model import HQARF, HQARFConfig
from gnuradio.hqarf.quantizer import Quantizer, first_argmin_

CONFIGS = {
    "chain": {},
    "direct": dict(direct_levels=(0, 1, 2, 3, 4)),
    "semantic from level 1": dict(direct_levels=(0, 1, 2, 3, 4), semantic_levels=(1, 2, 3, 4),
                                  semantic_classes=6, semantic_source=1),
}


@torch.no_grad()
def randomise_batch_norms(model: nn.Module) -> None:
    """Batch norms that are not the identity they start as (running statistics and affine drawn at random)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.3, 3.0)
            module.weight.normal_(1, 0.3)
            module.bias.normal_(0, 0.3)


def trained_looking(config: dict, seed=0) -> HQARF:
    """A random model whose batch norms and latent normalisers are not the identity they start as
    (the folded projection must carry them), in eval mode."""
    torch.manual_seed(seed)
    model = HQARF(HQARFConfig(**{**TINY, **config}))
    with torch.no_grad():
        randomise_batch_norms(model)
        for level in model.levels[1:]:
            level.norm.mean.normal_(0, 0.5)
            level.norm.var.uniform_(0.5, 2.0)
    return model.eval()


def reference_encode(model: HQARF, x: torch.Tensor, level: int) -> tuple:
    """Codes from the latent itself (the search the training path uses), and the distances."""
    z, source = model._encode_path(x, level)
    d = model.levels[level].quantizer.distances(z)
    idx = d.argmin(-1)
    if level in model.config.semantic_levels:
        idx = torch.cat([idx[:, :-1], model.token(source)[:, None]], 1)
    return idx, d


def test_mish_is_torchs_mish_without_gradients_and_torchs_own_with_them():
    x = torch.cat([torch.linspace(-40, 40, 4001), torch.randn(4000) * 3])
    exact = F.mish(x.double())
    with torch.no_grad():
        fast = mish(x)
    assert (fast.double() - exact).abs().max() < 2e-6
    assert torch.equal(mish(torch.tensor([0.0, 20.0, 100.0])), torch.tensor([0.0, 20.0, 100.0]))
    # with gradients the kernel is torch's, so training is unchanged
    a = x.clone().requires_grad_()
    Mish()(a).sum().backward()
    b = x.clone().requires_grad_()
    F.mish(b).sum().backward()
    assert torch.equal(a.grad, b.grad)


def test_first_argmin_is_argmin_with_ties_to_the_lowest_index():
    torch.manual_seed(0)
    scores = torch.randn(4, 100, 64)
    assert torch.equal(first_argmin_(scores.clone()), scores.argmin(-1))
    assert torch.equal(first_argmin_(scores.transpose(1, 2).contiguous(), 1), scores.argmin(-1))
    tied = scores.clone()
    low = tied.amin(-1) - 1.0
    tied[..., 9], tied[..., 5], tied[..., 40] = low, low, low
    assert (first_argmin_(tied.clone()) == 5).all()
    assert (first_argmin_(tied.transpose(1, 2).contiguous(), 1) == 5).all()
    assert first_argmin_(torch.tensor([[3.0, 1e-30, 0.0, 0.0]])).tolist() == [2]
    assert first_argmin_(torch.tensor([[2.0, 2.0, 2.0]])).tolist() == [0]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_a_convolution_of_codewords_read_from_tables_is_the_convolution(k):
    torch.manual_seed(k)
    codebook = torch.randn(64, 16)
    conv = nn.Conv1d(16, 24, k, padding=k // 2)
    idx = torch.randint(0, 64, (3, 37))
    assert codes_convolvable(conv)
    expected = conv(F.embedding(idx, codebook).transpose(1, 2))
    got = conv_of_codes(conv, codebook, idx)
    assert got.shape == expected.shape == (3, 24, 37)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    # the frame's edges (zero padding) included, and a frame of one index
    assert torch.allclose(conv_of_codes(conv, codebook, idx[:, :1]),
                          conv(F.embedding(idx[:, :1], codebook).transpose(1, 2)), atol=1e-5)
    assert not codes_convolvable(nn.Conv1d(16, 24, 3, stride=2, padding=1))
    assert not codes_convolvable(nn.Conv1d(16, 24, 3, padding=0))


def test_the_folded_search_finds_the_nearest_codes_and_breaks_ties_to_the_lowest_index():
    torch.manual_seed(0)
    q = Quantizer(64, 16)
    weight, bias, h = torch.randn(16, 8), torch.randn(16), torch.randn(4, 8, 50)
    z = torch.einsum("dw,bwt->bdt", weight, h) + bias[:, None]
    d = q.distances(z)
    got = q.indices_of_projection(h, weight, bias)
    ref = d.argmin(-1)
    # where they differ, the two codes are equally near within float rounding
    differ = got != ref
    gap = (d.gather(-1, got[..., None]) - d.gather(-1, ref[..., None]))[..., 0]
    assert differ.float().mean() < 0.01 and (gap[differ].abs() < 1e-4).all()
    # an exact tie: codes 1 and 3 are the same vector, so code 1 wins wherever either is nearest
    with torch.no_grad():
        q.codebook[3] = q.codebook[1]
        q.codebook[1] = z[0, :, 0]
        q.codebook[3] = z[0, :, 0]
    assert q.indices_of_projection(h, weight, bias)[0, 0] == 1


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_encode_and_decode_match_the_reference_paths_at_every_level(name):
    model = trained_looking(CONFIGS[name])
    x = torch.randn(6, 2, 1024)
    x = x / x.abs().amax((1, 2), keepdim=True)
    with torch.inference_mode():
        for level in range(model.config.levels):
            ref, d = reference_encode(model, x, level)
            got = model.encode(x, level)
            assert got.shape == ref.shape == (6, model.config.tokens(level))
            differ = got != ref
            if model.config.semantic_levels and level in model.config.semantic_levels:
                assert torch.equal(got[:, -1], ref[:, -1]), (name, level)  # the token
                differ[:, -1] = False
            tokens = d.shape[1]
            g, r = got[:, :tokens], ref[:, :tokens]
            gap = (d.gather(-1, g[..., None]) - d.gather(-1, r[..., None]))[..., 0]
            assert differ.float().mean() < 0.01 and (gap[differ[:, :tokens]].abs() < 1e-4).all(), (name, level)
            # decoding: the tables path against the codewords path, from the same codes
            token = ref[:, -1] if level in model.config.semantic_levels else None
            expected = model.decode_codewords(model.levels[level].quantizer.lookup(ref), level, token)
            assert torch.allclose(model.decode(ref, level), expected, atol=1e-5), (name, level)


def test_the_shipped_model_keeps_its_codes_and_reconstructions():
    codec = hqarf.load_codec()
    model = codec.model
    torch.manual_seed(3)
    x = torch.randn(8, 2, 1024)
    x = x / x.abs().amax((1, 2), keepdim=True)
    with torch.inference_mode():
        for level in range(codec.levels):
            ref, d = reference_encode(model, x, level)
            got = model.encode(x, level)
            assert (got != ref).float().mean() < 1e-3, level
            token = ref[:, -1] if level in model.config.semantic_levels else None
            expected = model.decode_codewords(model.levels[level].quantizer.lookup(ref), level, token)
            assert torch.allclose(model.decode(ref, level), expected, atol=1e-5), level


def test_classifiers_run_with_their_batch_norms_folded_and_follow_new_weights():
    """hqarf.Classifier runs a copy of its network with each convolution's batch norm folded in
    (classifier.folded_copy): the same logits as the network, the network itself untouched; when the
    network's weights change in place (an optimiser step), the copy is made again."""
    import numpy as np
    from gnuradio.hqarf.classifier import Classifier, ClassifierConfig, ModRecNet, folded_copy
    from gnuradio.hqarf.frames import to_iq
    torch.manual_seed(5)
    net = ModRecNet(ClassifierConfig(num_classes=7, stem_width=8, widths=(8, 16), blocks=(1, 1), spectral_width=4,
                                     statistics_width=8, symbol_statistics=True))
    randomise_batch_norms(net)
    net.eval()
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((6, 1024)) + 1j * rng.standard_normal((6, 1024))).astype(np.complex64)
    iq = to_iq(x, "cpu")
    folded = folded_copy(net)
    batch_norms = lambda m: sum(isinstance(k, nn.BatchNorm1d) for k in m.modules())  # noqa: E731
    assert batch_norms(folded) == 1 and batch_norms(net) == 14  # left: the statistics layer's (before a Linear)
    with torch.no_grad():
        torch.testing.assert_close(folded(iq), net(iq), rtol=1e-5, atol=1e-5)
    clf = Classifier(net, {"classes": [str(k) for k in range(7)]})
    torch.testing.assert_close(torch.from_numpy(clf.logits(x)), net(iq).detach(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        net.stem[0].weight.mul_(-1.5)  # in place, as an optimiser step
    with torch.no_grad():
        expected = net(iq)
    torch.testing.assert_close(torch.from_numpy(clf.logits(x)), expected, rtol=1e-5, atol=1e-5)
    other = ModRecNet(net.config).eval()  # new tensors in their place (load_state_dict(assign=True))
    net.load_state_dict(other.state_dict(), assign=True)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(clf.logits(x)), other(iq), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():  # its tensors have no version counter: loads and runs all the same
        assert len(hqarf.load_classifier().classify(x, classes_from="detector")["prediction"]) == 6
    # the shipped networks: the same decisions, logits within float rounding
    shipped = hqarf.load_classifier()
    for model in (shipped, shipped.detector):
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(model.logits(x)), model.net(iq), rtol=1e-4, atol=1e-4)
