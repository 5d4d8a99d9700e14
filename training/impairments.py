# SPDX-License-Identifier: GPL-3.0-or-later
"""What a receiver does to a clean frame (noise, a fractional timing offset, multipath, a carrier phase and a
frequency offset), and the outliers the unknown detector learns that no torchsig class covers (noise alone,
unmodulated carriers). Every frame is a pure function of (split seed, index): its own random stream
(training.splits.split_rng), disjoint from torchsig's. training.data re-exports all of it."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from training.splits import split_rng

_DELAY_TAPS = 17


def add_awgn(x: np.ndarray, esn0_db, seed_or_rng) -> np.ndarray:
    """``x`` plus complex white Gaussian noise at ``esn0_db`` (scalar or one value per example).

    Es is measured per example as the mean of |x|^2 over its samples (last axis), and the
    complex noise has variance N0 = Es / 10**(esn0_db / 10), split equally between I and Q.
    ``seed_or_rng``: an int seed (deterministic) or a ``numpy.random.Generator``.
    """
    x = np.asarray(x)
    if not np.iscomplexobj(x):
        raise TypeError("add_awgn expects complex samples")
    rng = np.random.default_rng(seed_or_rng)
    esn0 = np.asarray(esn0_db, dtype=np.float64)
    if esn0.ndim > 0:
        if esn0.shape != x.shape[:-1]:
            raise ValueError(f"esn0_db has shape {esn0.shape}, expected scalar or {x.shape[:-1]}")
        esn0 = esn0[..., None]
    es = np.mean(np.abs(x.astype(np.complex128)) ** 2, axis=-1, keepdims=True)
    sigma = np.sqrt(es / 10.0 ** (esn0 / 10.0) / 2.0)  # per real dimension
    noise = rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)
    return (x + sigma * noise).astype(np.complex64)


# -- receiver impairments ---------------------------------------------------------------------------
# A capture is a clean frame seen through a receiver: a fractional timing offset, optionally a short
# multipath channel, a residual carrier frequency offset, an unknown carrier phase and noise. Each
# impaired example is a pure function of (split seed, index): its own random stream, disjoint from
# torchsig's (the extra SeedSequence word), so the clean cache is reused and impaired sets stay
# reproducible. Frames are re-normalised to max |x| = 1 afterwards, as the sensor does.
_IMPAIR_STREAM = 0x1A9


@dataclasses.dataclass(frozen=True)
class Impairments:
    """What a receiver adds to a clean frame. ``Impairments.none()`` leaves frames unchanged.

    SNR is per-sample: mean |x|^2 of the frame over the complex noise power (not torchsig's peak
    PSD figure). ``clean_fraction`` of the frames get no noise at all (the codec must still serve
    clean, synthetic or high-SNR captures)."""

    snr_db_min: float = 0.0
    snr_db_max: float = 30.0
    clean_fraction: float = 0.2
    random_phase: bool = True           # carrier phase uniform in [0, 2 pi)
    max_freq_offset: float = 0.01       # carrier offset uniform in +-this fraction of the sample rate
    timing_offset: bool = True          # fractional delay uniform in [0, 1) sample
    multipath_probability: float = 0.0  # share of frames through a short random FIR channel
    multipath_taps: int = 3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def none(cls) -> "Impairments":
        return cls(snr_db_min=math.inf, snr_db_max=math.inf, clean_fraction=1.0, random_phase=False,
                   max_freq_offset=0.0, timing_offset=False, multipath_probability=0.0)

    @property
    def active(self) -> bool:
        return self != Impairments.none()


def fractional_delay(x: np.ndarray, delay: float, taps: int = _DELAY_TAPS) -> np.ndarray:
    """``x`` delayed by ``delay`` (0..1) samples: a Hann-windowed sinc FIR, same length, zero edges."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(n - delay) * np.hanning(taps + 2)[1:-1]
    h /= h.sum()
    return np.convolve(x, h, mode="same")


def frequency_shift(x: np.ndarray, offset: float, phase: float = 0.0) -> np.ndarray:
    """``x * exp(j (2 pi offset n + phase))``; ``offset`` in cycles per sample (fraction of fs)."""
    n = np.arange(x.shape[-1])
    return x * np.exp(1j * (2 * np.pi * offset * n + phase))


def impair_frame(x: np.ndarray, rng: np.random.Generator, imp: Impairments) -> tuple[np.ndarray, float]:
    """One frame through the receiver model; returns (complex64 frame with max |x| = 1, SNR in dB or inf).

    Every random draw is made whether or not its impairment is on, so switching one impairment
    off does not change the others' draws."""
    y = np.asarray(x, dtype=np.complex128)
    delay, u_mp, phase, u_f, u_clean, u_snr = rng.random(6)
    mp_taps = rng.standard_normal((2, max(1, imp.multipath_taps - 1)))
    noise = rng.standard_normal((2, y.shape[-1]))
    if imp.timing_offset:
        y = fractional_delay(y, delay)
    if u_mp < imp.multipath_probability and imp.multipath_taps > 1:
        # a dominant direct path and weaker echoes, 1 sample apart, decaying 6 dB per tap
        echoes = (mp_taps[0] + 1j * mp_taps[1]) * 0.5 ** np.arange(1, imp.multipath_taps) / np.sqrt(2)
        y = np.convolve(y, np.concatenate([[1.0], echoes]))[: y.shape[-1]]
    y = frequency_shift(y, (2 * u_f - 1) * imp.max_freq_offset, 2 * np.pi * phase if imp.random_phase else 0.0)
    snr = math.inf
    if u_clean >= imp.clean_fraction and math.isfinite(imp.snr_db_min):
        snr = float(imp.snr_db_min + u_snr * (imp.snr_db_max - imp.snr_db_min))
        power = np.mean(np.abs(y) ** 2)
        y = y + np.sqrt(power / 10 ** (snr / 10) / 2) * (noise[0] + 1j * noise[1])
    peak = np.abs(y).max()
    return (y / (peak if peak > 0 else 1.0)).astype(np.complex64), snr


def impair_rng(split: str, index: int) -> np.random.Generator:
    """The random stream of example ``index`` of ``split``'s impairments."""
    return split_rng(split, index, _IMPAIR_STREAM)


_NOISE_STREAM = 0x2B7
NOISE_KINDS = ("white-noise", "band-noise")


def noise_frames(split: str, n: int, frame_len: int = 1024) -> tuple[np.ndarray, list[str]]:
    """``n`` frames of noise alone (max |x| = 1), alternately white complex Gaussian noise and
    Gaussian noise band-limited to a random 5-80 % of the band at a random centre: outliers a
    receiver meets (an empty channel) that no torchsig class covers. Frame i of a split is a pure
    function of (split seed, i)."""
    split_rng(split, 0, _NOISE_STREAM)  # the split checked even when n is 0
    out = np.empty((n, frame_len), np.complex64)
    kinds = []
    freqs = np.fft.fftfreq(frame_len)
    for i in range(n):
        rng = split_rng(split, i, _NOISE_STREAM)
        y = rng.standard_normal(frame_len) + 1j * rng.standard_normal(frame_len)
        kind = NOISE_KINDS[i % len(NOISE_KINDS)]
        if kind == "band-noise":
            width, centre = rng.uniform(0.05, 0.8), rng.uniform(-0.4, 0.4)
            dist = np.abs((freqs - centre + 0.5) % 1.0 - 0.5)  # circular distance to the centre
            y = np.fft.ifft(np.fft.fft(y) * (dist <= width / 2))
        out[i] = y / np.abs(y).max()
        kinds.append(kind)
    return out, kinds


_CARRIER_STREAM = 0x3C1


def carrier_frames(split: str, n: int, frame_len: int = 1024) -> tuple[np.ndarray, list[str]]:
    """``n`` frames of unmodulated carriers (max |x| = 1): one tone at a random frequency within
    +-45 % of the sample rate and a random phase, and in every third frame a second, weaker one
    (3-20 dB below: a spur or a neighbouring CW carrier). What a receiver meets in a channel with no
    signal of the six classes, and no torchsig class of the training outliers covers (the receiver
    model adds noise and offsets). Frame i of a split is a pure function of (split seed, i)."""
    split_rng(split, 0, _CARRIER_STREAM)  # the split checked even when n is 0
    out = np.empty((n, frame_len), np.complex64)
    kinds = []
    t = np.arange(frame_len)
    for i in range(n):
        rng = split_rng(split, i, _CARRIER_STREAM)
        y = np.exp(2j * np.pi * (rng.uniform(-0.45, 0.45) * t + rng.random()))
        kind = "carrier"
        if i % 3 == 2:
            gain = 10 ** (-rng.uniform(3.0, 20.0) / 20)
            y = y + gain * np.exp(2j * np.pi * (rng.uniform(-0.45, 0.45) * t + rng.random()))
            kind = "two-carriers"
        out[i] = y / np.abs(y).max()
        kinds.append(kind)
    return out, kinds


def impair(x: np.ndarray, split: str, imp: Impairments, first_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``first_index ...`` of ``split`` through :func:`impair_frame`: (frames, SNR dB per frame). Frame by
    frame: each frame's own random stream costs as much as its arithmetic (a version on blocks of 512 frames
    took as long, session 18)."""
    out = np.empty((len(x), x.shape[-1]), np.complex64)
    snr = np.empty(len(x))
    for i, frame in enumerate(x):
        out[i], snr[i] = impair_frame(frame, impair_rng(split, first_index + i), imp)
    return out, snr


def preset_impairments(cfg: dict) -> Impairments | None:
    """The preset's receiver impairments (None: clean frames, as the papers trained)."""
    spec = cfg.get("impairments")
    return None if spec is None else Impairments(**spec)
