# SPDX-License-Identifier: GPL-3.0-or-later
"""The gr-hqarf wire format: how a batch of frames' codeword indices becomes bytes and back.

Specified in docs/wire-format.md. Everything here is numpy; `unpack` validates every field and
raises only WireFormatError, whatever bytes it is given.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"HQAR"
VERSION = 1
# magic, version, level, bits per index, flags, fingerprint, sequence number, frame count
_HEADER = struct.Struct("<4sBBBB8sIH")
HEADER_SIZE = _HEADER.size  # 22
CRC_SIZE = 4
SCALE_SIZE = 2  # bfloat16 per frame
FINGERPRINT_SIZE = 8
# Frames per message at most. The 16-bit field could say 65535, but one such level-0 message is
# 25 MB and its indices far more once unpacked: a receiver refuses frame counts above this limit
# ("frame_count") before touching the payload, so a message never costs more than a few MiB.
MAX_FRAMES = 1024
# Indices unpacked or packed per step: bounds the working memory of pack/unpack (about 1 MiB).
_CHUNK_INDICES = 1 << 16


# Why a message is rejected: WireFormatError.reason is one of these (receivers count by kind).
REASONS = ("truncated", "magic", "version", "level", "bits", "flags", "frame_count", "length",
           "checksum", "fingerprint", "index_range", "padding", "scale")


class WireFormatError(ValueError):
    """A message that is not a valid gr-hqarf message for this model.

    `reason` is a short machine-readable kind, one of REASONS, so receivers can count failures by kind.
    """

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown wire rejection reason {reason!r}")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Message:
    level: int
    sequence: int
    fingerprint: bytes
    indices: np.ndarray  # (frames, tokens) in the smallest unsigned type that holds them (index_dtype)
    scales: np.ndarray  # (frames,) float32 amplitude scale of each frame

    @property
    def frames(self) -> int:
        return self.indices.shape[0]


def message_size(frames: int, tokens: int, bits: int) -> int:
    """Bytes of a message carrying `frames` frames of `tokens` indices of `bits` bits."""
    return HEADER_SIZE + SCALE_SIZE * frames + packed_size(frames * tokens, bits) + CRC_SIZE


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def index_dtype(bits: int) -> np.dtype:
    """The unsigned type received indices are held in: uint8 up to 8 bits, then uint16, uint32."""
    return np.dtype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32)


def _width(bits: int) -> int:
    return index_dtype(bits).itemsize * 8


# Widths whose least common multiple with 8 fits in 64 bits: `group` indices make a whole number of
# bytes, packed with integer shifts (6 bits: 4 indices in 3 bytes), 2x faster than unpacking bits.
# Every group size (1, 2, 4 or 8) divides _CHUNK_INDICES, so each chunk ends on a byte.
_GROUP = {bits: math.lcm(bits, 8) // bits for bits in range(1, 33) if math.lcm(bits, 8) <= 64}


def _pack_groups(flat: np.ndarray, bits: int, group: int) -> bytes:
    count = flat.size
    padded = np.zeros(-(-count // group) * group, np.uint64)
    padded[:count] = flat
    lanes = padded.reshape(-1, group)
    word = np.zeros(len(lanes), np.uint64)
    for j in range(group):  # MSB first: index j of a group sits (group - 1 - j) * bits above the bottom
        word |= lanes[:, j] << np.uint64((group - 1 - j) * bits)
    nbytes = group * bits // 8
    out = word.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - nbytes:]
    return out.tobytes()[:packed_size(count, bits)]


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Concatenate indices MSB-first at `bits` bits each, zero-padded to a whole byte.

    Works _CHUNK_INDICES at a time (a multiple of 8, so every chunk ends on a byte)."""
    flat = np.asarray(indices).reshape(-1)
    group = _GROUP.get(bits)
    if group:
        return b"".join(_pack_groups(flat[start:start + _CHUNK_INDICES], bits, group)
                        for start in range(0, flat.size, _CHUNK_INDICES))
    width = _width(bits)
    big_endian = index_dtype(bits).newbyteorder(">")
    parts = []
    for start in range(0, flat.size, _CHUNK_INDICES):
        chunk = flat[start:start + _CHUNK_INDICES].astype(big_endian)
        bitarr = np.unpackbits(chunk.view(np.uint8).reshape(len(chunk), width // 8), axis=1)
        parts.append(bitarr[:, width - bits:].reshape(-1))
    if not parts:
        return b""
    if len(parts) == 1:
        return np.packbits(parts[0]).tobytes()
    # every chunk but the last holds a multiple of 8 bits: packing them one by one is exact
    return b"".join(np.packbits(p).tobytes() for p in parts)


def unpack_indices(data: bytes, count: int, bits: int) -> tuple[np.ndarray, bool]:
    """Inverse of pack_indices; also returns whether the padding bits were all zero.

    The indices come back as index_dtype(bits) (1 byte each for 6-bit indices, not 8), unpacked
    _CHUNK_INDICES at a time, so the working memory stays about 1 MiB whatever the count."""
    raw = np.frombuffer(data, dtype=np.uint8)
    dtype, width = index_dtype(bits), _width(bits)
    out = np.empty(count, dtype)
    chunk_bytes = _CHUNK_INDICES * bits // 8
    for k, start in enumerate(range(0, count, _CHUNK_INDICES)):
        n = min(_CHUNK_INDICES, count - start)
        bitarr = np.unpackbits(raw[k * chunk_bytes: k * chunk_bytes + (n * bits + 7) // 8])[: n * bits]
        padded = np.zeros((n, width), np.uint8)
        padded[:, width - bits:] = bitarr.reshape(n, bits)
        out[start:start + n] = np.packbits(padded, axis=1).view(dtype.newbyteorder(">")).reshape(n)
    used = count * bits
    tail = np.unpackbits(raw[used // 8:])[used % 8:] if len(raw) * 8 > used else np.zeros(0, np.uint8)
    return out, not tail.any()


def scales_to_bfloat16(scales: np.ndarray) -> bytes:
    """float32 -> bfloat16 (upper 16 bits, round to nearest even): 8-bit exponent, 0.4 % step."""
    as_int = np.ascontiguousarray(scales, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (as_int + 0x7FFF + ((as_int >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def scales_from_bfloat16(data: bytes) -> np.ndarray:
    halves = np.frombuffer(data, dtype="<u2").astype(np.uint32)
    return (halves << 16).view(np.float32)


def pack(indices: np.ndarray, scales: np.ndarray, *, level: int, bits: int, fingerprint: bytes,
         sequence: int = 0) -> bytes:
    """Build one message from (frames, tokens) indices and per-frame amplitude scales."""
    indices = np.asarray(indices)
    frames = indices.shape[0]
    if indices.ndim != 2 or not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"indices must be (frames, tokens) with 1..{MAX_FRAMES} frames, got {indices.shape}")
    if indices.min() < 0 or indices.max() >= (1 << bits):
        raise ValueError(f"indices must fit in {bits} bits")
    scales = np.asarray(scales, dtype=np.float32).reshape(-1)
    if scales.shape[0] != frames or not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise ValueError("need one finite, non-negative scale per frame")
    if len(fingerprint) != FINGERPRINT_SIZE:
        raise ValueError(f"fingerprint must be {FINGERPRINT_SIZE} bytes")
    body = (_HEADER.pack(MAGIC, VERSION, level, bits, 0, fingerprint, sequence & 0xFFFFFFFF, frames)
            + scales_to_bfloat16(scales) + pack_indices(indices, bits))
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(blob, *, tokens_per_level: list[int], bits: int, codebook_size: int,
           fingerprint: bytes | None) -> Message:
    """Parse and validate a message for a model with the given geometry and fingerprint.

    Checks, in order: length, magic, version, level, bits, flags, frame count, length against the
    header, CRC32, fingerprint, padding bits, index range, scales.
    """
    try:
        blob = bytes(blob)
    except (TypeError, ValueError) as exc:
        raise WireFormatError("truncated", f"message is not a byte string: {exc}") from None
    if len(blob) < HEADER_SIZE + CRC_SIZE:
        raise WireFormatError("truncated", f"message truncated: {len(blob)} bytes, a header and "
                              f"checksum alone take {HEADER_SIZE + CRC_SIZE}")
    magic, version, level, msg_bits, flags, msg_fp, sequence, frames = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise WireFormatError("magic", f"bad magic {magic!r}, expected {MAGIC!r}: not a gr-hqarf message")
    if version != VERSION:
        raise WireFormatError("version", f"unsupported wire format version {version} (this decoder reads {VERSION})")
    if level >= len(tokens_per_level):
        raise WireFormatError("level", f"unknown level {level}: the model has levels 0..{len(tokens_per_level) - 1}")
    if msg_bits != bits:
        raise WireFormatError("bits", f"message packs {msg_bits} bits per index, the model uses {bits}")
    if flags != 0:
        raise WireFormatError("flags", f"unknown flags 0x{flags:02x}")
    if frames == 0:
        raise WireFormatError("frame_count", "frame count is 0")
    if frames > MAX_FRAMES:
        raise WireFormatError("frame_count", f"frame count {frames} above the limit of {MAX_FRAMES} "
                              f"frames per message (docs/wire-format.md)")
    tokens = tokens_per_level[level]
    expected = message_size(frames, tokens, bits)
    if len(blob) < expected:
        raise WireFormatError("truncated", f"message truncated: {len(blob)} bytes, header announces "
                              f"{frames} frame(s) at level {level} = {expected} bytes")
    if len(blob) > expected:
        raise WireFormatError("length", f"frame count {frames} inconsistent with length: level {level} "
                              f"needs {expected} bytes, got {len(blob)}")
    (crc,) = struct.unpack_from("<I", blob, expected - CRC_SIZE)
    if zlib.crc32(blob[: expected - CRC_SIZE]) != crc:
        raise WireFormatError("checksum", "checksum mismatch: message corrupted in transit")
    if fingerprint is not None and msg_fp != fingerprint:
        raise WireFormatError("fingerprint", f"model fingerprint mismatch: message made by model "
                              f"{msg_fp.hex()}, this decoder has {fingerprint.hex()}")
    offset = HEADER_SIZE
    scales = scales_from_bfloat16(blob[offset: offset + SCALE_SIZE * frames])
    offset += SCALE_SIZE * frames
    indices, padding_clean = unpack_indices(blob[offset: expected - CRC_SIZE], frames * tokens, bits)
    if not padding_clean:
        raise WireFormatError("padding", "non-zero padding bits after the last index")
    if int(indices.max()) >= codebook_size:
        raise WireFormatError("index_range", f"index {int(indices.max())} out of range for a codebook of "
                              f"{codebook_size} codewords")
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise WireFormatError("scale", "amplitude scale is not a finite non-negative number")
    return Message(level=level, sequence=sequence, fingerprint=msg_fp,
                   indices=indices.reshape(frames, tokens), scales=scales)
