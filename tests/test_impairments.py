# SPDX-License-Identifier: GPL-3.0-or-later
"""Receiver impairments (training/impairments.py) and the salient signal properties (training/signal_properties.py),
on hand-made signals with known answers."""
import dataclasses

import numpy as np
import pytest
import torch

from training import data as D
from training import signal_properties as SP
from training import stages


def tone(n=1024, f=0.0):
    return np.exp(2j * np.pi * f * np.arange(n)).astype(np.complex64)


def qpsk(n=1024, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 2, n) * 2 - 1) + 1j * (rng.integers(0, 2, n) * 2 - 1)).astype(np.complex64) / np.sqrt(2)


def test_phase_rotation_keeps_the_envelope():
    x = qpsk()
    y = D.frequency_shift(x, 0.0, phase=1.234)
    np.testing.assert_allclose(np.abs(y), np.abs(x), rtol=1e-6)
    np.testing.assert_allclose(np.angle(y[0] / x[0]), 1.234, atol=1e-6)


def test_frequency_offset_moves_the_spectrum_peak_by_the_expected_bin():
    n = 1024
    x = tone(n, 0.0)
    for offset in (0.01, -0.0078125, 0.25):
        y = D.frequency_shift(x, offset)
        peak = np.fft.fftfreq(n)[np.argmax(np.abs(np.fft.fft(y)))]
        assert abs(peak - offset) <= 1 / n, (offset, peak)


def test_fractional_delay_of_a_slow_tone_is_a_phase_step():
    x = tone(1024, 0.01)
    y = D.fractional_delay(x, 0.5)
    middle = slice(100, 900)  # away from the zero edges of the FIR
    np.testing.assert_allclose(np.angle(y[middle] / x[middle]), -2 * np.pi * 0.01 * 0.5, atol=2e-3)


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_measured_snr_of_an_impaired_frame_is_the_requested_one(snr):
    imp = dataclasses.replace(D.Impairments.none(), snr_db_min=snr, snr_db_max=snr, clean_fraction=0.0)
    x = qpsk(1 << 16)
    rng = np.random.default_rng(5)
    y, reported = D.impair_frame(x, rng, imp)
    assert reported == snr
    # undo the max-normalisation by least squares, then compare signal and noise powers
    scale = np.vdot(x, y) / np.vdot(x, x)
    noise = y - scale * x
    measured = 10 * np.log10(np.mean(np.abs(scale * x) ** 2) / np.mean(np.abs(noise) ** 2))
    assert abs(measured - snr) < 0.5, measured
    assert np.isclose(np.abs(y).max(), 1.0)


def test_impairments_are_a_pure_function_of_split_and_index():
    x = np.stack([qpsk(1024, seed=i) for i in range(6)])
    imp = D.Impairments(multipath_probability=0.5)
    a, snr_a = D.impair(x, "train", imp)
    b, snr_b = D.impair(x[3:], "train", imp, first_index=3)  # the same frames, asked for alone
    np.testing.assert_array_equal(a[3:], b)
    np.testing.assert_array_equal(snr_a[3:], snr_b)
    c, _ = D.impair(x, "val", imp)  # another split draws other impairments
    assert not np.allclose(a, c)
    clean, snr = D.impair(x, "train", D.Impairments.none())
    np.testing.assert_allclose(clean, x / np.abs(x).max(-1, keepdims=True), rtol=1e-6)
    assert np.all(np.isinf(snr)) and not D.Impairments.none().active and imp.active


def test_switching_one_impairment_off_keeps_the_others_draws():
    x = qpsk()[None]
    with_phase = D.impair(x, "test", dataclasses.replace(D.Impairments(), timing_offset=False, clean_fraction=1.0))[0]
    no_phase = D.impair(x, "test", dataclasses.replace(D.Impairments(), timing_offset=False, clean_fraction=1.0,
                                                      random_phase=False))[0]
    ratio = with_phase[0] / no_phase[0]
    np.testing.assert_allclose(np.abs(ratio), 1.0, rtol=1e-4)  # only a constant rotation apart
    np.testing.assert_allclose(np.angle(ratio / ratio[0]), 0.0, atol=1e-4)


# ---- salient signal properties --------------------------------------------------------------------


def test_cumulants_of_known_constellations():
    rng = np.random.default_rng(1)
    bpsk = (rng.integers(0, 2, 1 << 15) * 2 - 1).astype(np.complex64)[None]
    gauss = (rng.standard_normal((1, 1 << 15)) + 1j * rng.standard_normal((1, 1 << 15))).astype(np.complex64)
    c40, c42 = SP.cumulants(bpsk)
    assert np.isclose(c40[0], 2.0, atol=0.05) and np.isclose(c42[0], -2.0, atol=0.05)
    c40, c42 = SP.cumulants(qpsk(1 << 15)[None])
    assert np.isclose(c40[0], 1.0, atol=0.05) and np.isclose(c42[0], -1.0, atol=0.05)
    c40, c42 = SP.cumulants(gauss)
    assert abs(c40[0]) < 0.05 and abs(c42[0]) < 0.05


def test_non_circularity_tells_a_real_signal_at_any_phase_from_a_circular_one():
    rng = np.random.default_rng(3)
    ask = (rng.integers(0, 4, (1, 1024)) * 2 - 3).astype(np.complex64)
    frames = np.concatenate([ask, ask * np.exp(1j * 1.1), qpsk()[None], tone(1024, 0.1)[None]]).astype(np.complex64)
    want = [1.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(SP.non_circularity(frames), want, atol=0.07)
    iq = torch.as_tensor(np.stack([frames.real, frames.imag], 1))
    np.testing.assert_allclose(stages.circularity(iq).numpy(), want, atol=0.07)


def test_peak_non_circularity_ignores_phase_and_frequency_offset_and_axis_loss_sees_a_small_leak():
    rng = np.random.default_rng(4)
    n = np.arange(1024)
    ask = (rng.integers(0, 4, 1024) * 2 - 3).astype(np.complex64)
    # a real signal under any carrier phase and an offset within +-1.25 % fs, then qpsk and a tone
    frames = [ask * np.exp(1j * (phase + 2 * np.pi * offset * n)) for phase, offset in
              ((0.0, 0.0), (1.1, 0.003), (-2.0, -0.0101), (0.4, 0.0125))] + [qpsk(), tone(1024, 0.1)]
    iq = torch.as_tensor(np.stack([np.real(frames), np.imag(frames)], 1), dtype=torch.float32)
    p = stages.peak_non_circularity(iq).numpy()
    assert (p[:4] > 0.97).all() and (p[4:] < 0.15).all(), p
    np.testing.assert_allclose(SP.off_axis_share(np.asarray(frames)), (1 - p) / 2, atol=1e-5)  # the report's twin
    assert stages.circularity(iq)[2] < 0.2  # the plain one is blind to a real signal with an offset
    assert stages.axis_loss(iq, iq).item() == pytest.approx(0.0, abs=1e-6)
    # 2 % of the power off the axis (17 dB below it): 1 - p = 0.04, a loss of about log((0.04 + 0.02) / 0.02)
    leak = iq[:1].clone()
    leak[:, 1] = torch.as_tensor(rng.standard_normal(1024), dtype=torch.float32) * float(np.sqrt(5 * 0.02))
    assert 0.4 < stages.axis_loss(leak, iq[:1]).item() < 1.4
    # a floor 30 dB down instead of 20 makes the same leak cost about log((0.04 + 0.002) / 0.002) = 3
    assert 2.3 < stages.axis_loss(leak, iq[:1], floor=0.002).item() < 3.7


def test_envelope_spread_and_occupied_bandwidth():
    assert SP.envelope_spread(tone(1024, 0.1)[None])[0] < 1e-6  # constant envelope
    assert SP.envelope_spread(np.array([[1, 0.5, 1, 0.5]], np.complex64))[0] > 0.2
    assert SP.occupied_bandwidth(tone(1024, 0.125)[None])[0] <= 4 / 256  # a tone: a few bins
    rng = np.random.default_rng(2)
    white = (rng.standard_normal((1, 8192)) + 1j * rng.standard_normal((1, 8192))).astype(np.complex64)
    assert SP.occupied_bandwidth(white)[0] > 0.95  # white noise fills the band


def band_noise(width, n=1024, seed=0):
    """Complex noise low-passed to `width` of the band (a brick wall in the DFT)."""
    rng = np.random.default_rng(seed)
    spec = np.fft.fft(rng.standard_normal(n) + 1j * rng.standard_normal(n))
    spec[np.abs(np.fft.fftfreq(n)) > width / 2] = 0
    return np.fft.ifft(spec).astype(np.complex64)


def test_bandwidth_tracking_reads_whether_a_reconstruction_keeps_the_originals_bandwidth():
    widths = np.linspace(0.1, 0.9, 8)
    x = np.stack([band_noise(w, seed=i) for i, w in enumerate(widths)])
    bw = SP.occupied_bandwidth(x, 0.9)
    assert bw[0] < 0.1 and 0.65 < bw[-1] < 0.9  # within the brick
    assert SP.bandwidth_tracking(x, x * 0.5) == pytest.approx(1.0)  # same bandwidths
    assert SP.bandwidth_tracking(x, x[::-1]) == pytest.approx(-1.0)  # wide where the original is narrow
    one = np.stack([band_noise(0.4, seed=i) for i in range(8)])
    assert abs(SP.bandwidth_tracking(x, one)) < 0.5  # one bandwidth for all: nothing of the originals'
    assert SP.bandwidth_tracking(x, np.repeat(one[:1], 8, 0)) == 0.0  # a single bandwidth: 0, not nan


def test_spectral_distance_and_snr_of_a_copy():
    x = qpsk()[None]
    assert SP.log_spectral_distance(x, x)[0] < 1e-6
    assert SP.snr_db(x, x * 1.1)[0] == pytest.approx(20.0, abs=1e-3)


def test_noise_outliers_are_reproducible_white_or_band_limited():
    frames, kinds = D.noise_frames("train", 6)
    again, _ = D.noise_frames("train", 6)
    np.testing.assert_array_equal(frames, again)
    assert not np.array_equal(frames, D.noise_frames("val", 6)[0])
    assert kinds[:2] == ["white-noise", "band-noise"]
    np.testing.assert_allclose(np.abs(frames).max(-1), 1.0, rtol=1e-6)
    power = np.abs(np.fft.fft(frames, axis=-1)) ** 2
    occupied = (power > 1e-6 * power.max(-1, keepdims=True)).mean(-1)
    for kind, share in zip(kinds, occupied):
        if kind == "white-noise":
            assert share > 0.95, share      # every bin
        else:
            assert 0.04 < share < 0.82, share  # 5-80 % of the band, nothing outside


def _spectral(x):
    from gnuradio.hqarf.classifier import spectral_features
    from gnuradio.hqarf.frames import to_iq
    return spectral_features(to_iq(np.asarray(x)[None], "cpu"))[0].numpy()


def test_spectral_features_show_an_m_psk_line_at_the_m_th_power_only():
    """The unknown detector's offset-invariant branch (hqarf.classifier.spectral_features): z**k of M-PSK
    is a tone for k a multiple of M, noise-like below it; a carrier offset of f moves the k-th line to k f."""
    rng = np.random.default_rng(3)
    n, f = 1024, 5 / 1024
    psk8 = np.exp(2j * np.pi * (rng.integers(0, 8, n) / 8 + f * np.arange(n)) + 0.7j).astype(np.complex64)
    s = _spectral(psk8)
    peaks = s[:5].max(-1)  # k = 1, 2, 4, 8, 16
    assert peaks[3] > 6.5 and peaks[4] > 6.5  # log1p(1024): a pure tone
    assert peaks[:3].max() < 3.0              # noise-like: log1p of a few times the mean
    assert s[3].argmax() == 8 * 5 and s[4].argmax() == 16 * 5


def test_spectral_features_ignore_carrier_phase_and_shift_with_frequency_offset():
    x = qpsk()
    s = _spectral(x)
    np.testing.assert_allclose(_spectral(x * np.exp(1j * 2.1)), s, atol=1e-4)
    shifted = _spectral(D.frequency_shift(x, 3 / 1024, phase=0.4))
    for c, k in enumerate((1, 2, 4, 8, 16)):  # an offset of 3 bins moves the power of z**k by 3 k bins
        np.testing.assert_allclose(shifted[c], np.roll(s[c], 3 * k), atol=1e-3)
    np.testing.assert_allclose(shifted[5], s[5], atol=1e-4)  # |autocorrelation| is offset-invariant


def test_spectral_features_see_a_repeated_block_as_an_autocorrelation_peak():
    """An OFDM cyclic prefix repeats the last samples of a symbol: its lag is the FFT size."""
    rng = np.random.default_rng(4)
    block = (rng.normal(size=256) + 1j * rng.normal(size=256)).astype(np.complex64)
    x = np.tile(block, 4)
    r = _spectral(x)[5]
    assert r[0] == pytest.approx(1.0, abs=1e-5)
    assert r[256] > 0.7 and r[1:200].max() < 0.3


def _statistics(x):
    from gnuradio.hqarf.classifier import statistic_features
    from gnuradio.hqarf.frames import to_iq
    return statistic_features(to_iq(np.asarray(x)[None], "cpu"))[0].numpy()


def test_statistic_features_know_a_carrier_an_m_psk_and_ignore_phase_and_offset():
    """The detector's per-frame statistics (hqarf.classifier.statistic_features): amplitude histogram,
    |mean(u**k)| of the phase steps u at lags 1-4, spectral line heights."""
    from gnuradio.hqarf.classifier import AMPLITUDE_BINS, PHASE_LAGS, SPECTRAL_POWERS, STATISTICS
    n = 1024
    tone = np.exp(2j * np.pi * 0.1 * np.arange(n)).astype(np.complex64)
    s = _statistics(tone)
    assert s.shape == (STATISTICS,)
    hist = s[:AMPLITUDE_BINS]
    assert hist.sum() == pytest.approx(1.0, abs=1e-6)
    assert hist[int(1.0 / (3.0 / AMPLITUDE_BINS))] == pytest.approx(1.0)  # |z| = rms = 1: one bin
    moments = s[AMPLITUDE_BINS:AMPLITUDE_BINS + len(PHASE_LAGS) * len(SPECTRAL_POWERS)]
    np.testing.assert_allclose(moments, 1.0, atol=1e-4)  # a tone's phase steps are all equal
    # 8-PSK at one sample per symbol: u is 8-PSK too, so its 8th and 16th powers are 1, lower ones ~0
    rng = np.random.default_rng(5)
    psk8 = np.exp(2j * np.pi * (rng.integers(0, 8, n) / 8)).astype(np.complex64)
    m = _statistics(psk8)[AMPLITUDE_BINS:AMPLITUDE_BINS + len(SPECTRAL_POWERS)]  # lag 1, k = 1 .. 16
    assert m[3] == pytest.approx(1.0, abs=1e-4) and m[4] == pytest.approx(1.0, abs=1e-4) and m[:3].max() < 0.15
    # carrier phase and a frequency offset leave histogram and phase-step moments alone
    x = D.frequency_shift(qpsk(), 7.3 / n, phase=1.9)
    a, b = _statistics(qpsk()), _statistics(x)
    k = AMPLITUDE_BINS + len(PHASE_LAGS) * len(SPECTRAL_POWERS)
    np.testing.assert_allclose(a[:k], b[:k], atol=2e-3)


def test_carrier_outliers_are_reproducible_tones_and_spurs():
    frames, kinds = D.carrier_frames("train", 9)
    again, _ = D.carrier_frames("train", 9)
    np.testing.assert_array_equal(frames, again)
    assert not np.array_equal(frames, D.carrier_frames("val", 9)[0])
    assert kinds == ["carrier", "carrier", "two-carriers"] * 3
    np.testing.assert_allclose(np.abs(frames).max(-1), 1.0, rtol=1e-6)
    n = frames.shape[-1]
    power = np.abs(np.fft.fft(frames * np.hanning(n), axis=-1)) ** 2
    for kind, p in zip(kinds, power):
        top = np.sort(p)[::-1]
        if kind == "carrier":  # one line (a window's main lobe: 3 bins) holds all the power
            assert top[:3].sum() > 0.99 * p.sum()
            np.testing.assert_allclose(np.abs(frames[kinds.index(kind)]), 1.0, rtol=1e-5)  # constant envelope
        else:  # a second, weaker line: 3-20 dB below the first
            peaks = [i for i in range(n) if p[i] >= p[i - 1] and p[i] >= p[(i + 1) % n] and p[i] > 1e-3 * top[0]]
            heights = sorted((p[i] for i in peaks), reverse=True)
            assert len(heights) >= 2
            assert 2.0 < 10 * np.log10(heights[0] / heights[1]) < 21.0


def _shaped(symbols: np.ndarray, sps: float, n: int = 1024, rolloff: float = 0.3) -> np.ndarray:
    """Symbols at `sps` samples per symbol (fractional allowed), root-raised-cosine pulses: the spectrum of
    an impulse at each symbol instant times the pulse's spectrum (a circular frame)."""
    k = int(n / sps)
    f = np.fft.fftfreq(n)
    impulses = np.exp(-2j * np.pi * np.outer(f, np.arange(k) * sps)) @ symbols[:k]
    g = np.abs(f) * sps
    edge = np.clip((g - (1 - rolloff) / 2) / rolloff, 0, 1)
    frame = np.fft.ifft(impulses * np.cos(0.5 * np.pi * edge) * (g <= (1 + rolloff) / 2))
    return (frame / np.abs(frame).max()).astype(np.complex64)


def _symbol_stats_batch(x):
    from gnuradio.hqarf.frames import to_iq
    from gnuradio.hqarf.signal_features import symbol_features
    return symbol_features(to_iq(np.asarray(x), "cpu")).numpy()


def _symbol_stats(x):
    return _symbol_stats_batch(np.asarray(x)[None])[0]


def test_symbol_features_tell_16psk_from_32psk_and_see_apsk_rings():
    """Statistics at the symbol instants (hqarf.signal_features.symbol_features): the symbol rate found,
    |mean(v**M)| of the symbol-to-symbol phase steps large at M = 16 for 16PSK and only at M = 32 for 32PSK,
    APSK's two rings in the amplitude spread, and none of it moved by a carrier phase or a frequency offset."""
    from gnuradio.hqarf.signal_features import SYMBOL_BINS, SYMBOL_POWERS, SYMBOL_STATISTICS
    rng = np.random.default_rng(11)
    sym = rng.integers(0, 32, 600)
    v16, v32 = 3 + SYMBOL_BINS + SYMBOL_POWERS.index(16), 3 + SYMBOL_BINS + SYMBOL_POWERS.index(32)
    for sps in (2.6, 3.4):
        psk16 = _shaped(np.exp(2j * np.pi * (sym % 16) / 16), sps)
        psk32 = _shaped(np.exp(2j * np.pi * sym / 32), sps)
        a, b = _symbol_stats(psk16), _symbol_stats(psk32)
        assert a.shape == (SYMBOL_STATISTICS,)
        assert a[1] == pytest.approx(1 / sps, rel=0.01) and b[1] == pytest.approx(1 / sps, rel=0.01)
        assert a[v16] > 0.8 and a[v32] > 0.8
        assert b[v16] < 0.25 and b[v32] > 0.6
        assert a[2] < 0.1  # one ring: the symbols' amplitude spread is small
        # carrier phase and a 0.7 % offset: the same statistics
        c = _symbol_stats(D.frequency_shift(psk16, 0.007, phase=2.3))
        np.testing.assert_allclose(c[[1, 2, v16, v32]], a[[1, 2, v16, v32]], atol=0.05)
    # 4+12 APSK (rings at radii 1 and 2.6): a spread PSK never has, and a histogram with two modes
    ring = np.where(sym % 16 < 4, 1.0, 2.6)
    angle = np.where(sym % 16 < 4, np.pi / 4 + (sym % 4) * np.pi / 2, np.pi / 12 + (sym % 12) * np.pi / 6)
    apsk = _symbol_stats(_shaped(ring * np.exp(1j * angle), 3.0))
    assert apsk[2] > 0.25
    hist = apsk[3:3 + SYMBOL_BINS]
    assert hist.sum() == pytest.approx(1.0, abs=1e-5)
    assert hist[:SYMBOL_BINS // 2].sum() > 0.1 and hist[SYMBOL_BINS // 2:].sum() > 0.5


def test_a_frames_symbol_features_do_not_depend_on_its_batch():
    """A slow frame's symbol statistics are the same alone and beside a fast one (whose instants run further),
    and the fast one's the same beside the slow one: nothing in symbol_features may depend on the batch (session 33
    sized its instants by the batch's fastest rate, which a traced detector then kept from its tracing batch)."""
    rng = np.random.default_rng(12)
    slow = _shaped(np.exp(2j * np.pi * rng.integers(0, 16, 600) / 16), 4.4)
    fast = _shaped(np.exp(2j * np.pi * rng.integers(0, 8, 600) / 8), 2.1)
    together = _symbol_stats_batch(np.stack([slow, fast]))
    assert together[0, 1] == pytest.approx(1 / 4.4, rel=0.01) and together[1, 1] == pytest.approx(1 / 2.1, rel=0.01)
    np.testing.assert_allclose(together[0], _symbol_stats(slow), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(together[1], _symbol_stats(fast), rtol=1e-5, atol=1e-6)


def test_symbol_features_are_finite_on_silence_and_on_a_pure_carrier():
    """A constant envelope (silence, an exact carrier) has no symbol-rate line: its height is 1 (feature 0),
    not log 0, so the detector reading these statistics gives a score, not NaN."""
    n = 1024
    for frame in (np.zeros(n), np.exp(2j * np.pi * 0.1 * np.arange(n)), np.ones(n)):
        stats = _symbol_stats(frame.astype(np.complex64))
        assert np.isfinite(stats).all(), stats
        assert stats[0] == pytest.approx(0.0, abs=1e-6)
    # a frame with a line keeps its height
    rng = np.random.default_rng(3)
    assert _symbol_stats(_shaped(np.exp(2j * np.pi * rng.integers(0, 16, 600) / 16), 3.0))[0] > 1.0


def test_thinned_critic_drops_out_at_the_rate_asked_and_is_restored():
    """stages.thinned(net, p): the critic's dropout (modules and attention) at p in training mode for the
    reconstruction's pass (a different thinned critic each call), then its own rates and mode again;
    p = 0 leaves it as it is."""
    from gnuradio.hqarf.classifier import ClassifierConfig, PatchTransformerNet
    torch.manual_seed(0)
    net = PatchTransformerNet(ClassifierConfig(arch="transformer", dim=16, depth=1, heads=2)).eval()
    x = torch.randn(4, 2, 1024)
    with torch.no_grad():
        plain = net(x)
        with stages.thinned(net, 0.0):
            assert torch.equal(net(x), plain) and not net.training
        with stages.thinned(net, 0.3):
            a, b = net(x), net(x)
            assert net.training and not torch.equal(a, b)
            assert {m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}
        assert not net.training and torch.equal(net(x), plain)
        assert {m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
