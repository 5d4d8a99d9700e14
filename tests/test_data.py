"""Tests of the 6Mod generator (training/data.py) and the torchsig import shim (training/torchsig_compat.py)."""

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

from training import data as D
from training.torchsig_compat import Spectrogram, import_torchsig

N_CLASSES = len(D.CLASSES)


@pytest.fixture(scope="module")
def val_set(tmp_path_factory):
    """12 examples per class, generated once for the read-only checks below."""
    return D.generate("val", 12, cache_dir=tmp_path_factory.mktemp("val"), progress=False, workers=2)


# ---- torchsig_compat ------------------------------------------------------------------------


def test_import_torchsig_leaves_no_fake_torchaudio():
    ts = import_torchsig()
    assert ts.__version__ == "2.2.0"
    assert import_torchsig() is ts
    fake = sys.modules.get("torchaudio")
    assert fake is None or not getattr(fake, "hqarf_stand_in", False)


def test_spectrogram_stand_in_matches_numpy():
    # the call torchsig makes in compute_spectrogram
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(1000) + 1j * rng.standard_normal(1000)).astype(np.complex64)
    spec = Spectrogram(
        n_fft=128, window_fn=torch.blackman_window, win_length=128, hop_length=100, center=False, onesided=False, power=2
    )(torch.from_numpy(x)).numpy()
    w = torch.blackman_window(128).numpy()
    frames = np.stack([x[s : s + 128] * w for s in range(0, 1000 - 128 + 1, 100)], axis=1)
    ref = np.abs(np.fft.fft(frames, axis=0)) ** 2
    assert spec.shape == ref.shape == (128, 9)
    np.testing.assert_allclose(spec, ref, rtol=1e-4, atol=1e-3)


# ---- classes, config ------------------------------------------------------------------------


def test_classes_and_8pam_registration():
    assert D.CLASSES == ("4ask", "8pam", "16psk", "32qam_cross", "2fsk", "ofdm-256")
    from torchsig.signals.builders.constellation_maps import all_symbol_maps  # pylint: disable=import-outside-toplevel

    levels = all_symbol_maps["8pam"]
    D._register_8pam()  # idempotent  # pylint: disable=protected-access
    assert all_symbol_maps["8pam"] is levels
    np.testing.assert_array_equal(levels, np.linspace(0, 1, 8) + 0j)


def test_config_frozen_and_keyed():
    cfg = D.DataConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.snr_db = 10.0
    assert cfg.frame_len == 1024 and cfg.classes == D.CLASSES and cfg.snr_db >= 80
    json.dumps(cfg.to_dict())
    assert cfg.key() == D.DataConfig().key()
    assert cfg.key() != dataclasses.replace(cfg, snr_db=90.0).key()
    assert len(set(D.SPLIT_SEEDS.values())) == 3


# ---- shapes, labels, normalisation ----------------------------------------------------------


def test_shapes_labels_normalisation(val_set):
    x, y = val_set
    assert x.shape == (12 * N_CLASSES, 1024) and x.dtype == np.complex64
    assert y.shape == (12 * N_CLASSES,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.arange(len(y)) % N_CLASSES)  # balanced, interleaved
    np.testing.assert_allclose(np.abs(x).max(axis=1), 1.0, atol=1e-6)
    assert np.isfinite(x).all()


def test_signal_fills_the_window(val_set):
    x, _ = val_set
    p = np.abs(x) ** 2
    quarters = p.reshape(len(x), 4, -1).mean(axis=2)
    assert (quarters > 0.25 * p.mean(axis=1, keepdims=True)).all()


# ---- each class looks like its modulation -----------------------------------------------------


def _features(x):
    p = np.mean(np.abs(x) ** 2, axis=1)
    return {
        "imag_frac": np.mean(x.imag**2, axis=1) / p,  # 0 for a real signal (no phase offset is applied)
        "mean_real": x.real.mean(axis=1) / np.sqrt(p),  # DC: unipolar 8pam levels
        "env_spread": np.abs(x).std(axis=1) / np.abs(x).mean(axis=1),  # 0 for constant envelope
        "m4": np.mean(np.abs(x) ** 4, axis=1) / p**2,  # 2 for complex Gaussian, 1 for constant envelope
    }


def test_each_class_looks_like_its_modulation(val_set):
    x, y = val_set
    f = {c: {k: v[y == i] for k, v in _features(x).items()} for i, c in enumerate(D.CLASSES)}
    # 4ask: real, symmetric levels -> no DC
    assert (f["4ask"]["imag_frac"] < 1e-6).all()
    assert (np.abs(f["4ask"]["mean_real"]) < 0.3).all()
    # 8pam: real, levels linspace(0, 1, 8) -> large DC (mean/rms of the levels is 0.84)
    assert (f["8pam"]["imag_frac"] < 1e-6).all()
    assert (f["8pam"]["mean_real"] > 0.6).all()
    # the other four are complex
    for c in ("16psk", "32qam_cross", "2fsk", "ofdm-256"):
        assert (f[c]["imag_frac"] > 0.3).all(), c
        assert (np.abs(f[c]["mean_real"]) < 0.3).all(), c
    # 2fsk: constant envelope
    assert (f["2fsk"]["env_spread"] < 0.05).all()
    for c in ("4ask", "8pam", "16psk", "32qam_cross", "ofdm-256"):
        assert (f[c]["env_spread"] > 0.1).all(), c
    # 16psk: nearly constant envelope but for pulse shaping; 32qam_cross: several rings; ofdm: Gaussian
    assert np.median(f["16psk"]["m4"]) < 1.25
    assert 1.3 < np.median(f["32qam_cross"]["m4"]) < 1.7
    assert 1.8 < np.median(f["ofdm-256"]["m4"]) < 2.2


# ---- reproducibility, splits ----------------------------------------------------------------


def test_reproducible_across_counts_and_workers(tmp_path, val_set):
    x_val, y_val = val_set
    x1, y1 = D.generate("val", 3, cache_dir=tmp_path / "a", progress=False, workers=1)
    x2, y2 = D.generate("val", 5, cache_dir=tmp_path / "b", progress=False, workers=2)
    np.testing.assert_array_equal(x1, x2[: len(x1)])
    np.testing.assert_array_equal(y1, y2[: len(y1)])
    np.testing.assert_array_equal(x2, x_val[: len(x2)])
    # one example on its own, after generating others in this process
    xi, yi = D.example("val", 13)
    np.testing.assert_array_equal(xi, x_val[13])
    assert yi == y_val[13]


def test_splits_disjoint(tmp_path, val_set):
    x_val = val_set[0][:24]
    x_train, _ = D.generate("train", 4, cache_dir=tmp_path, progress=False, workers=2)
    x_test, _ = D.generate("test", 4, cache_dir=tmp_path, progress=False, workers=2)
    rows = [r.tobytes() for r in np.concatenate([x_train, x_val, x_test])]
    assert len(set(rows)) == len(rows)
    with pytest.raises(KeyError):
        D.generate("bogus", 1, cache_dir=tmp_path, progress=False)


# ---- cache ----------------------------------------------------------------------------------


def test_cache_reused_and_prefix_sliced(tmp_path, monkeypatch):
    x, y = D.generate("test", 3, cache_dir=tmp_path, progress=False, workers=1)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and D.DataConfig().key() in files[0].name

    def boom(*args, **kwargs):
        raise AssertionError("generated although cached")

    monkeypatch.setattr(D, "example", boom)
    x2, y2 = D.generate("test", 3, cache_dir=tmp_path, progress=False, workers=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, y3 = D.generate("test", 2, cache_dir=tmp_path, progress=False, workers=1)  # prefix of the n=3 file
    np.testing.assert_array_equal(x3, x[: 2 * N_CLASSES])
    np.testing.assert_array_equal(y3, y[: 2 * N_CLASSES])
    with pytest.raises(AssertionError):  # a different config is a different cache entry
        D.generate("test", 3, config=dataclasses.replace(D.DataConfig(), snr_db=90.0), cache_dir=tmp_path, progress=False, workers=1)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HQARF_CACHE", str(tmp_path))
    assert D.default_cache_dir() == tmp_path
    monkeypatch.delenv("HQARF_CACHE")
    assert D.default_cache_dir().parts[-2:] == (".cache", "data")


# ---- AWGN -----------------------------------------------------------------------------------


def _measured_esn0_db(x, noisy):
    return 10 * np.log10(np.mean(np.abs(x) ** 2) / np.mean(np.abs(noisy - x) ** 2))


def test_awgn_level_and_determinism(val_set):
    x, _ = val_set  # 72 x 1024 samples
    for esn0 in (-5.0, 10.0, 30.0):
        noisy = D.add_awgn(x, esn0, 1)
        assert noisy.dtype == np.complex64 and noisy.shape == x.shape
        # per example, Es is that example's power: check the ratio per example, averaged
        es = np.mean(np.abs(x) ** 2, axis=1)
        n0 = np.mean(np.abs(noisy - x) ** 2, axis=1)
        assert abs(10 * np.log10(np.mean(n0 / es)) + esn0) < 0.3
        assert abs(_measured_esn0_db(x, noisy) - esn0) < 0.3
    np.testing.assert_array_equal(D.add_awgn(x, 10.0, 7), D.add_awgn(x, 10.0, 7))
    assert not np.array_equal(D.add_awgn(x, 10.0, 7), D.add_awgn(x, 10.0, 8))
    rng = np.random.default_rng(7)
    np.testing.assert_array_equal(D.add_awgn(x, 10.0, rng), D.add_awgn(x, 10.0, 7))


def test_awgn_per_example_values(val_set):
    x, _ = val_set
    esn0 = np.where(np.arange(len(x)) % 2 == 0, 0.0, 20.0)
    noisy = D.add_awgn(x, esn0, 3)
    for value in (0.0, 20.0):
        sel = esn0 == value
        ratio = np.mean(np.abs(noisy[sel] - x[sel]) ** 2, axis=1) / np.mean(np.abs(x[sel]) ** 2, axis=1)
        assert abs(10 * np.log10(ratio.mean()) + value) < 0.3
    one = D.add_awgn(x[0], 5.0, 0)  # a single frame
    assert one.shape == (1024,)
    with pytest.raises(ValueError):
        D.add_awgn(x, np.zeros(3), 0)
