# SPDX-License-Identifier: GPL-3.0-or-later
"""training/adversarial.py: FGSM's step on a classifier whose gradient is known, the band-limited
perturbation's spectrum, the budgets, the adaptive attacker's forward pass, and a smoke run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training import adversarial as A

ROOT = Path(__file__).resolve().parents[1]
L = 1024


class Linear(torch.nn.Module):
    """logits = W vec(iq) + b: the input gradient of the cross-entropy is W^T (softmax - onehot)."""

    def __init__(self, classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(classes, 2 * L, generator=g, dtype=torch.float64) / 30
        self.b = torch.randn(classes, generator=g, dtype=torch.float64)

    def forward(self, iq):
        return iq.flatten(1) @ self.w.t() + self.b


def frames(n, seed=0, band=None):
    """(n, 2, L) float64 frames at max |x| = 1; with band = B, complex noise confined to |f| < B."""
    g = torch.Generator().manual_seed(seed)
    z = torch.complex(torch.randn(n, L, generator=g, dtype=torch.float64),
                      torch.randn(n, L, generator=g, dtype=torch.float64))
    if band is not None:
        f = torch.fft.fftfreq(L, dtype=torch.float64)
        z = torch.fft.ifft(torch.fft.fft(z) * (f.abs() < band))
    z = z / z.abs().amax(-1, keepdim=True)
    return torch.stack([z.real, z.imag], 1)


def test_fgsm_on_linear_classifier_is_the_sign_of_the_known_gradient_at_the_requested_power():
    net, x = Linear(), frames(8)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for ratio_db in (-30.0, -10.0):
        budget = A.Budget(x, ratio_db, "none")
        d = A.fgsm(net, x, y, budget)
        # the gradient by hand
        p = torch.softmax(net(x), -1) - torch.nn.functional.one_hot(y, 3).double()
        g = (p @ net.w).reshape(x.shape)
        eps = torch.sqrt(10 ** (ratio_db / 10) * x.pow(2).sum(1).mean(-1) / 2)[:, None, None]
        assert torch.allclose(d, eps * g.sign(), rtol=1e-12, atol=0)
        assert (g.sign() != x.sign()).double().mean() > 0.3          # not some other sign vector
        psr = 10 * torch.log10(A.frame_power(d) / A.frame_power(x))
        assert torch.allclose(psr, torch.full_like(psr, ratio_db), atol=1e-9)
        loss = torch.nn.functional.cross_entropy
        assert loss(net(x + d), y) > loss(net(x), y)


@pytest.mark.parametrize("constraint", ["none", "band", "l2"])
def test_pgd_stays_within_the_budget_and_raises_the_loss(constraint):
    net, x = Linear(seed=1), frames(6, seed=1, band=0.2)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    budget = A.Budget(x, -15.0, constraint)
    d = A.pgd(net, x, y, budget, steps=5, generator=torch.Generator().manual_seed(0))
    if constraint == "none":
        assert torch.all(d.abs() <= budget.eps * (1 + 1e-12))
    assert torch.all(A.frame_power(d) <= 10 ** -1.5 * A.frame_power(x) * (1 + 1e-9))
    per_frame = lambda z: torch.nn.functional.cross_entropy(net(z), y, reduction="none")  # noqa: E731
    assert torch.all(per_frame(x + d) > per_frame(x))


def test_band_limited_perturbation_has_no_energy_outside_the_band():
    x = frames(6, seed=2, band=0.15)                  # occupies |f| < 0.15 of the sample rate
    net = Linear(seed=2)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mask = A.occupied_band(x)
    f = torch.fft.fftfreq(L, dtype=torch.float64).abs()
    assert torch.all(f[mask.any(0)] < 0.15 + 1.5 / L)                 # inside the signal's band
    assert torch.all(mask.sum(-1) > 0.9 * 2 * 0.15 * L)               # and most of it
    budget = A.Budget(x, -20.0, "band")
    for d in (A.fgsm(net, x, y, budget),
              A.pgd(net, x, y, budget, steps=4, generator=torch.Generator().manual_seed(0))):
        assert torch.all(A.out_of_band_fraction(d, mask) < 1e-12)
        spectrum = torch.fft.fft(torch.complex(d[:, 0], d[:, 1])).abs().pow(2)
        assert torch.all(spectrum[:, f >= 0.15 + 1.5 / L].sum(-1) < 1e-12 * spectrum.sum(-1))
        assert torch.all(A.frame_power(d) <= 0.01 * A.frame_power(x) * (1 + 1e-9))
    d = A.fgsm(net, x, y, budget)
    assert torch.allclose(A.frame_power(d), 0.01 * A.frame_power(x), rtol=1e-9)   # FGM spends all of it
    # the unconstrained attack does put energy outside the band (what the measure would catch)
    assert torch.all(A.out_of_band_fraction(A.fgsm(net, x, y, A.Budget(x, -20.0, "none")), mask) > 0.3)


@pytest.mark.parametrize("direct_levels", [(), (2, 4)])
def test_adaptive_forward_is_the_codec_pipeline_and_has_a_gradient(tiny_model_dir, tmp_path, rng, direct_levels):
    from conftest import make_codec, random_frames
    codec_dir = make_codec(tmp_path, direct_levels=direct_levels) if direct_levels else tiny_model_dir
    codec, clf = A.hqarf.load_codec(codec_dir), A.hqarf.load_classifier(tiny_model_dir)
    x = random_frames(rng, 4, scale=3.0)
    for level in range(codec.levels):
        forward = A.pipeline_forward(codec, clf.net, level)
        iq = A.to_iq(x, "cpu").requires_grad_(True)
        logits = forward(iq)
        want = clf.logits(codec.decode(codec.encode(x, level), level))
        np.testing.assert_allclose(logits.detach().numpy(), want, rtol=1e-4, atol=1e-4)
        (g,) = torch.autograd.grad(logits[:, 0].sum(), iq)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_smoke_run_writes_json_table_and_plot(tiny_model_dir, tmp_path):
    env = {**os.environ, "HQARF_CACHE": os.environ.get("HQARF_TEST_CACHE", str(ROOT / ".cache" / "test-data"))}
    out = tmp_path / "adv"
    cmd = [sys.executable, str(ROOT / "training" / "adversarial.py"), "--model", str(tiny_model_dir),
           "--frames", "12", "--ratios", "-20,-10", "--pgd-steps", "2", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 12 and report["ratios_db"] == [-20.0, -10.0] and report["levels"] == 5
    rows = report["results"]
    keys = {(r["constraint"], r["attack"], r["mode"], r["ratio_db"]) for r in rows}
    assert keys == {(c, a, m, r) for c in ("none", "band") for a in ("fgsm", "pgd")
                    for m in ("non-adaptive", "adaptive") for r in (-20.0, -10.0)} | \
        {(c, "any", "worst case", r) for c in ("none", "band") for r in (-20.0, -10.0)}
    for r in rows:
        assert len(r["levels"]) == 5 and all(0.0 <= a <= 1.0 for a in r["levels"])
        if r["mode"] != "worst case":
            assert r["psr_db_max"] <= r["ratio_db"] + 1e-3
        if r["constraint"] == "band" and r["mode"] != "worst case":
            assert r["out_of_band_max"] < 1e-9
    # the worst case is no better than any single attack at the same constraint and PSR
    for w in (r for r in rows if r["mode"] == "worst case"):
        same = [r for r in rows if (r["constraint"], r["ratio_db"]) == (w["constraint"], w["ratio_db"])]
        assert all(w["levels"][lv] <= r["levels"][lv] for r in same for lv in range(5))
    assert (out / "accuracy_vs_psr.png").stat().st_size > 5000
    assert "| none | pgd | adaptive | -20 |" in (out / "summary.md").read_text()
    table = subprocess.run([sys.executable, str(ROOT / "training" / "adversarial.py"), "table",
                            str(out / "report.json")], capture_output=True, text=True, timeout=600)
    assert table.returncode == 0 and table.stdout.count("\n") == 2 + 1 + len(rows)
