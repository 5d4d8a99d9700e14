# SPDX-License-Identifier: GPL-3.0-or-later
"""The blocks' shared PMT vocabulary: the message port, stream tag names, PDU metadata keys, the
true-label tag's parsing, and one-time warnings (GNU Radio blocks only; the codec core has no PMT)."""
from __future__ import annotations

import pmt

PDUS = pmt.intern("pdus")

# Stream tags the encoder reads (UHD's names) and the PDU metadata keys it writes.
TAG_RX_TIME = "rx_time"            # (uint64 full seconds, double fractional seconds), as uhd.usrp_source
TAG_RX_RATE = "rx_rate"            # double, samples per second, as uhd.usrp_source
TAG_SAMPLE_RATE = "sample_rate"    # accepted as a synonym of rx_rate
TAG_RX_FREQ = "rx_freq"            # double, Hz, as uhd.usrp_source
TAG_TRUE_LABEL = "true_label"      # class index (integer) or class name (symbol); -1 = unknown

META_LEVEL = pmt.intern("level")
META_SEQUENCE = pmt.intern("sequence")
META_PDU_NUM = pmt.intern("pdu_num")
META_FRAMES = pmt.intern("frames")
META_FINGERPRINT = pmt.intern("fingerprint")
META_SAMPLE_START = pmt.intern("sample_start")
META_RX_TIME = pmt.intern("rx_time")
META_SAMPLE_RATE = pmt.intern("sample_rate")
META_RX_FREQ = pmt.intern("rx_freq")
META_TRUE_LABEL = pmt.intern("true_label")

# Stream tags the decoder writes at every frame start (and modrec_sink reads past).
TAG_LEVEL = "hqarf_level"          # long: the level the frame was coded at
TAG_SEQUENCE = "hqarf_sequence"    # long: sequence number of the PDU it came in


# A PDU's bytes <-> a PMT u8vector. pmt.init_u8vector takes a Python list of ints and
# pmt.u8vector_elements returns one (about 80 us for a level-0 PDU of 6 kB, each way); PMT's own
# serialisation of a u8vector is a fixed 8-byte header and the bytes, so going through
# pmt.deserialize_str / pmt.serialize_str is one copy. Checked once at import against the list
# path; where a PMT build serialises otherwise, the list path is used.
def _u8_header(size: int) -> bytes:
    return b"\x0a\x00" + size.to_bytes(4, "big") + b"\x01\x00"  # uniform vector, u8, length, 1 pad byte


def _serialisation_matches() -> bool:
    try:
        probe = bytes(range(7))
        listed = pmt.init_u8vector(len(probe), list(probe))
        built = pmt.deserialize_str(_u8_header(len(probe)) + probe)
        return (pmt.is_u8vector(built) and pmt.equal(built, listed)
                and pmt.serialize_str(listed) == _u8_header(len(probe)) + probe)
    except Exception:  # pylint: disable=broad-except  (any surprise: keep the list path)
        return False


_FAST_U8 = _serialisation_matches()


def u8vector(data: bytes):
    """bytes -> PMT u8vector (the blob of a PDU)."""
    if _FAST_U8 and len(data) < 1 << 32:
        return pmt.deserialize_str(_u8_header(len(data)) + bytes(data))
    return pmt.init_u8vector(len(data), list(data))


def u8vector_bytes(vector) -> bytes:
    """PMT u8vector -> bytes (the caller has checked pmt.is_u8vector)."""
    if _FAST_U8:
        raw = pmt.serialize_str(vector)
        if raw[:8] == _u8_header(len(raw) - 8):
            return raw[8:]
    return bytes(pmt.u8vector_elements(vector))


def label_index(value, classes) -> int | None:
    """A true-label tag value (class index or class name PMT) -> class index, -1 for unknown,
    None when the value is neither (the caller warns)."""
    try:
        if pmt.is_integer(value) or pmt.is_uint64(value):
            index = int(pmt.to_long(value)) if pmt.is_integer(value) else int(pmt.to_uint64(value))
        elif pmt.is_real(value):
            index = int(pmt.to_double(value))
        elif pmt.is_symbol(value):
            name = pmt.symbol_to_string(value)
            if name in classes:
                return classes.index(name)
            return int(name) if name.lstrip("-").isdigit() else None
        else:
            return None
    except (ValueError, RuntimeError):
        return None
    if index < -1 or (classes and index >= len(classes)):
        return None
    return index


class WarnsOnce:
    """Mixin of the blocks: `_warn_once(kind, text)` logs the first warning of each kind and stays
    silent for the rest (the block's counters keep counting), `_label_of` reads a true_label tag.
    The block sets `self._warned = set()`."""

    def _warn_once(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.logger.warn(f"{text} (further occurrences are not logged)")

    def _label_of(self, tag, classes) -> int | None:
        """The class index of a true_label stream tag (-1: unknown), or None after a one-time warning."""
        index = label_index(tag.value, classes)
        if index is None:
            self._warn_once("label", f"ignoring true_label tag {pmt.write_string(tag.value)}: not a class "
                                     f"index or one of {classes}")
        return index
