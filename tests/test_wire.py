# SPDX-License-Identifier: GPL-3.0-or-later
"""Wire format: exact round trips, every rejection path, and random bytes never escape WireFormatError."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_codec, random_frames
from gnuradio.hqarf import WireFormatError, load_codec, wire


@pytest.fixture(scope="module")
def codec(tiny_model_dir):
    return load_codec(tiny_model_dir)


def reseal(blob: bytes) -> bytes:
    """Recompute the CRC so a test reaches the check after it."""
    body = blob[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def with_header_byte(blob, offset, value):
    b = bytearray(blob)
    b[offset] = value
    return reseal(bytes(b))


def reason_of(codec, blob):
    with pytest.raises(WireFormatError) as info:
        codec.parse(blob)
    return info.value.reason, str(info.value)


def test_pack_unpack_indices_exact(rng):
    for bits in (1, 3, 6, 7, 8, 11):
        idx = rng.integers(0, 1 << bits, size=37 * 5)
        data = wire.pack_indices(idx, bits)
        assert len(data) == wire.packed_size(idx.size, bits)
        back, clean = wire.unpack_indices(data, idx.size, bits)
        assert clean and np.array_equal(back, idx)


def test_pack_indices_by_shifts_matches_the_bit_by_bit_path(rng, monkeypatch):
    """Widths whose groups fit in 64 bits are packed with integer shifts (wire._GROUP); the result is
    the generic unpackbits path's, byte for byte, at every width and awkward count."""
    # a known answer: 6-bit 1, 2, 3, 4 = 000001 000010 000011 000100 -> 0x04 0x20 0xc4
    assert wire.pack_indices(np.array([1, 2, 3, 4]), 6) == bytes([0x04, 0x20, 0xC4])
    assert wire.pack_indices(np.array([63]), 6) == bytes([0xFC])
    fast = {}
    for bits in range(1, 17):
        for count in (0, 1, 3, 7, 8, 9, 8192, 70001):
            idx = rng.integers(0, 1 << bits, size=count)
            fast[bits, count] = (idx, wire.pack_indices(idx, bits))
    assert {6, 8, 10, 12, 16} <= set(wire._GROUP)
    monkeypatch.setattr(wire, "_GROUP", {})  # the generic path only
    for (bits, count), (idx, data) in fast.items():
        assert wire.pack_indices(idx, bits) == data, (bits, count)


def test_round_trip_every_level(codec, rng):
    x = random_frames(rng, 3, scale=7.5)
    for level in range(codec.levels):
        blob = codec.compress(x, level, sequence=41 + level)
        msg = codec.parse(blob)
        assert (msg.level, msg.sequence, msg.frames) == (level, 41 + level, 3)
        assert np.array_equal(msg.indices, codec.encode(x, level))
        assert len(blob) == codec.message_size(level, 3)
        # the amplitude is carried (bfloat16: within 0.4 %)
        np.testing.assert_allclose(msg.scales, np.abs(x).max(1), rtol=4e-3)
        y = codec.decompress(blob)
        np.testing.assert_allclose(y, codec.decode(msg.indices, level) * msg.scales[:, None], rtol=1e-6)


def test_sizes_and_overhead(codec):
    # 64 codewords -> 6 bits; level 4 of a 1024-sample frame has 32 indices = 24 bytes.
    assert codec.bits_per_index == 6
    assert codec.message_size(4, 1) == 22 + 2 + 24 + 4
    packed = 16 * 24
    assert (codec.message_size(4, 16) - packed) / packed < 0.25


def test_bfloat16_scale_relative_error(rng):
    s = np.exp(rng.uniform(-40, 40, 1000)).astype(np.float32)
    back = wire.scales_from_bfloat16(wire.scales_to_bfloat16(s))
    assert np.max(np.abs(back / s - 1)) < 2 ** -8


def test_truncated(codec, rng):
    blob = codec.compress(random_frames(rng, 2), 2)
    for cut in (0, 5, 25, len(blob) - 1):
        reason, text = reason_of(codec, blob[:cut])
        assert reason == "truncated" and "truncated" in text


def test_bad_magic_and_version(codec, rng):
    blob = codec.compress(random_frames(rng, 1), 0)
    assert reason_of(codec, b"XXXX" + blob[4:])[0] == "magic"
    assert reason_of(codec, with_header_byte(blob, 4, 9))[0] == "version"


def test_unknown_level(codec, rng):
    blob = codec.compress(random_frames(rng, 1), 0)
    reason, text = reason_of(codec, with_header_byte(blob, 5, 7))
    assert reason == "level" and "unknown level 7" in text


def test_checksum(codec, rng):
    blob = bytearray(codec.compress(random_frames(rng, 2), 1))
    blob[40] ^= 0x10
    assert reason_of(codec, bytes(blob))[0] == "checksum"


def test_fingerprint(codec, other_model_dir, rng):
    other = load_codec(other_model_dir)
    assert other.fingerprint != codec.fingerprint
    blob = other.compress(random_frames(rng, 1), 3)
    reason, text = reason_of(codec, blob)
    assert reason == "fingerprint" and other.fingerprint_hex in text


def test_frame_count_inconsistent_with_length(codec, rng):
    blob = codec.compress(random_frames(rng, 2), 4)
    # Same header and CRC scheme, one extra frame announced: now too short -> truncated.
    b = bytearray(blob)
    struct.pack_into("<H", b, 20, 3)
    assert reason_of(codec, reseal(bytes(b)))[0] == "truncated"
    # One frame announced for a two-frame body: length inconsistent.
    struct.pack_into("<H", b, 20, 1)
    assert reason_of(codec, reseal(bytes(b)))[0] == "length"
    struct.pack_into("<H", b, 20, 0)
    assert reason_of(codec, reseal(bytes(b)))[0] == "frame_count"


def test_index_out_of_range(tmp_path, rng):
    # 48 codewords need 6 bits, so indices 48..63 are representable but invalid.
    small = load_codec(make_codec(tmp_path / "k48", codebook_size=48))
    indices = np.full((1, small.tokens(4)), 63)
    blob = wire.pack(indices, np.ones(1), level=4, bits=6, fingerprint=small.fingerprint)
    reason, text = reason_of(small, blob)
    assert reason == "index_range" and "63" in text


def test_padding_bits_checked():
    fp = b"\x01" * 8
    # 5 indices of 3 bits = 15 bits -> 2 bytes with one padding bit.
    blob = bytearray(wire.pack(np.array([[1, 2, 3, 4, 5]]), np.ones(1), level=0, bits=3, fingerprint=fp))
    ok = wire.unpack(bytes(blob), tokens_per_level=[5], bits=3, codebook_size=8, fingerprint=fp)
    assert ok.indices.tolist() == [[1, 2, 3, 4, 5]]
    blob[-5] |= 0x01  # the last bit of the index bytes is padding
    with pytest.raises(WireFormatError) as info:
        wire.unpack(reseal(bytes(blob)), tokens_per_level=[5], bits=3, codebook_size=8, fingerprint=fp)
    assert info.value.reason == "padding"


def test_not_bytes(codec):
    with pytest.raises(WireFormatError):
        codec.parse(object())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_random_bytes_only_raise_wire_errors(codec, data):
    try:
        codec.decompress(data)
    except WireFormatError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255), cut=st.integers(0, 10_000),
       level=st.integers(0, 4))
def test_mutated_messages_only_raise_wire_errors(codec, position, value, cut, level):
    blob = bytearray(codec.compress(np.ones((2, 1024), np.complex64), level))
    blob[position % len(blob)] = value
    for candidate in (bytes(blob), reseal(bytes(blob)), bytes(blob[: cut % (len(blob) + 1)])):
        try:
            out = codec.decompress(candidate)
            assert out.shape == (2, 1024) and out.dtype == np.complex64
        except WireFormatError:
            pass


def test_compress_messages_equals_compress_per_group(codec, rng):
    x = random_frames(rng, 5)
    blobs = codec.compress_messages(x, 3, 2, first_sequence=0xFFFFFFFF)
    assert blobs == [codec.compress(x[0:2], 3, sequence=0xFFFFFFFF), codec.compress(x[2:4], 3, sequence=0),
                     codec.compress(x[4:5], 3, sequence=1)]
