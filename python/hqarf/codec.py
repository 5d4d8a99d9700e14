# SPDX-License-Identifier: GPL-3.0-or-later
"""The codec: complex IQ frames <-> codeword indices <-> wire messages, at a level chosen per call.

This is the public face of the codec core (plain PyTorch + numpy, no GNU Radio), used by the
blocks, the gr-hqarf command, the training package and the tests.
"""
from __future__ import annotations

import numpy as np
import torch

from . import exemplars as exemplars_io
from . import weights as weights_io
from . import wire
from ._checks import check_level
from .frames import as_frames, complex_array, iq_array, to_iq
from .model import HQARF, HQARFConfig
from .runtime import DEFAULT_RUNTIME, Runtime

# Frames per forward pass: small enough that a pass's activations stay in the CPU caches
# (batch 256 measured slower than batch 16 at every level; bench/bench.py shows the curve).
CHUNK = 16


# The largest finite bfloat16 (0x7F7F): amplitudes above it saturate there instead of overflowing.
MAX_SCALE = float(np.array([0x7F7F0000], np.uint32).view(np.float32)[0])


def magnitudes(frames: np.ndarray) -> np.ndarray:
    """Per-frame max |x| as float64. |x| of a float32 complex near 3.4e38 overflows float32: those
    frames (inf in float32) are measured again in float64; the rest in float32 (5x faster). The
    overflow is expected, so it raises no warning (numpy warns of it on some CPUs, not on others)."""
    if not frames.size:
        return np.zeros(len(frames))
    with np.errstate(over="ignore"):
        out = np.abs(frames).max(axis=1).astype(np.float64)
    over = np.isinf(out)
    if over.any():
        out[over] = np.abs(frames[over].astype(np.complex128)).max(axis=1)
    return out


def frame_scales(frames: np.ndarray, raw: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Per-frame amplitude max |x| (`raw`, measured here if not given), the scale the wire format
    carries (bfloat16-rounded), and how many frames saturated at MAX_SCALE (amplitudes float32 or
    bfloat16 cannot carry)."""
    raw = magnitudes(frames) if raw is None else raw
    saturated = int((raw > MAX_SCALE).sum())
    scales = np.minimum(raw, MAX_SCALE).astype(np.float32)
    return wire.scales_from_bfloat16(wire.scales_to_bfloat16(scales)), saturated


class Codec:
    """A loaded HQARF model. See README "Python API" for use.

    encode/decode work on unit-scale frames (each frame is scaled to max |x| = 1 before encoding);
    compress/decompress carry each frame's amplitude in the message and restore it.
    Amplitudes beyond MAX_SCALE saturate there, counted in `saturated_frames`.

    `exemplars` (hqarf.exemplars.ExemplarBank, loaded by load_codec where the model has one): at the bank's
    levels decoding outputs a real frame of the transmitted class instead of the network's rendering;
    `use_exemplars` switches it off and on (decode(exemplars=) per call).
    """

    def __init__(self, model: HQARF, manifest: dict | None = None, device: str = "cpu",
                 runtime: str = DEFAULT_RUNTIME, num_threads: int = 0, chunk: int = CHUNK, weights_dir=None,
                 exemplars: exemplars_io.ExemplarBank | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config: HQARFConfig = model.config
        self.manifest = dict(manifest or {})
        fp = self.manifest.get("fingerprint") or weights_io.fingerprint(model.state_dict())
        self.fingerprint_hex = fp
        self.fingerprint = bytes.fromhex(fp)
        self._tokens = [self.config.tokens(level) for level in range(self.config.levels)]
        # Frames compressed whose amplitude exceeded MAX_SCALE (about 3.39e38) and was saturated
        # there: counted, not warned about (a receiver sees a frame at the largest amplitude).
        self.saturated_frames = 0
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self.chunk = int(chunk)
        self._weights_dir = weights_dir
        if exemplars is not None:
            exemplars_io.check_fits(self.config, exemplars.levels, exemplars.frame_len)
        self.exemplars = exemplars
        self.use_exemplars = exemplars is not None
        self.runtime = Runtime(self.model, runtime, num_threads, self.device, fp, weights_dir, self._example)

    def _example(self, kind, level):
        """Inputs the compiled runtimes trace / export with (any values; the batch axis stays free)."""
        if kind == "encode":
            return torch.zeros(2, self.config.in_channels, self.frame_len)
        return torch.zeros(2, self.tokens(level), dtype=torch.int64)

    def with_runtime(self, runtime: str, num_threads: int = 0, chunk: int | None = None) -> "Codec":
        """The same model (shared weights, the same exemplar bank and use_exemplars) under another runtime /
        thread count / chunk."""
        codec = Codec(self.model, self.manifest, device=str(self.device), runtime=runtime,
                      num_threads=num_threads, chunk=self.chunk if chunk is None else chunk,
                      weights_dir=self._weights_dir, exemplars=self.exemplars)
        codec.use_exemplars = self.use_exemplars
        return codec

    # -- geometry ---------------------------------------------------------------------------
    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def frame_len(self) -> int:
        return self.config.frame_len

    @property
    def bits_per_index(self) -> int:
        return self.config.bits_per_index

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def classes(self) -> list:
        return list(self.manifest.get("classes", []))

    def tokens(self, level: int) -> int:
        return self._tokens[self._check_level(level)]

    def rendering(self, level: int, exemplars: bool | None = None) -> str:
        """How decode renders `level`: "exemplar" (a real frame of the class, from the model's bank) or
        "network" (the decoder network's output); `exemplars` as for decode."""
        level = self._check_level(level)
        use = self.use_exemplars if exemplars is None else bool(exemplars)
        return "exemplar" if use and self.exemplars is not None and level in self.exemplars.levels else "network"

    def bits_per_frame(self, level: int) -> int:
        return self.tokens(level) * self.bits_per_index

    def compression_ratio(self, level: int, reference_bits_per_sample: int = 64) -> float:
        """Raw bits (complex float32 = 64 per sample, int16 = 32) over index bits, per frame."""
        return self.frame_len * reference_bits_per_sample / self.bits_per_frame(level)

    def message_size(self, level: int, frames: int) -> int:
        return wire.message_size(frames, self.tokens(level), self.bits_per_index)

    @property
    def max_message_size(self) -> int:
        """Bytes of the largest message this model accepts (level 0, wire.MAX_FRAMES frames)."""
        return max(self.message_size(level, wire.MAX_FRAMES) for level in range(self.levels))

    def _check_level(self, level) -> int:
        return check_level(level, self.levels)

    # -- indices ----------------------------------------------------------------------------
    def encode(self, x, level: int, sample: bool = False, seed: int | None = None) -> np.ndarray:
        """complex64 (N, frame_len) -> int64 (N, tokens(level)) indices. Argmax unless `sample`."""
        level = self._check_level(level)
        frames = as_frames(x, self.frame_len)
        return self._encode_frames(frames, magnitudes(frames), level, sample, seed)

    def _encode_frames(self, frames: np.ndarray, scales: np.ndarray, level: int, sample: bool = False,
                       seed: int | None = None) -> np.ndarray:
        """encode() of validated frames whose max |x| per frame is `scales` (float64), at a checked level."""
        # to unit scale: a float32 multiply by the reciprocal, not a complex128 division (5x faster;
        # the frame's largest sample lands within an ulp of 1); frames so small that the reciprocal
        # overflows float32 (max |x| below 3e-39, subnormal) in float64
        reciprocal = 1.0 / np.where(scales > 0, scales, 1)
        largest = np.finfo(np.float32).max
        tiny = reciprocal > largest
        unit = frames * np.minimum(reciprocal, largest).astype(np.float32)[:, None]
        if tiny.any():
            unit[tiny] = (frames[tiny].astype(np.complex128) * reciprocal[tiny, None]).astype(np.complex64)
        step = self.chunk
        if sample:  # sampling stays on eager torch (a generator per call)
            gen = torch.Generator(device=self.device)
            gen.manual_seed(0 if seed is None else int(seed))
            with torch.inference_mode():
                out = [self.model.encode(to_iq(unit[i:i + step], self.device), level, sample, gen).cpu().numpy()
                       for i in range(0, len(unit), step)]
        else:
            out = self.runtime.map("encode", level, iq_array(unit), step)
        return np.concatenate(out).astype(np.int64) if out else np.zeros((0, self.tokens(level)), np.int64)

    def decode(self, codes, level: int, exemplars: bool | None = None) -> np.ndarray:
        """int indices (N, tokens(level)) -> complex64 (N, frame_len), unit scale. At a level of the
        model's exemplar bank the frames are exemplars (see `rendering`) unless `exemplars` is False
        (None: `use_exemplars`)."""
        level = self._check_level(level)
        codes = np.asarray(codes)
        if codes.ndim == 1:
            codes = codes[None, :]
        if codes.ndim != 2 or codes.shape[1] != self.tokens(level) or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"expected integer codes of shape (N, {self.tokens(level)}) for level {level}, "
                             f"got {codes.dtype} {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in 0..{self.codebook_size - 1}")
        idx = codes.astype(np.int64)
        step = self.chunk
        out = [complex_array(y) for y in self.runtime.map("decode", level, idx, step)]
        frames = np.concatenate(out) if out else np.zeros((0, self.frame_len), np.complex64)
        if len(frames) and self.rendering(level, exemplars) == "exemplar":
            frames = self.exemplars.render(frames, idx[:, -1], level)
        return frames

    # -- bytes ------------------------------------------------------------------------------
    def compress(self, x, level: int, sequence: int = 0) -> bytes:
        """complex frames (N, frame_len) -> one wire message (docs/wire-format.md)."""
        frames = as_frames(x, self.frame_len)
        return self.compress_messages(frames, level, len(frames), sequence)[0]

    def compress_messages(self, x, level: int, frames_per_message: int, first_sequence: int = 0) -> list:
        """Frames -> consecutive wire messages of `frames_per_message` frames (the last may be
        shorter), sequence numbers counting from `first_sequence`; one batched encode for all."""
        frames = as_frames(x, self.frame_len)
        level = self._check_level(level)
        raw = magnitudes(frames)
        codes, (scales, saturated) = self._encode_frames(frames, raw, level), frame_scales(frames, raw)
        self.saturated_frames += saturated
        return [wire.pack(codes[i:i + frames_per_message], scales[i:i + frames_per_message], level=level,
                          bits=self.bits_per_index, fingerprint=self.fingerprint,
                          sequence=(first_sequence + k) & 0xFFFFFFFF)
                for k, i in enumerate(range(0, len(frames), frames_per_message))]

    def parse(self, blob) -> wire.Message:
        """Validate a message for this model; raises wire.WireFormatError on anything wrong."""
        return wire.unpack(blob, tokens_per_level=self._tokens, bits=self.bits_per_index,
                           codebook_size=self.codebook_size, fingerprint=self.fingerprint)

    def decode_message(self, message: wire.Message) -> np.ndarray:
        return self.decode(message.indices, message.level) * message.scales[:, None]

    def decompress(self, blob) -> np.ndarray:
        """One wire message -> complex64 (N, frame_len) with each frame's amplitude restored."""
        return self.decode_message(self.parse(blob))

    # -- files ------------------------------------------------------------------------------
    def save(self, directory, **manifest) -> str:
        """Write codec.safetensors + codec.json; `manifest` adds classes, provenance, metrics..."""
        body = {"config": self.config.to_dict(), **{k: v for k, v in self.manifest.items()
                                                       if k not in ("format", "format_version", "weights", "fingerprint")},
                **manifest}
        path = weights_io.save(directory, "codec", self.model.state_dict(), body)
        self.manifest = weights_io.load(path, "codec")[0]
        self.fingerprint_hex = self.manifest["fingerprint"]
        self.fingerprint = bytes.fromhex(self.fingerprint_hex)
        self.runtime.fingerprint = self.fingerprint_hex
        return str(path)

    def __repr__(self):
        return (f"Codec(levels={self.levels}, frame_len={self.frame_len}, K={self.codebook_size}, "
                f"fingerprint={self.fingerprint_hex})")


def load_codec(path=None, device: str = "cpu", runtime: str = DEFAULT_RUNTIME, num_threads: int = 0,
               chunk: int = CHUNK, exemplars: bool = True) -> Codec:
    """Load a codec from a model directory or manifest; None or "" loads the shipped default.

    runtime: "torch" (eager, default), "torchscript" or "onnx" (hqarf.runtime); num_threads: the
    runtime's threads for this codec (0 = leave torch's setting alone; onnx then uses 1); chunk:
    frames per forward pass; exemplars: load the model's exemplar bank where it has one (hqarf.exemplars:
    real frames of the class at its levels), False to decode every level with the network."""
    manifest, state, mpath = weights_io.load(path, "codec")
    try:
        config = HQARFConfig.from_dict(manifest.get("config", {}))
    except (TypeError, ValueError) as exc:
        raise weights_io.WeightsError(f"{mpath}: invalid codec config ({exc})") from None
    model = HQARF(config)
    weights_io.load_into(model, state, mpath.parent / manifest["weights"])
    bank = None
    if exemplars and exemplars_io.exists(mpath):
        bank = exemplars_io.load(mpath, manifest["fingerprint"], config)
    return Codec(model, manifest, device=device, runtime=runtime, num_threads=num_threads, chunk=chunk,
                 weights_dir=mpath.parent, exemplars=bank)
