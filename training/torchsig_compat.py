"""The one place that imports torchsig; it works around torchsig's hard dependency on torchaudio.

Why this exists: ``import torchsig`` (2.2.0) runs ``import torchaudio`` in
``torchsig/utils/dsp.py``, but only uses ``torchaudio.transforms.Spectrogram`` (to
estimate the noise floor and set the SNR in ``compute_spectrogram``). torchaudio is
not installed here and must not be: PyPI's build is a CUDA build that fails to load
beside the CPU torch this project pins (``libc10_cuda.so`` not found).

What it does: :func:`import_torchsig` imports torchsig as is when a working torchaudio
exists. Otherwise it puts a minimal stand-in ``torchaudio`` module, whose
``transforms.Spectrogram`` is the same computation written with ``torch.stft``, into
``sys.modules`` for the duration of the torchsig import only. torchsig keeps its
reference to the stand-in; afterwards the stand-in is removed from ``sys.modules`` so
that other libraries probing for torchaudio (torchmetrics, lightning) still see that
it is absent instead of finding a fake that lacks everything but one class.

Everything else in the project gets torchsig from here: ``torchsig = import_torchsig()``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types

import torch

__all__ = ["Spectrogram", "import_torchsig"]


class Spectrogram(torch.nn.Module):
    """Stand-in for ``torchaudio.transforms.Spectrogram`` (same arguments, same result).

    Computes ``|STFT(x)| ** power`` over the last dimension, like
    ``torchaudio.functional.spectrogram``; accepts real or complex input (complex
    input needs ``onesided=False``, as torchsig passes).
    """

    def __init__(
        self,
        n_fft: int = 400,
        win_length: int | None = None,
        hop_length: int | None = None,
        pad: int = 0,
        window_fn=torch.hann_window,
        power: float | None = 2.0,
        normalized: bool | str = False,
        wkwargs: dict | None = None,
        center: bool = True,
        pad_mode: str = "reflect",
        onesided: bool = True,
        return_complex: bool | None = None,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        self.pad = pad
        self.power = power
        self.normalized = normalized
        self.center = center
        self.pad_mode = pad_mode
        self.onesided = onesided
        window = window_fn(self.win_length) if wkwargs is None else window_fn(self.win_length, **wkwargs)
        self.register_buffer("window", window)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.pad > 0:
            waveform = torch.nn.functional.pad(waveform, (self.pad, self.pad), "constant")
        shape = waveform.shape
        waveform = waveform.reshape(-1, shape[-1])
        # torchaudio's normalized=True / "frame_length" maps to stft's own normalisation;
        # "window" divides by the window's energy afterwards.
        frame_length_norm = self.normalized is True or self.normalized == "frame_length"
        window = self.window.to(dtype=waveform.real.dtype, device=waveform.device)
        spec = torch.stft(
            waveform,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=window,
            center=self.center,
            pad_mode=self.pad_mode,
            normalized=frame_length_norm,
            onesided=self.onesided,
            return_complex=True,
        )
        spec = spec.reshape(shape[:-1] + spec.shape[-2:])
        if self.normalized == "window":
            spec = spec / window.pow(2.0).sum().sqrt()
        if self.power is None:
            return spec
        if self.power == 1.0:
            return spec.abs()
        return spec.abs().pow(self.power)


def _stand_in_torchaudio() -> types.ModuleType:
    """Build the fake ``torchaudio`` package with only ``transforms.Spectrogram``."""
    package = types.ModuleType("torchaudio", "hqarf stand-in for torchaudio (Spectrogram only); see training/torchsig_compat.py")
    package.__spec__ = importlib.machinery.ModuleSpec("torchaudio", loader=None, is_package=True)
    package.__path__ = []
    package.__version__ = "0.0+hqarf-stand-in"
    package.hqarf_stand_in = True
    transforms = types.ModuleType("torchaudio.transforms")
    transforms.__spec__ = importlib.machinery.ModuleSpec("torchaudio.transforms", loader=None)
    transforms.Spectrogram = Spectrogram
    package.transforms = transforms
    return package


def _torchaudio_works() -> bool:
    try:
        import torchaudio  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
    except Exception:  # ImportError, or OSError from a CUDA build beside CPU torch
        # drop whatever a failed import left behind, so the stand-in is the only torchaudio
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        return False
    return True


def import_torchsig() -> types.ModuleType:
    """Return the ``torchsig`` module, importing it with a torchaudio stand-in if needed."""
    if "torchsig" in sys.modules:
        return sys.modules["torchsig"]
    if _torchaudio_works():
        return importlib.import_module("torchsig")

    stand_in = _stand_in_torchaudio()
    sys.modules["torchaudio"] = stand_in
    sys.modules["torchaudio.transforms"] = stand_in.transforms
    try:
        return importlib.import_module("torchsig")
    finally:
        # torchsig.utils.dsp holds its own reference; nobody else should find the fake.
        for name in ("torchaudio", "torchaudio.transforms"):
            if sys.modules.get(name) is stand_in or sys.modules.get(name) is stand_in.transforms:
                del sys.modules[name]
