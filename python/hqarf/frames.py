# SPDX-License-Identifier: GPL-3.0-or-later
"""Frames of complex samples and their tensor form: validation, zero padding, complex <-> I/Q.

A frame is `frame_len` complex64 samples; a batch is (N, frame_len). The networks take float32
(N, 2, frame_len) with row 0 = I and row 1 = Q."""
from __future__ import annotations

import numpy as np
import torch


def as_frames(x, frame_len: int) -> np.ndarray:
    """Validate and view input as complex64 (N, frame_len). A 1-D frame is taken as N = 1."""
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != frame_len:
        raise ValueError(f"expected complex frames of shape (N, {frame_len}), got {np.shape(x)}")
    if not np.iscomplexobj(arr):
        raise ValueError(f"expected complex samples, got dtype {arr.dtype}")
    arr = arr.astype(np.complex64, copy=False)
    if not np.all(np.isfinite(arr.view(np.float32))):
        raise ValueError("input contains NaN or infinite samples")
    return arr


def pad_to_frames(samples: np.ndarray, frame_len: int) -> np.ndarray:
    """1-D samples -> (frames, frame_len), the last frame zero-padded."""
    frames = -(-len(samples) // frame_len)
    if len(samples) != frames * frame_len:
        samples = np.concatenate([samples, np.zeros(frames * frame_len - len(samples), np.complex64)])
    return samples.reshape(frames, frame_len)


def to_iq(frames: np.ndarray, device) -> torch.Tensor:
    """complex (N, L) -> float32 (N, 2, L) with row 0 = I, row 1 = Q."""
    return torch.from_numpy(np.stack([frames.real, frames.imag], axis=1).astype(np.float32)).to(device)


def iq_array(frames: np.ndarray) -> np.ndarray:
    """complex (N, L) -> contiguous float32 (N, 2, L), row 0 = I, row 1 = Q (what to_iq holds)."""
    out = np.empty((len(frames), 2, frames.shape[1]), np.float32)
    out[:, 0] = frames.real
    out[:, 1] = frames.imag
    return out


def complex_array(a: np.ndarray) -> np.ndarray:
    """float (N, 2, L) -> complex64 (N, L)."""
    out = np.empty((a.shape[0], a.shape[2]), np.complex64)
    out.real = a[:, 0]
    out.imag = a[:, 1]
    return out


def from_iq(t: torch.Tensor) -> np.ndarray:
    a = t.detach().float().cpu().numpy()
    return (a[:, 0] + 1j * a[:, 1]).astype(np.complex64)
