# SPDX-License-Identifier: GPL-3.0-or-later
"""The ModRec networks' inputs beside the raw I/Q, computed from each frame without learned weights: the
CNN's per-sample channels (features), the spectra a carrier phase and an offset cannot change
(spectral_features), per-frame statistics (statistic_features) and statistics at the symbol instants
(symbol_features). Their own module so that the networks (classifier.py) stay short."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def unit_rms(iq: torch.Tensor) -> torch.Tensor:
    """(B, 2, L) I/Q scaled to unit RMS per frame (silent frames left at 0): every classifier input."""
    return iq / iq.pow(2).sum(1, keepdim=True).mean(-1, keepdim=True).clamp_min(1e-12).sqrt()


def features(iq: torch.Tensor) -> torch.Tensor:
    """(B, 2, L) I/Q -> (B, 4, L): I, Q, amplitude and instantaneous-frequency, at unit RMS.

    RMS normalisation (not max) keeps the classifier indifferent to how a codec clips peaks; the
    amplitude and phase-difference channels are features convolutions find hard to build from I/Q."""
    iq = unit_rms(iq)
    amp = iq.pow(2).sum(1, keepdim=True).sqrt()
    z = torch.complex(iq[:, 0], iq[:, 1])
    dphi = torch.angle(z[:, 1:] * z[:, :-1].conj())
    dphi = F.pad(dphi, (1, 0))[:, None] * (amp > 0.05)
    return torch.cat([iq, amp, dphi], 1)


SPECTRAL_POWERS = (1, 2, 4, 8, 16)


def spectral_features(iq: torch.Tensor) -> torch.Tensor:
    """(B, 2, L) I/Q -> (B, 6, L): what a carrier phase and a frequency offset cannot change.

    Channels 0-4: log(1 + S) of the power spectrum S of z**k for k in SPECTRAL_POWERS (z the frame at unit
    RMS), each divided by its mean, so a spectral line has the same height wherever the offset puts it:
    M-PSK has a line at k = M and none below, square QAM at k = 4, a carrier at k = 1. Channel 5: the
    magnitude of the autocorrelation at lags 0..L-1 over its value at lag 0 (an OFDM cyclic prefix is a peak
    at the FFT size). A convolution branch with global pooling over them is shift-invariant, as they are."""
    iq = unit_rms(iq)
    z = torch.complex(iq[:, 0], iq[:, 1])
    n = z.shape[-1]
    chans, zk = [], _power_chain(z, SPECTRAL_POWERS)
    for k in SPECTRAL_POWERS:
        power = _power(torch.fft.fft(zk[k]))
        chans.append(torch.log1p(power / power.mean(-1, keepdim=True).clamp_min(1e-12)))
    spectrum = _power(torch.fft.fft(z, 2 * n))
    r = _magnitude(torch.fft.ifft(spectrum.to(torch.complex64))[:, :n])
    chans.append(r / r[:, :1].clamp_min(1e-12))
    return torch.stack(chans, 1)


AMPLITUDE_BINS = 16          # over |z| / rms in [0, 3), the last bin holding everything above
PHASE_LAGS = (1, 2, 3, 4)


def statistic_features(iq: torch.Tensor, spectra: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2, L) I/Q -> (B, N): per-frame statistics that a carrier phase and a frequency offset do not
    change and that a convolution stack builds poorly: the histogram of the amplitude at unit RMS
    (AMPLITUDE_BINS; APSK's rings, a carrier's constant envelope), |mean(u**k)| of the unit phasor u of
    z[n + d] z*[n] for each lag d in PHASE_LAGS and k in SPECTRAL_POWERS (M-PSK's phase steps; the offset
    only turns u), and the height of the highest line of each spectrum of spectral_features (and of the
    autocorrelation beyond lag 8). `spectra`: spectral_features(iq) where the caller has them."""
    iq = unit_rms(iq)
    amp = iq.pow(2).sum(1).sqrt()
    hist = _histogram(amp, AMPLITUDE_BINS, 3.0)
    z = torch.complex(iq[:, 0], iq[:, 1])
    moments = []
    for d in PHASE_LAGS:
        u = z[:, d:] * z[:, :-d].conj()
        u = u / _magnitude(u).clamp_min(1e-6)
        uk = _power_chain(u, SPECTRAL_POWERS)
        moments += [uk[k].mean(-1).abs() for k in SPECTRAL_POWERS]
    spectra = spectral_features(iq) if spectra is None else spectra
    lines = torch.cat([spectra[:, :-1].amax(-1), spectra[:, -1, 8:].amax(-1, keepdim=True)], 1)
    return torch.cat([hist, torch.stack(moments, 1), lines], 1)


STATISTICS = AMPLITUDE_BINS + len(PHASE_LAGS) * len(SPECTRAL_POWERS) + len(SPECTRAL_POWERS) + 1


def _power(z: torch.Tensor) -> torch.Tensor:
    """|z|**2 of a complex tensor from its real and imaginary parts (no square root)."""
    return z.real.square() + z.imag.square()


def _magnitude(z: torch.Tensor) -> torch.Tensor:
    """|z| of a complex tensor: 3x faster on the CPU than torch's complex abs (a hypot per element), the same
    within 3e-7 relative. Where a gradient is asked for, torch's own (whose gradient at 0 is 0)."""
    return z.abs() if z.requires_grad else _power(z).sqrt()


def _histogram(values: torch.Tensor, bins: int, top: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N) -> (B, bins): the share of each frame's values in `bins` equal bins over [0, top), the last bin
    holding everything above (and whatever share the others leave: 1 for a frame with no values); `weight`
    (B, N) of 0 and 1 leaves values out."""
    edges = torch.arange(1, bins, dtype=values.dtype, device=values.device) * (top / bins)
    index = torch.bucketize(values, edges, right=True)                # the number of edges <= value
    ones = torch.ones_like(values) if weight is None else weight
    counts = torch.zeros(values.shape[0], bins, dtype=values.dtype, device=values.device).scatter_add_(1, index, ones)
    total = values.shape[1] if weight is None else weight.sum(-1, keepdim=True).clamp_min(1)
    share = counts[:, :-1] / total
    return torch.cat([share, 1 - share.sum(-1, keepdim=True)], 1)


def _power_chain(z: torch.Tensor, exponents) -> dict:
    """{k: z ** k} for the positive integers `exponents`, each from two powers already made where it can
    be (z**12 = z**8 z**4): one complex multiply apiece instead of a repeated squaring each."""
    powers = {1: z}
    for k in sorted(set(exponents)):
        if k in powers:
            continue
        pair = next(((a, k - a) for a in sorted(powers, reverse=True) if k - a in powers), None)
        if pair is None:  # not a sum of two made ones: by repeated squaring
            powers[k] = _integer_power(z, k)
        else:
            powers[k] = powers[pair[0]] * powers[pair[1]]
    return powers


def _integer_power(z: torch.Tensor, k: int) -> torch.Tensor:
    """z ** k for a positive integer k by repeated squaring: complex multiplies, where torch's complex
    pow goes through exp and log (30x slower on the CPU, and less exact)."""
    result, base = None, z
    while k:
        if k & 1:
            result = base if result is None else result * base
        k >>= 1
        if k:
            base = base * base
    return result


SYMBOL_POWERS = (4, 8, 12, 16, 32)
SYMBOL_BINS = 8              # amplitude at the symbol instants over [0, 2) at unit RMS, the last bin above
# timing phases tried, in symbols from the matched filter's envelope line; 1/2: rectangular pulses dip between symbols
SYMBOL_PHASES = (0.0, 1 / 16, -1 / 16, 1 / 8, -1 / 8, 1 / 2)
_UPSAMPLE = 4
_ROLLOFF = 0.35              # of the matched filter; torchsig draws 0.1-0.5, or rectangular pulses
SYMBOL_STATISTICS = 3 + SYMBOL_BINS + len(SYMBOL_POWERS)


def symbol_features(iq: torch.Tensor) -> torch.Tensor:
    """(B, 2, L) I/Q -> (B, SYMBOL_STATISTICS): statistics of a linear modulation at its symbol instants,
    which sample-rate statistics blur when a frame has 2-5 samples per symbol (32PSK and 16APSK looked like
    16PSK to them). Per frame: the symbol rate from the strongest line of the squared envelope's spectrum in
    0.2-0.5 cycles per sample (its height over the band's RMS, and the rate, are features), a root-raised-
    cosine matched filter at that rate (and, for rectangular pulses, no filter), the timing from the phase of
    the filtered envelope's line, then for each filter and each of SYMBOL_PHASES timing phases around that
    timing the symbols (linear interpolation of the 4x upsampled output) and |mean(v**M)| of the unit phasor v
    of s[m + 1] s*[m] for M in SYMBOL_POWERS (M-PSK's steps are multiples of 2 pi / M), the largest over filters
    and phases kept; and the amplitude histogram and spread of the symbols where the spread is least
    (APSK's rings). A
    carrier phase or a frequency offset turns every v alike, so none of it changes with them."""
    iq = unit_rms(iq)
    z = torch.complex(iq[:, 0], iq[:, 1])
    b, n = z.shape
    real = iq.dtype
    # the symbol rate: the squared envelope's line, refined between FFT bins by a parabola
    e = iq.pow(2).sum(1)
    e = (e - e.mean(-1, keepdim=True)) * torch.hann_window(n, periodic=False, dtype=real, device=iq.device)
    pad = 8 * n
    spec = _magnitude(torch.fft.rfft(e, pad))
    lo, hi = int(0.2 * pad), int(0.5 * pad) - 1
    band = spec[:, lo:hi]
    k = band.argmax(-1).clamp(1, hi - lo - 2)
    left, mid, right = (band.gather(1, (k + d)[:, None])[:, 0] for d in (-1, 0, 1))
    shift = (0.5 * (left - right) / (left - 2 * mid + right).clamp(max=-1e-12)).clamp(-0.5, 0.5)
    rate = (lo + k + shift) / pad                                            # symbols per sample, (B,)
    # (a frame with a constant envelope, a carrier or silence, has no line: mid 0, and a height of 1, not log 0)
    line = torch.log(mid.clamp_min(1e-12) / band.pow(2).mean(-1).sqrt().clamp_min(1e-12))
    # two receive filters, 4x upsampled through the spectrum: a root-raised-cosine matched filter at that
    # rate, and none (rectangular pulses are exact at their centres, where the matched filter smears them)
    spectrum = torch.fft.fft(z)
    f = torch.fft.fftfreq(n, dtype=real, device=iq.device).abs()[None] / rate[:, None]
    edge = (f - (1 - _ROLLOFF) / 2).clamp(0, _ROLLOFF) / _ROLLOFF           # 0 in the pass band, 1 beyond
    filtered = spectrum * torch.cos(0.5 * torch.pi * edge) * (f <= (1 + _ROLLOFF) / 2)
    half = n // 2
    wide = torch.zeros(b, 2, _UPSAMPLE * n, dtype=spectrum.dtype, device=iq.device)
    for j, spec_j in enumerate((filtered, spectrum)):
        wide[:, j, :half], wide[:, j, -half:] = spec_j[:, :half], spec_j[:, -half:]
    y = torch.fft.ifft(wide)                                                 # (B, 2, 4 n)
    # the timing: the phase of the filtered envelope's line at the symbol rate (its peaks at the symbols)
    period = 1.0 / rate                                                      # samples per symbol, (B,)
    env = _power(y[:, 0, ::_UPSAMPLE])
    env = env - env.mean(-1, keepdim=True)
    arg = -2 * torch.pi * rate[:, None] * torch.arange(n, dtype=real, device=iq.device)[None]
    line_phase = torch.atan2((env * torch.sin(arg)).sum(-1), (env * torch.cos(arg)).sum(-1))
    start = torch.remainder(-line_phase / (2 * torch.pi), 1.0)              # in symbols, (B,)
    # symbol instants t = (start + phase + m) / rate for m while t stays inside the frame (a fixed count, not one from
    # the batch's rates: a traced network (runtime "torchscript") would keep the count of the batch it was traced on)
    most = int(n * 0.5) + 2
    m = torch.arange(most, dtype=real, device=iq.device) - 1
    phases = torch.tensor(SYMBOL_PHASES, dtype=real, device=iq.device)
    t = (start[:, None, None] + phases[None, :, None] + m[None, None, :]) * period[:, None, None]  # (B, P, most)
    valid = ((t >= 1) & (t < n - 2)).to(real).repeat(1, 2, 1)               # (B, 2 P, most): both filters
    pos = (t * _UPSAMPLE).clamp(0, _UPSAMPLE * n - 2)
    i0 = pos.floor()
    frac = (pos - i0).to(real).repeat(1, 2, 1)
    i0 = i0.long().reshape(b, 1, -1).expand(b, 2, -1)
    # gathered and interpolated as complex numbers (5x faster than a lerp over their real view, whose last axis of 2
    # the weights broadcast over)
    left, right = (y.gather(2, i).view(frac.shape) for i in (i0, i0 + 1))
    s = left + (right - left) * frac
    count = valid.sum(-1).clamp_min(2)                                       # (B, 2 P)
    mag = _magnitude(s)
    rms = (mag.pow(2) * valid).sum(-1).div(count).sqrt().clamp_min(1e-12)
    amp = mag / rms[..., None]
    pair = valid[..., 1:] * valid[..., :-1]
    pairs = pair.sum(-1).clamp_min(1)
    v = s[..., 1:] * s[..., :-1].conj()
    # unit phasors (|v| is the product of the two magnitudes), 0 outside the frame (every power 0 there too)
    v = v * (pair / (mag[..., 1:] * mag[..., :-1]).clamp_min(1e-12))
    powers = _power_chain(v, SYMBOL_POWERS)
    moments = torch.stack([powers[p].sum(-1).abs() / pairs for p in SYMBOL_POWERS], -1)
    moments = moments.amax(1)                                                # (B, powers)
    mean = (amp * valid).sum(-1) / count
    spread = ((amp - mean[..., None]).pow(2) * valid).sum(-1).div(count).sqrt() / mean.clamp_min(1e-12)
    best = spread.argmin(1)                                                  # (B,)
    amp_best = amp[torch.arange(b), best]
    valid_best = valid[torch.arange(b), best]
    hist = _histogram(amp_best, SYMBOL_BINS, 2.0, valid_best)
    return torch.cat([line[:, None], rate[:, None], spread.gather(1, best[:, None]), hist, moments], 1)
