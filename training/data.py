"""6Mod dataset: clean 1024-sample complex-baseband frames of six modulations, generated with torchsig 2.2.
Used to train and evaluate the HQARF compressor and the ModRec classifier; captures come from the receiver
model of training.impairments (re-exported here, as add_awgn and the detector's noise and carrier frames are).

Labels are ``index % 6`` in CLASSES order (4ask, 8pam, 16psk, 32qam_cross, 2fsk, ofdm-256): example
i of a split is a pure function of (split seed, i), so every prefix of 6*n examples holds n per class.

Generation time per example on one core (2-core dev machine, shared, torchsig 2.2.0, mean of 200):
    4ask, 8pam, 16psk, 32qam_cross about 2 ms each; 2fsk about 9 ms; ofdm-256 about 9 ms
    (2fsk and OFDM spend it in torchsig's 10000-branch fractional resampler). Through generate():
    4.4-4.7 ms per example with workers=1; with 2 workers 1.3 ms on an idle machine, 4.3 ms under
    load (24000 examples in 104 s), so the 4000/1000/1000-per-class sets take 1-3 minutes once, then
    load from the cache in about a second (train: 197 MB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from training.impairments import (Impairments, NOISE_KINDS, add_awgn, carrier_frames,  # noqa: F401 (re-exported)
                                  fractional_delay, frequency_shift, impair, impair_frame, impair_rng, noise_frames,
                                  preset_impairments)
from training.splits import SPLIT_SEEDS, split_rng
from training.torchsig_compat import import_torchsig

torchsig = import_torchsig()
# pylint: disable=wrong-import-position,wrong-import-order
from torchsig.datasets.datasets import TorchSigIterableDataset  # noqa: E402
from torchsig.signals.builders.constellation import ConstellationSignalGenerator  # noqa: E402
from torchsig.signals.builders.constellation_maps import all_symbol_maps  # noqa: E402
from torchsig.utils.signal_building import (  # noqa: E402
    lookup_signal_generator_by_string,
    signal_generator_lookup_table,
)

__all__ = [
    "CLASSES",
    "OUT_OF_SET_TRAIN",
    "OUT_OF_SET_WIDER",
    "SPLIT_SEEDS",
    "DataConfig",
    "Impairments",
    "add_awgn",
    "impair",
    "impair_frame",
    "default_cache_dir",
    "example",
    "generate",
]

CLASSES = ("4ask", "8pam", "16psk", "32qam_cross", "2fsk", "ofdm-256")

# torchsig classes outside 6Mod that train the unknown detector (outlier exposure); the report also
# tests it on kinds never seen in training (training/robustness.py) and on GNU Radio's own modulators.
OUT_OF_SET_TRAIN = ("bpsk", "qpsk", "8psk", "16qam", "64qam", "4fsk", "2gmsk", "ook", "am-dsb", "fm", "lfm-data",
                    "ofdm-64")
# More torchsig kinds a preset may add to the detector's outliers (``out_of_set_classes``); the report scores
# none of them, so its unseen kinds (8ask, 32psk, 16apsk, 4gmsk, am-usb, ofdm-128, ...) stay unseen.
# No OFDM size near the in-set 256 (180, 300): those would teach the detector to flag ofdm-256 itself.
OUT_OF_SET_WIDER = ("16ask", "32ask", "64psk", "32qam", "128qam_cross", "256qam", "32apsk", "ofdm-72", "ofdm-512",
                    "ofdm-1024", "8fsk", "16fsk", "2msk", "8gmsk", "2gfsk", "am-lsb", "am-dsb-sc", "lfm-radar")

# Bump when this module changes what it generates for the same DataConfig (invalidates caches).
_GENERATOR_REVISION = 1

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _register_8pam() -> None:
    # torchsig 2.2 dropped the PAM family. torchsig 0.x defined 8pam as 8 unipolar levels
    # linspace(0, 1, 8) on the real axis (unlike 8ask: linspace(-1, 1, 8)). torchsig registers
    # every constellation the same way: a symbol map plus a lookup-table entry naming
    # ConstellationSignalGenerator, so 8pam gets torchsig's usual pulse shaping and resampling.
    if "8pam" not in all_symbol_maps:
        all_symbol_maps["8pam"] = np.linspace(0, 1, 8) + 0j
    signal_generator_lookup_table.setdefault("8pam", (ConstellationSignalGenerator, {"constellation_name": "8pam"}))


_register_8pam()


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Every parameter of the generator. ``key()`` names the data it produces."""

    frame_len: int = 1024
    classes: tuple[str, ...] = CLASSES
    sample_rate: float = 10e6  # Hz; torchsig wants a physical rate, bandwidths are fractions of it
    # torchsig draws the bandwidth (Hz, integer) uniformly in [min, max] * sample_rate. For the
    # linear modulations sample_rate / bandwidth is the samples per symbol: 2.2 .. 4.
    bandwidth_min_frac: float = 0.25
    bandwidth_max_frac: float = 0.45
    center_freq: float = 0.0  # one signal, centred, no frequency offset
    # torchsig's SNR is the peak PSD bin over its noise floor (not Es/N0); 100 dB is "clean".
    snr_db: float = 100.0
    # FFT size torchsig uses to measure the peak PSD (to set the SNR) and the occupied bandwidth.
    fft_size: int = 256

    def __post_init__(self) -> None:
        # a tuple keeps the config hashable (it keys the per-process torchsig datasets)
        object.__setattr__(self, "classes", tuple(self.classes))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return d

    def key(self) -> str:
        """Short hash of the parameters, torchsig's version and this generator's revision."""
        blob = json.dumps(
            {"config": self.to_dict(), "torchsig": torchsig.__version__, "revision": _GENERATOR_REVISION},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def torchsig_metadata(self) -> dict:
        """The metadata dict for ``TorchSigIterableDataset``: one full-length signal, no impairments."""
        fs = float(self.sample_rate)
        return {
            "num_iq_samples_dataset": self.frame_len,
            "num_signals_min": 1,
            "num_signals_max": 1,
            # the signal lasts the whole frame, so it always starts at sample 0
            "signal_duration_in_samples_min": self.frame_len,
            "signal_duration_in_samples_max": self.frame_len,
            "sample_rate": fs,
            "bandwidth_min": int(round(self.bandwidth_min_frac * fs)),
            "bandwidth_max": int(round(self.bandwidth_max_frac * fs)),
            "signal_center_freq_min": self.center_freq,
            "signal_center_freq_max": self.center_freq,
            # the full Nyquist band: torchsig's anti-aliasing filter after the (zero) frequency
            # shift only runs when the signal would cross these edges, which it then cannot
            "frequency_min": -fs / 2,
            "frequency_max": fs / 2,
            "snr_db_min": self.snr_db,
            "snr_db_max": self.snr_db,
            "noise_power_db": 0.0,
            "fft_size": self.fft_size,
            "fft_stride": self.fft_size,
            "cochannel_overlap_probability": 0.0,
        }


def default_cache_dir() -> Path:
    """``$HQARF_CACHE`` if set, else ``<repo>/.cache/data`` (gitignored)."""
    env = os.environ.get("HQARF_CACHE")
    return Path(env) if env else _REPO_ROOT / ".cache" / "data"


# One torchsig dataset per (config, class) and process; reseeded for every example.
_DATASETS: dict[tuple[DataConfig, str], TorchSigIterableDataset] = {}


def _dataset(config: DataConfig, class_name: str) -> TorchSigIterableDataset:
    ds = _DATASETS.get((config, class_name))
    if ds is None:
        ds = TorchSigIterableDataset(
            signal_generators=[lookup_signal_generator_by_string(class_name)],
            metadata=config.torchsig_metadata(),
            target_labels=None,  # return the Signal; we normalise and label ourselves
            seed=0,
        )
        _DATASETS[(config, class_name)] = ds
    return ds


def _example_seed(split: str, index: int) -> int:
    state = split_rng(split, index, None, seed_sequence=True).generate_state(1, np.uint64)[0]
    # torchsig also seeds a torch.Generator with seed + 13, which must stay below 2**64
    return int(state) >> 2


def example(split: str, index: int, config: DataConfig = DataConfig()) -> tuple[np.ndarray, int]:
    """Example ``index`` of ``split``: (complex64 frame with max |x| = 1, label = index % n_classes)."""
    label = int(index) % len(config.classes)
    ds = _dataset(config, config.classes[label])
    # Reseeding resets every random generator torchsig uses for this class, so the example
    # depends on (split, index) only, not on what this process generated before.
    ds.seed(_example_seed(split, index))
    x = np.asarray(next(ds).data, dtype=np.complex64)
    if x.shape != (config.frame_len,):
        raise RuntimeError(f"torchsig returned shape {x.shape} for {config.classes[label]}")
    peak = np.abs(x).max()
    if not peak > 0:
        raise RuntimeError(f"torchsig returned an all-zero frame for {config.classes[label]}")
    return (x / peak).astype(np.complex64), label


def _example_task(args: tuple[str, int, DataConfig]) -> tuple[np.ndarray, int]:
    return example(*args)


def _worker_init() -> None:
    # Each worker is one core's worth of work; torch's own threads would only compete.
    torch.set_num_threads(1)


def _cache_path(cache_dir: Path, split: str, n_per_class: int, config: DataConfig) -> Path:
    return cache_dir / f"6mod_{split}_n{n_per_class}_{config.key()}.npz"


def _load_cached(cache_dir: Path, split: str, n_per_class: int, config: DataConfig):
    exact = _cache_path(cache_dir, split, n_per_class, config)
    candidates = [exact] if exact.exists() else []
    if not candidates and cache_dir.is_dir():
        # A larger set of the same split and config holds this one as its prefix.
        for path in cache_dir.glob(f"6mod_{split}_n*_{config.key()}.npz"):
            n = path.name.split("_n", 1)[1].split("_", 1)[0]
            if n.isdigit() and int(n) >= n_per_class:
                candidates.append((int(n), path))
        candidates = [path for _, path in sorted(candidates)][:1]
    if not candidates:
        return None
    n_total = n_per_class * len(config.classes)
    with np.load(candidates[0]) as f:
        x, y = f["x"], f["y"]
    if len(x) > n_total:  # copy, so the larger array is not kept alive by a view
        x, y = x[:n_total].copy(), y[:n_total].copy()
    return x, y


def generate(
    split: str,
    n_per_class: int,
    config: DataConfig = DataConfig(),
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_per_class * len(config.classes)`` examples of ``split``.

    Returns ``x`` complex64 (N, frame_len), each row scaled to max |x| = 1, and ``y`` int64 (N,)
    with ``y[i] = i % len(config.classes)``. Cached under ``cache_dir`` (default
    :func:`default_cache_dir`) by split, count and ``config.key()``; a cached larger set of the
    same split is reused by slicing. ``workers`` processes (default ``os.cpu_count()``) generate
    in parallel; the result does not depend on their number.
    """
    if n_per_class < 0:
        raise ValueError("n_per_class must be >= 0")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = _load_cached(cache_dir, split, n_per_class, config)
    if cached is not None:
        return cached

    _example_seed(split, 0)  # fail on an unknown split before starting workers
    n_total = n_per_class * len(config.classes)
    x = np.empty((n_total, config.frame_len), dtype=np.complex64)
    y = np.empty(n_total, dtype=np.int64)
    tasks = [(split, i, config) for i in range(n_total)]
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    with tqdm(total=n_total, desc=f"6Mod {split}", unit="ex", disable=not progress) as bar:
        if workers == 1 or n_total < 2:
            # torch (torchsig's spectrogram) at one thread: several threads on tiny FFTs cost
            # milliseconds each on a busy machine
            torch_threads = torch.get_num_threads()
            torch.set_num_threads(1)
            results = map(_example_task, tasks)
            pool = None
        else:
            # fork: workers inherit the imported torchsig (a fresh import costs seconds each)
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            pool = ctx.Pool(workers, initializer=_worker_init)
            chunk = max(1, min(64, n_total // (8 * workers)))
            results = pool.imap(_example_task, tasks, chunksize=chunk)  # ordered
        try:
            for i, (xi, yi) in enumerate(results):
                x[i] = xi
                y[i] = yi
                bar.update(1)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
            else:
                torch.set_num_threads(torch_threads)

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache_dir, split, n_per_class, config)
    # write-then-rename so an interrupted or concurrent run never leaves a half-written cache
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=x, y=y, config=json.dumps(config.to_dict()), torchsig=torchsig.__version__)
    os.replace(tmp, path)
    return x, y


def preset_data(cfg: dict, ctx, log, cache_dir=None):
    """A training preset's splits (``cfg["data"]``: frames per class), each seen through the preset's
    receiver impairments where it has them (the clean splits kept as ``*_clean``). Every rank of `ctx`
    (training.common.Dist) holds the whole (small) data set; rank 0 generates and caches it first so
    the other ranks read the cache instead of racing to write it. `log.note` reports each step."""
    data_config = DataConfig()
    data = {}
    for turn in (0, 1):
        if (turn == 0) == ctx.main:
            for split, n in cfg["data"].items():
                t = time.time()
                data[split] = generate(split, n, data_config, cache_dir=cache_dir, progress=ctx.main)
                log.note(f"data {split}: {len(data[split][0])} frames ({n} per class) in {time.time() - t:.1f} s")
        ctx.barrier()
    impairments = preset_impairments(cfg)
    if impairments is not None:
        # Every split seen through the receiver model; the clean test split stays for the report.
        data["test_clean"] = data["test"]
        data["val_clean"] = data["val"]
        data["train_clean"] = data["train"]
        for split in cfg["data"]:
            t = time.time()
            frames, snr = impair(data[split][0], split, impairments)
            data[split] = (frames, data[split][1])
            data[f"{split}_snr_db"] = snr
            log.note(f"data {split}: impaired ({impairments.to_dict()}) in {time.time() - t:.1f} s")
    return data, data_config
