# SPDX-License-Identifier: GPL-3.0-or-later
"""The file format of `gr-hqarf compress`: a recording's metadata plus its frames as wire messages.

A compressed file is a header followed by the wire messages (docs/wire-format.md) that
`codec.compress` makes from consecutive groups of frames, each prefixed with its length. All
integers are little-endian.

    offset  size  field
    0       8     magic              89 'H' 'Q' 'F' 0D 0A 1A 0A (PNG-style: catches text-mode mangling)
    8       1     version            1
    9       1     level              the level of every message in the file
    10      2     frames per message F (16); message i carries frames [i F, (i + 1) F)
    12      4     frame length       L, complex samples per frame (1024)
    16      8     sample count       S, samples in the original recording
    24      8     sample rate        float64 Hz; 0 when the recording did not say
    32      8     model fingerprint  the codec's (weights.fingerprint), as in every message
    40      16    original datatype  SigMF datatype of the input ("cf32_le", "ci16_le"), ASCII, NUL-padded
    56      4     metadata length    M
    60      M     metadata           the input's SigMF metadata {"global", "captures", "annotations"} as
                                     UTF-8 JSON, zlib-compressed (per-frame annotations repeat a lot)
    60+M    4     header CRC32       zlib CRC32 of bytes [0, 60+M)
    64+M    ...   messages           ceil(ceil(S / L) / F) times: uint32 length n, then n bytes of one
                                     wire message with sequence number i and min(F, frames left) frames

The recording is cut into ceil(S / L) frames; the last one is zero-padded for encoding, and the
sample count cuts the padding off again, so decompression returns exactly S samples. A file ends
right after its last message: a missing message is "truncated", extra bytes are "trailing data".
"""
from __future__ import annotations

import json
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import sigmf, wire
from .frames import pad_to_frames

MAGIC = b"\x89HQF\r\n\x1a\n"
VERSION = 1
FRAMES_PER_MESSAGE = 16
# frames read, encoded or decoded per step: bounds memory on long recordings (8 MB of cf32)
CHUNK_FRAMES = 1024
_FIXED = struct.Struct("<8sBBHIQd8s16sI")
_LENGTH = struct.Struct("<I")


class ContainerError(ValueError):
    """A file that is not a valid gr-hqarf compressed file, or not one this model can decode."""


@dataclass
class Header:
    level: int
    sample_count: int
    fingerprint: str  # hex, 16 digits
    frame_len: int = 1024
    sample_rate: float | None = None
    datatype: str = "cf32_le"
    metadata: dict = field(default_factory=dict)
    frames_per_message: int = FRAMES_PER_MESSAGE
    version: int = VERSION

    @property
    def frame_count(self) -> int:
        return -(-self.sample_count // self.frame_len)

    @property
    def message_count(self) -> int:
        return -(-self.frame_count // self.frames_per_message)

    def frames_in_message(self, index: int) -> int:
        return min(self.frames_per_message, self.frame_count - index * self.frames_per_message)

    def to_bytes(self) -> bytes:
        meta = zlib.compress(json.dumps(self.metadata, separators=(",", ":"), allow_nan=False).encode(), 9)
        datatype = self.datatype.encode("ascii")
        if len(datatype) > 16:
            raise ValueError(f"datatype name {self.datatype!r} longer than 16 characters")
        body = _FIXED.pack(MAGIC, self.version, self.level, self.frames_per_message, self.frame_len,
                           self.sample_count, float(self.sample_rate or 0.0), bytes.fromhex(self.fingerprint),
                           datatype, len(meta)) + meta
        return body + _LENGTH.pack(zlib.crc32(body))


def _read_exact(f, n: int, path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ContainerError(f"{path}: truncated: file ends inside {what}")
    return data


def read_header(f, path) -> Header:
    """Read and check the header from an open binary file, leaving it at the first message."""
    start = f.read(_FIXED.size)
    if not start.startswith(MAGIC[: len(start)]) or not start:
        if start.startswith(wire.MAGIC):
            raise ContainerError(f"{path}: a bare wire message, not a gr-hqarf compressed file")
        raise ContainerError(f"{path}: not a gr-hqarf compressed file (no {MAGIC!r} magic)")
    if len(start) < _FIXED.size:
        raise ContainerError(f"{path}: truncated: file ends inside the header")
    magic, version, level, fpm, frame_len, samples, rate, fp, datatype, meta_len = _FIXED.unpack(start)
    if version != VERSION:
        raise ContainerError(f"{path}: compressed-file version {version}; this gr-hqarf reads version {VERSION}")
    if meta_len > sigmf.MAX_METADATA_BYTES:
        raise ContainerError(f"{path}: header metadata of {meta_len} bytes, more than the "
                             f"{sigmf.MAX_METADATA_BYTES >> 20} MiB gr-hqarf reads")
    meta = _read_exact(f, meta_len, path, "the header metadata")
    (crc,) = _LENGTH.unpack(_read_exact(f, _LENGTH.size, path, "the header"))
    if zlib.crc32(start + meta) != crc:
        raise ContainerError(f"{path}: header checksum mismatch: the file is corrupted")
    if not 1 <= fpm <= wire.MAX_FRAMES or frame_len == 0:
        raise ContainerError(f"{path}: corrupt header (frames per message {fpm}, at most {wire.MAX_FRAMES}; "
                             f"frame length {frame_len})")
    if not math.isfinite(rate) or rate < 0:
        raise ContainerError(f"{path}: corrupt header (sample rate {rate})")
    try:
        datatype = datatype.rstrip(b"\0").decode("ascii")
        # Inflate at most the limit (+1 byte to notice more): a small file may not expand to GBs.
        inflater = zlib.decompressobj()
        text = inflater.decompress(meta, sigmf.MAX_METADATA_BYTES + 1)
        if len(text) > sigmf.MAX_METADATA_BYTES or inflater.unconsumed_tail:
            raise ContainerError(f"{path}: header metadata inflates to more than the "
                                 f"{sigmf.MAX_METADATA_BYTES >> 20} MiB gr-hqarf reads")
        if not inflater.eof:
            raise ContainerError(f"{path}: corrupt header metadata (incomplete zlib stream)")
        metadata = sigmf.parse_metadata(text.decode("utf-8"), f"{path}: header metadata", require_datatype=False)
    except (zlib.error, UnicodeDecodeError) as exc:
        raise ContainerError(f"{path}: corrupt header metadata ({exc})") from None
    except sigmf.RecordingError as exc:
        raise ContainerError(str(exc)) from None
    return Header(level=level, sample_count=samples, fingerprint=fp.hex(), frame_len=frame_len,
                  sample_rate=rate if rate > 0 else None, datatype=datatype, metadata=metadata,
                  frames_per_message=fpm, version=version)


def expected_file_size(header: Header, codec, data_offset: int) -> int:
    """Bytes a complete file with this header has: the header, then every message with its prefix."""
    full, rest = divmod(header.frame_count, header.frames_per_message)
    size = data_offset + full * (_LENGTH.size + codec.message_size(header.level, header.frames_per_message))
    return size + (_LENGTH.size + codec.message_size(header.level, rest) if rest else 0)


def check_model(header: Header, codec, path) -> None:
    """Refuse a file made by another model, naming both fingerprints."""
    if header.fingerprint != codec.fingerprint_hex:
        raise ContainerError(f"{path}: made by model {header.fingerprint}, but the model given is "
                             f"{codec.fingerprint_hex}: decode it with the model that compressed it")
    if header.frame_len != codec.frame_len or header.level >= codec.levels:
        raise ContainerError(f"{path}: level {header.level} of {header.frame_len}-sample frames does not fit "
                             f"the model ({codec.levels} levels of {codec.frame_len}-sample frames)")


# -- compress -------------------------------------------------------------------------------
def compress_recording(codec, recording, path, level: int, frames_per_message: int = FRAMES_PER_MESSAGE,
                       on_frames=None) -> Header:
    """Compress a sigmf.Recording into a file at `path`; returns the header written.

    Reads CHUNK_FRAMES frames at a time; `on_frames(n)` is called after each chunk (progress).
    The file appears only when complete (written under a temporary name, then renamed)."""
    codec.tokens(level)  # raises ValueError for a level the model does not have
    if not 1 <= frames_per_message <= wire.MAX_FRAMES:
        raise ValueError(f"frames per message must be in 1..{wire.MAX_FRAMES}")
    if recording.sample_rate is None:
        warnings.warn(f"{recording.path}: no sample rate (core:sample_rate), so the compressed file has none; "
                      "give it with --sample-rate", sigmf.RecordingWarning, stacklevel=2)
    header = Header(level=level, sample_count=recording.num_samples, fingerprint=codec.fingerprint_hex,
                    frame_len=codec.frame_len, sample_rate=recording.sample_rate, datatype=recording.datatype,
                    metadata=recording.metadata, frames_per_message=frames_per_message)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    step = CHUNK_FRAMES - CHUNK_FRAMES % frames_per_message or frames_per_message
    sequence = 0
    try:
        f = open(tmp, "wb")
    except OSError as exc:
        raise ContainerError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with f:
            f.write(header.to_bytes())
            for start in range(0, recording.num_samples, step * codec.frame_len):
                samples = recording.read(start, step * codec.frame_len)
                frames = pad_to_frames(samples, codec.frame_len)
                try:
                    # One batched forward pass per chunk; the bytes equal codec.compress per group.
                    blobs = codec.compress_messages(frames, level, frames_per_message, sequence)
                except ValueError as exc:
                    raise ValueError(f"{recording.path}: samples from {start}: {exc}") from None
                for blob in blobs:
                    f.write(_LENGTH.pack(len(blob)) + blob)
                sequence += len(blobs)
                if on_frames:
                    on_frames(len(frames))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return header


# -- decompress -----------------------------------------------------------------------------
def read_messages(f, header: Header, codec, path):
    """Yield each message of the file, parsed (wire.Message) and checked against the header."""
    for index in range(header.message_count):
        prefix = f.read(_LENGTH.size)
        if len(prefix) < _LENGTH.size:
            raise ContainerError(f"{path}: truncated: {index} of {header.message_count} messages present")
        (length,) = _LENGTH.unpack(prefix)
        blob = f.read(length)
        if len(blob) < length:
            raise ContainerError(f"{path}: truncated: file ends inside message {index} of {header.message_count}")
        try:
            message = codec.parse(blob)
        except wire.WireFormatError as exc:
            raise ContainerError(f"{path}: message {index}: {exc}") from None
        expected = header.frames_in_message(index)
        if (message.level, message.sequence, message.frames) != (header.level, index, expected):
            raise ContainerError(f"{path}: message {index} is level {message.level}, sequence "
                                 f"{message.sequence}, {message.frames} frames; the header expects level "
                                 f"{header.level}, sequence {index}, {expected} frames")
        yield message
    if f.read(1):
        raise ContainerError(f"{path}: trailing data after the last of {header.message_count} messages")


class CompressedFile:
    """A compressed file opened for reading: `header` at once, the samples on demand.

        with CompressedFile(path) as cf:
            for chunk in cf.samples(codec):   # complex64 chunks, exactly header.sample_count in all
                ...
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise ContainerError(f"{self.path}: cannot open ({exc.strerror or exc})") from None
        try:
            self.header = read_header(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        self._data_offset = self._file.tell()

    def check(self, codec) -> None:
        """Refuse a file of another model, or whose size is not what its header announces (so a
        crafted sample count cannot make a reader allocate for frames that are not there)."""
        check_model(self.header, codec, self.path)
        expected = expected_file_size(self.header, codec, self._data_offset)
        actual = os.fstat(self._file.fileno()).st_size
        if actual < expected:
            raise ContainerError(f"{self.path}: truncated: {actual} bytes, the header announces "
                                 f"{self.header.message_count} messages in {expected} bytes")
        if actual > expected:
            raise ContainerError(f"{self.path}: trailing data: {actual} bytes, the header announces "
                                 f"{self.header.message_count} messages in {expected} bytes")

    def samples(self, codec, on_frames=None):
        """Decode every message (checked against `codec` first); `on_frames(n)` after each batch."""
        header = self.header
        self.check(codec)
        self._file.seek(self._data_offset)
        left = header.sample_count
        pending = []
        messages = read_messages(self._file, header, codec, self.path)
        while True:
            message = next(messages, None)
            if message is not None:
                pending.append(message)
            if pending and (message is None or sum(m.frames for m in pending) >= CHUNK_FRAMES):
                # One batched decode for several messages: the same samples as codec.decompress of each.
                codes = np.concatenate([m.indices for m in pending])
                scales = np.concatenate([m.scales for m in pending])
                samples = (codec.decode(codes, header.level) * scales[:, None]).reshape(-1)[:left]
                left -= len(samples)
                pending = []
                if on_frames:
                    on_frames(len(codes))
                yield samples.astype(np.complex64, copy=False)
            if message is None:
                return

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_header(path) -> Header:
    """The header of a compressed file (for `gr-hqarf info`), without reading its messages."""
    with CompressedFile(path) as compressed:
        return compressed.header


def is_compressed_file(path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
