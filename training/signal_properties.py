# SPDX-License-Identifier: GPL-3.0-or-later
"""Salient signal properties of frames, to compare reconstructions with originals: the analysis of
"Can We Learn to Compress RF Signals?" (cumulants, envelope, band, spectral distance, SNR).

Every function takes complex frames (N, L) and returns one value per frame (numpy), except
bandwidth_tracking, one value for a set of originals and their reconstructions (scipy's rank correlation).
"""
from __future__ import annotations

import numpy as np

__all__ = ["cumulants", "non_circularity", "off_axis_share", "envelope_spread", "occupied_bandwidth", "log_spectral_distance", "snr_db", "bandwidth_tracking",
           "property_table", "PROPERTIES"]


def _unit_power(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.complex128)
    x = x - x.mean(-1, keepdims=True)
    p = np.mean(np.abs(x) ** 2, -1, keepdims=True)
    return x / np.sqrt(np.where(p > 0, p, 1.0))


def cumulants(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised fourth-order cumulants (|C40|, C42) per frame, at zero mean and unit power.
    BPSK: |C40| = 2, C42 = -2; QPSK and higher PSK: C42 = -1; a complex Gaussian (OFDM): 0, 0."""
    z = _unit_power(x)
    m20 = np.mean(z * z, -1)
    m21 = np.mean(np.abs(z) ** 2, -1)
    c40 = np.mean(z ** 4, -1) - 3 * m20 ** 2
    c42 = np.mean(np.abs(z) ** 4, -1) - np.abs(m20) ** 2 - 2 * m21 ** 2
    return np.abs(c40), c42.real


def non_circularity(x: np.ndarray) -> np.ndarray:
    """|E[z^2]| / E[|z|^2] at zero mean: 1 for a real-valued signal (ASK, PAM, BPSK) at any carrier
    phase, near 0 for a circular one (QPSK and higher PSK, QAM, FSK, OFDM)."""
    return np.abs(np.mean(_unit_power(x) ** 2, -1))


def off_axis_share(x: np.ndarray, max_offset: float = 0.0125, pad: int = 4) -> np.ndarray:
    """The share of a frame's power off its principal axis, (1 - p) / 2 with p the peak over carrier
    offsets within +-max_offset of |E[z^2 exp(-j 2 pi f n)]| / E[|z|^2]: 0 for a real-valued signal
    under any carrier phase and offset, 0.5 for a circular one. training.stages.peak_non_circularity
    is the loss's differentiable twin."""
    z = _unit_power(x)
    n = z.shape[-1]
    spectrum = np.abs(np.fft.fft(z * z, n=pad * n, axis=-1)) / n
    k = int(np.ceil(2 * max_offset * pad * n))
    peak = np.concatenate([spectrum[..., :k + 1], spectrum[..., -k:]], -1).max(-1)
    return (1 - np.minimum(peak, 1.0)) / 2


def envelope_spread(x: np.ndarray) -> np.ndarray:
    """std(|x|) / mean(|x|): 0 for a constant-envelope signal (PSK at the symbol instants, FSK)."""
    a = np.abs(np.asarray(x))
    m = a.mean(-1)
    return a.std(-1) / np.where(m > 0, m, 1.0)


def _psd(x: np.ndarray, nfft: int = 256) -> np.ndarray:
    """Welch-like two-sided PSD per frame (Hann, 50 % overlap), fftshifted: (N, nfft)."""
    x = np.asarray(x)
    hop = nfft // 2
    starts = range(0, x.shape[-1] - nfft + 1, hop)
    w = np.hanning(nfft)
    spec = np.mean([np.abs(np.fft.fft(x[:, s:s + nfft] * w, axis=-1)) ** 2 for s in starts], axis=0)
    return np.fft.fftshift(spec, axes=-1)


def occupied_bandwidth(x: np.ndarray, share: float = 0.99, nfft: int = 256) -> np.ndarray:
    """The narrowest centred-on-power band holding `share` of the power, as a fraction of the sample
    rate: the bins sorted by power, the fewest that add up to `share` (1.0 = the whole band)."""
    psd = _psd(x, nfft)
    order = np.sort(psd, -1)[:, ::-1]
    cum = np.cumsum(order, -1) / np.maximum(order.sum(-1, keepdims=True), 1e-30)
    return (np.argmax(cum >= share, -1) + 1) / nfft


def log_spectral_distance(x: np.ndarray, xhat: np.ndarray, nfft: int = 256) -> np.ndarray:
    """RMS over frequency of the difference of the two PSDs in dB (each normalised to unit power)."""
    p, q = _psd(x, nfft), _psd(xhat, nfft)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-30)
    q = q / np.maximum(q.sum(-1, keepdims=True), 1e-30)
    d = 10 * np.log10(np.maximum(p, 1e-12)) - 10 * np.log10(np.maximum(q, 1e-12))
    return np.sqrt(np.mean(d ** 2, -1))


def snr_db(x: np.ndarray, xhat: np.ndarray) -> np.ndarray:
    """Per-frame reconstruction SNR, dB."""
    err = np.sum(np.abs(np.asarray(x) - np.asarray(xhat)) ** 2, -1)
    return 10 * np.log10(np.sum(np.abs(np.asarray(x)) ** 2, -1) / np.maximum(err, 1e-30))


def bandwidth_tracking(x: np.ndarray, xhat: np.ndarray, share: float = 0.9) -> float:
    """Spearman's rank correlation between the originals' and the reconstructions' occupied bandwidth (`share`
    of the power, 90 %: the main lobe rather than a reconstruction's error floor) over a set of frames, for one
    class at a time: 1 when a reconstruction is wider exactly where its original is, 0 when its bandwidth says
    nothing of the original's (also where either set has a single bandwidth)."""
    from scipy.stats import spearmanr

    a, b = occupied_bandwidth(x, share), occupied_bandwidth(xhat, share)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b)[0])


PROPERTIES = ("abs_c40", "c42", "non_circularity", "off_axis_share", "envelope_spread", "occupied_bw")


def frame_properties(x: np.ndarray) -> dict[str, np.ndarray]:
    c40, c42 = cumulants(x)
    return {"abs_c40": c40, "c42": c42, "non_circularity": non_circularity(x),
            "off_axis_share": off_axis_share(x), "envelope_spread": envelope_spread(x), "occupied_bw": occupied_bandwidth(x)}


def property_table(x: np.ndarray, y: np.ndarray, recon: dict, classes) -> dict:
    """Means per class of every property, for the originals and for each level's reconstructions,
    plus the log-spectral distance and SNR of the reconstructions and, per class, how far their bandwidth
    follows the originals' (:func:`bandwidth_tracking`). ``recon``: level -> frames."""
    def by_class(values: dict) -> dict:
        return {name: [float(v[y == c].mean()) for c in range(len(classes))] for name, v in values.items()}

    out = {"classes": list(classes), "original": by_class(frame_properties(x)), "levels": {}}
    for level, xhat in sorted(recon.items()):
        props = frame_properties(xhat)
        props["log_spectral_distance_db"] = log_spectral_distance(x, xhat)
        props["snr_db"] = snr_db(x, xhat)
        out["levels"][str(level)] = by_class(props)
        out["levels"][str(level)]["bandwidth_tracking"] = [bandwidth_tracking(x[y == c], xhat[y == c])
                                                           for c in range(len(classes))]
    return out
