# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio block: HQARF PDUs in on message port `pdus`, reconstructed complex IQ frames out.

The message handler only validates (`Codec.parse`) and queues; work() decodes queued messages in
batches (`Codec.decode`, amplitude restored as `Codec.decode_message` does) and emits them.
"""
from __future__ import annotations

import collections

import numpy as np
import pmt
from gnuradio import gr

from .codec import load_codec
from .runtime import check_runtime
from ._checks import check_int
from ._vocabulary import (META_RX_FREQ, META_RX_TIME, META_SAMPLE_RATE, META_TRUE_LABEL, PDUS, TAG_LEVEL,
                          TAG_RX_FREQ, TAG_RX_RATE, TAG_RX_TIME, TAG_SEQUENCE, TAG_TRUE_LABEL, u8vector_bytes)
from .wire import REASONS as WIRE_REASONS

# Stream tags written at every frame start: hqarf_level and hqarf_sequence (_vocabulary.py).
_LEVEL, _SEQUENCE = pmt.intern(TAG_LEVEL), pmt.intern(TAG_SEQUENCE)
# Written at the first frame of a PDU when the PDU metadata carries them: rx_time (UHD tuple),
# rx_rate (from sample_rate), rx_freq; at every frame: true_label (class index) when known.
_RX_TIME, _RX_RATE, _RX_FREQ = (pmt.intern(k) for k in (TAG_RX_TIME, TAG_RX_RATE, TAG_RX_FREQ))
_TRUE_LABEL = pmt.intern(TAG_TRUE_LABEL)

# Every WireFormatError.reason (wire.REASONS) is counted as dropped_<reason>.
# Decoded frames per work() call at most: the output buffer is sized to hold this many.
BATCH_FRAMES = 64
# Frames queued at most by default (with compact indices about 8.5 MB at level 0 of 1024-sample frames).
DEFAULT_MAX_QUEUED_FRAMES = 16384
# Sequence numbers remembered to tell a duplicate or a late message from a restarted sender.
SEQUENCE_WINDOW = 4096


class _Queued:
    """A validated message waiting to be emitted; `done` frames of it already are."""
    __slots__ = ("message", "tags", "labels", "done")

    def __init__(self, message, tags, labels):
        self.message = message
        self.tags = tags        # [(key, value)] for the first frame
        self.labels = labels    # per-frame true labels, or None
        self.done = 0


class decoder(gr.sync_block):
    """HQARF Decoder: PDUs on message port `pdus` -> complex IQ frames, amplitude restored.

    Each PDU `(metadata, u8vector)` from hqarf.encoder (directly, over ZMQ, from a file...) is
    validated against this model (CRC, geometry, fingerprint) when it arrives and queued; work()
    decodes the queue in batches and writes codec.frame_len samples per frame, equal to
    `codec.decompress(bytes)`. Levels may change from one PDU to the next. Tags at every frame
    start: `hqarf_level` and `hqarf_sequence` (longs); at a PDU's first frame also `rx_time`,
    `rx_rate` and `rx_freq` when its metadata has rx_time / sample_rate / rx_freq; at every frame
    `true_label` when the metadata carries labels (hqarf.modrec_sink scores with them).

    Bad input never stops the flowgraph: a message that is not a (metadata, u8vector) pair is
    counted in `dropped_malformed`; one that the wire format rejects in `dropped_<reason>`
    (`fingerprint` for another model's PDUs, `checksum`, `truncated`, ...). Each kind is logged
    once as a warning, then only counted. At most `max_queue` messages wait; more are dropped on
    arrival and counted in `dropped_overflow`. A PDU whose sequence number is not the previous
    one's + 1 counts one `sequence_gaps` (lost in transit, or a restarted sender) and, going
    forward, adds the number skipped to `missing_messages`.

    Sequence policy (the last SEQUENCE_WINDOW = 4096 numbers are remembered): a sequence number
    already accepted is a replay or duplicate: dropped, counted in `dropped_duplicate`. One that
    was skipped earlier (counted missing) arriving late is decoded, counted in `reordered`, and
    no longer counted missing. A jump forward counts one `sequence_gaps` and the skipped numbers in
    `missing_messages`; a jump backward to a number never seen counts one `sequence_gaps` and
    restarts the tracking (a restarted sender).

    Bounds: at most `max_queue` messages and `max_queued_frames` frames wait (indices held as
    1-2 bytes each); a PDU beyond either is dropped on arrival (`dropped_overflow`). A PDU larger
    than the largest message the model accepts (wire.MAX_FRAMES frames) is refused before it is
    copied (`dropped_length`).

    Stop: frames still queued when the flowgraph is stopped (tb.stop() of a running cloud), and
    those of PDUs still waiting for the message handler then, are counted in
    `lost_at_stop_frames` / `lost_at_stop_messages` and logged; to deliver them, post
    "done" to the `system` port and let the block finish (flowgraphs.Cloud.drain).

    End: with no data the block sleeps in the scheduler (no spinning) and wakes when a message
    arrives. It finishes once every queued frame is out and an upstream message block has
    finished (GNU Radio posts "done" to the `system` port of message neighbours, e.g. when an
    hqarf.encoder's input ends); a source that never finishes (ZMQ) needs tb.stop(). To end a
    flowgraph fed by hand, post `pmt.cons(pmt.intern("done"), pmt.from_long(1))` to port `system`.

    Rendering: `exemplars` (default True) decodes the levels of the model's exemplar bank (levels 2-4 of
    the shipped model; `gr-hqarf info`) to a real frame of the transmitted class, the one of the bank
    whose rendering is nearest, instead of the decoder network's rendering; False decodes every level
    with the network. GRC callback set_exemplars. See hqarf.exemplars and the README.

    Speed: `runtime` ("torch" default, "torchscript", "onnx") and `num_threads` (1; 0 = leave
    torch's setting alone) as for hqarf.encoder; queued PDUs of one level are decoded together
    (up to BATCH_FRAMES frames per call) in chunks of `codec.chunk` frames.

    Frame accounting: `received_frames` counts the frames of every PDU that passed validation;
    each of them is decoded (`decoded_frames`), dropped as a duplicate or for overflow
    (`frames_dropped`), lost in a failed decode (`frames_failed`) or still queued / lost at stop
    (`queued_frames`, `lost_at_stop_frames`). PDUs refused by validation have no trusted frame
    count: they are counted as messages (`dropped_<reason>`).

    Counters: `counters()` returns received, received_frames, accepted, decoded_messages, decoded_frames,
    dropped_malformed, dropped_<reason> for every wire reason, dropped_overflow, sequence_gaps,
    missing_messages, dropped_duplicate, reordered, decode_errors, frames_failed, frames_dropped, lost_at_stop_frames,
    lost_at_stop_messages, queued, queued_frames.
    """

    def __init__(self, model="", device="cpu", max_queue=64, num_threads=1, runtime="torch",
                 max_queued_frames=DEFAULT_MAX_QUEUED_FRAMES, exemplars=True):
        gr.sync_block.__init__(self, name="hqarf_decoder", in_sig=None, out_sig=[np.complex64])
        self.max_queue = check_int("max_queue", max_queue, 1)
        self.max_queued_frames = check_int("max_queued_frames", max_queued_frames, 1)
        num_threads = check_int("num_threads", num_threads, 0)
        self.codec = load_codec(model or None, device=device, runtime=check_runtime(runtime),
                                num_threads=num_threads)
        self.set_exemplars(exemplars)
        self.frame_len = self.codec.frame_len
        self.set_output_multiple(self.frame_len)
        self.set_min_output_buffer(0, 2 * BATCH_FRAMES * self.frame_len)
        self.set_max_noutput_items(BATCH_FRAMES * self.frame_len)
        self.message_port_register_in(PDUS)
        self.set_msg_handler(PDUS, self.handle_pdu)
        self._queue: collections.deque = collections.deque()
        self._expected_sequence = None
        self._seen = collections.OrderedDict()  # sequence -> True (accepted) / False (missing)
        self._queued_frames = 0
        self._max_bytes = self.codec.max_message_size
        self._warned: set = set()
        self._level_pmt = [pmt.from_long(level) for level in range(self.codec.levels)]
        self._counts = {"received": 0, "received_frames": 0, "accepted": 0, "decoded_messages": 0, "decoded_frames": 0,
                        "dropped_malformed": 0, **{f"dropped_{r}": 0 for r in WIRE_REASONS},
                        "dropped_overflow": 0, "dropped_duplicate": 0, "sequence_gaps": 0, "missing_messages": 0,
                        "reordered": 0, "decode_errors": 0, "frames_failed": 0, "frames_dropped": 0,
                        "lost_at_stop_frames": 0, "lost_at_stop_messages": 0}

    def set_exemplars(self, exemplars) -> None:
        """GRC callback: True decodes the levels of the model's exemplar bank to real frames of the class
        (where the model has one), False every level with the decoder network."""
        if not isinstance(exemplars, (bool, np.bool_, int, np.integer)) or exemplars not in (0, 1):
            raise ValueError(f"exemplars must be True or False, got {exemplars!r}")
        self.codec.use_exemplars = bool(exemplars) and self.codec.exemplars is not None

    def counters(self) -> dict:
        return {**self._counts, "queued": len(self._queue), "queued_frames": self._queued_frames}

    # -- message side: validate and queue only --------------------------------------------------
    def handle_pdu(self, msg) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # an exception here would abort the whole process
            self._drop("malformed", f"dropping a message that could not be read: {exc!r}")

    def _handle(self, msg) -> None:
        self._counts["received"] += 1
        if not pmt.is_pair(msg) or pmt.is_dict(msg) or not pmt.is_u8vector(pmt.cdr(msg)):
            self._drop("malformed", "dropping a message that is not a PDU (a pair of metadata and "
                                    f"u8vector): {_short(msg)}")
            return
        meta = pmt.car(msg)
        if not (pmt.is_dict(meta) or pmt.is_null(meta)):
            self._drop("malformed", f"dropping a PDU whose metadata is not a dictionary: {_short(meta)}")
            return
        size = pmt.length(pmt.cdr(msg))
        if size > self._max_bytes:
            self._drop("length", f"dropping a PDU of {size} bytes: the largest message this model accepts "
                                 f"is {self._max_bytes} bytes")
            return
        try:
            message = self.codec.parse(u8vector_bytes(pmt.cdr(msg)))
        except ValueError as exc:  # WireFormatError
            reason = getattr(exc, "reason", "malformed")
            self._drop(reason if reason in WIRE_REASONS else "malformed", f"dropping PDU: {exc}")
            return
        self._counts["received_frames"] += message.frames
        if not self._track_sequence(message.sequence):
            self._counts["frames_dropped"] += message.frames
            self._drop("duplicate", f"dropping PDU {message.sequence}: already received (a replay or "
                                    f"duplicate)")
            return
        self._counts["accepted"] += 1
        if (len(self._queue) >= self.max_queue
                or self._queued_frames + message.frames > self.max_queued_frames):
            self._counts["frames_dropped"] += message.frames
            self._drop("overflow", f"decoder queue full ({len(self._queue)} messages, {self._queued_frames} "
                                   f"frames; limits {self.max_queue} and {self.max_queued_frames}): dropping "
                                   f"PDUs until it drains; consider larger limits or a lower rate")
            return
        tags, labels = _from_metadata(meta, message.frames)
        self._queue.append(_Queued(message, tags, labels))
        self._queued_frames += message.frames

    def _remember(self, sequence: int, accepted: bool) -> None:
        self._seen[sequence] = accepted
        self._seen.move_to_end(sequence)
        while len(self._seen) > SEQUENCE_WINDOW:
            self._seen.popitem(last=False)

    def _track_sequence(self, sequence: int) -> bool:
        """Apply the sequence policy (class docstring); False for a duplicate, to be dropped."""
        expected = self._expected_sequence
        known = self._seen.get(sequence)
        if known is True:
            return False
        if known is False:  # counted missing, arrived late
            self._counts["reordered"] += 1
            self._counts["missing_messages"] -= 1
            self._seen[sequence] = True
            return True
        if expected is not None and sequence != expected:
            self._counts["sequence_gaps"] += 1
            skipped = (sequence - expected) & 0xFFFFFFFF
            if skipped < 0x80000000:  # forward jump: messages lost (or late)
                self._counts["missing_messages"] += skipped
                for k in range(max(0, skipped - SEQUENCE_WINDOW), skipped):
                    self._remember((expected + k) & 0xFFFFFFFF, False)
            else:  # backward to a number never seen: the sender restarted
                self._seen.clear()
        self._remember(sequence, True)
        self._expected_sequence = (sequence + 1) & 0xFFFFFFFF
        return True

    def _drop(self, kind: str, text: str) -> None:
        self._counts[f"dropped_{kind}"] += 1
        if kind not in self._warned:
            self._warned.add(kind)
            self.logger.warn(f"{text} (further '{kind}' drops are counted, not logged)")

    # -- stream side: decode and emit ----------------------------------------------------------
    def work(self, input_items, output_items):
        try:
            return self._emit(output_items[0])
        except Exception as exc:  # never let an exception reach the scheduler
            self._counts["decode_errors"] += 1
            self.logger.error(f"unexpected error, queued PDUs dropped: {exc!r}")
            self._counts["frames_failed"] += self._queued_frames
            self._queue.clear()
            self._queued_frames = 0
            return 0

    def _emit(self, out) -> int:
        L = self.frame_len
        room = len(out) // L
        if not self._queue or room == 0:
            return 0  # the scheduler waits for a message (or finishes when upstream is done)
        pieces = []
        while room and self._queue:
            entry = self._queue[0]
            take = min(room, entry.message.frames - entry.done)
            pieces.append((entry, entry.done, take))
            entry.done += take
            room -= take
            if entry.done == entry.message.frames:
                self._queue.popleft()
                self._queued_frames -= entry.message.frames
                self._counts["decoded_messages"] += 1
        written = 0
        base = self.nitems_written(0)
        i = 0
        while i < len(pieces):
            level = pieces[i][0].message.level
            j = i
            while j < len(pieces) and pieces[j][0].message.level == level:
                j += 1
            run = pieces[i:j]
            indices = np.concatenate([e.message.indices[s:s + c] for e, s, c in run])
            scales = np.concatenate([e.message.scales[s:s + c] for e, s, c in run])
            try:
                frames = self.codec.decode(indices, level) * scales[:, None]
            except Exception as exc:
                self._counts["decode_errors"] += 1
                self.logger.error(f"decoding failed, {len(indices)} frames dropped: {exc!r}")
                self._counts["frames_failed"] += len(indices)
                i = j
                continue
            out[written * L:(written + len(frames)) * L] = frames.reshape(-1)
            for entry, first, count in run:
                self._tag(entry, first, count, base + written * L, level)
                written += count
            i = j
        self._counts["decoded_frames"] += written
        return written * L

    def _tag(self, entry: _Queued, first: int, count: int, offset: int, level: int) -> None:
        L = self.frame_len
        level_pmt = self._level_pmt[level]
        sequence = pmt.from_long(entry.message.sequence)
        if first == 0:
            for key, value in entry.tags:
                self.add_item_tag(0, offset, key, value)
        for k in range(count):
            at = offset + k * L
            self.add_item_tag(0, at, _LEVEL, level_pmt)
            self.add_item_tag(0, at, _SEQUENCE, sequence)
            if entry.labels is not None:
                self.add_item_tag(0, at, _TRUE_LABEL, pmt.from_long(entry.labels[first + k]))

    def stop(self):
        try:
            # PDUs still waiting in the message queue (the flowgraph stopped before their handler
            # ran) are validated and queued like any other, so they are counted below.
            raw = self.to_basic_block()
            for _ in range(raw.nmsgs(PDUS)):
                msg = raw.delete_head_nowait(PDUS)
                if msg is None:
                    break
                self.handle_pdu(msg)
            if self._queue:  # the flowgraph was stopped before these were emitted
                self._counts["lost_at_stop_messages"] += len(self._queue)
                self._counts["lost_at_stop_frames"] += sum(e.message.frames - e.done for e in self._queue)
                self._queue.clear()
                self._queued_frames = 0
            c = self._counts
            drops = {k: v for k, v in c.items() if k.startswith("dropped_") and v}
            if drops or c["sequence_gaps"] or c["reordered"] or c["lost_at_stop_frames"]:
                self.logger.info(f"decoded {c['decoded_frames']} frames; dropped {drops}; sequence gaps "
                                 f"{c['sequence_gaps']}, missing {c['missing_messages']}, reordered {c['reordered']}; "
                                 f"lost at stop {c['lost_at_stop_frames']} frames in {c['lost_at_stop_messages']} PDUs")
        except Exception as exc:  # never raise from stop()
            self.logger.error(f"error at stop: {exc!r}")
        return True


def _from_metadata(meta, frames: int):
    """(first-frame tags, per-frame labels or None) from PDU metadata; bad fields are ignored."""
    tags, labels = [], None
    if not pmt.is_dict(meta):
        return tags, labels
    rx_time = pmt.dict_ref(meta, META_RX_TIME, pmt.PMT_NIL)
    if pmt.is_tuple(rx_time):
        tags.append((_RX_TIME, rx_time))
    rate = pmt.dict_ref(meta, META_SAMPLE_RATE, pmt.PMT_NIL)
    if pmt.is_real(rate) or pmt.is_integer(rate):
        tags.append((_RX_RATE, pmt.from_double(pmt.to_double(rate))))
    freq = pmt.dict_ref(meta, META_RX_FREQ, pmt.PMT_NIL)
    if pmt.is_real(freq) or pmt.is_integer(freq):
        tags.append((_RX_FREQ, pmt.from_double(pmt.to_double(freq))))
    vec = pmt.dict_ref(meta, META_TRUE_LABEL, pmt.PMT_NIL)
    if pmt.is_s32vector(vec) and pmt.length(vec) == frames:
        labels = [int(v) for v in pmt.s32vector_elements(vec)]
    return tags, labels


def _short(value, limit: int = 80) -> str:
    text = pmt.write_string(value) if isinstance(value, pmt.pmt_base) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
