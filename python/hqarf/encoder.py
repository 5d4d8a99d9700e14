# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio block: a complex IQ stream in, one compressed HQARF PDU per `frames_per_pdu` frames out.

The block only frames samples, batches them and converts to PMT; the codec core
(`Codec.compress_messages`, the same bytes as `Codec.compress` per PDU) turns frames into bytes.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pmt
from gnuradio import gr

from . import wire
from ._checks import check_int, check_level
from ._vocabulary import (META_FINGERPRINT, META_FRAMES, META_LEVEL, META_PDU_NUM, META_RX_FREQ, META_RX_TIME,
                          META_SAMPLE_RATE, META_SAMPLE_START, META_SEQUENCE, META_TRUE_LABEL, PDUS, TAG_RX_FREQ,
                          TAG_RX_RATE, TAG_RX_TIME, TAG_SAMPLE_RATE, TAG_TRUE_LABEL, WarnsOnce, u8vector)
from .codec import load_codec
from .runtime import check_runtime

TAG_FLUSH = "hqarf_flush"          # any value: send the frames up to the one holding it now

# The stall flush is off by default: PDU boundaries then depend only on the input (every
# frames_per_pdu frames, and at hqarf_flush tags), never on how busy the machine is. GNU Radio
# gives a Python block no end-of-stream signal, so a finite source marks its end with a tag.
DEFAULT_FLUSH_AFTER_S = 0.0
# Poll interval while waiting for input with frames pending (see general_work).
_POLL_S = 0.002
# Input backlog: more than this many frames waiting at one work() call means samples piled up
# while the previous call was encoding, i.e. the encoder is not keeping up with its source.
BACKLOG_FRAMES = 4
# At most one backlog warning per this many seconds (the counters keep counting).
BACKLOG_LOG_PERIOD_S = 5.0


class encoder(WarnsOnce, gr.basic_block):
    """HQARF Encoder: complex IQ stream -> compressed PDUs on message port `pdus`.

    Input samples are cut into frames of `codec.frame_len` (1024) samples, in stream order from
    the first sample. Every `frames_per_pdu` frames become one PDU `(metadata, u8vector)` whose
    bytes are exactly `codec.compress(frames, level, sequence)` (docs/wire-format.md). Metadata:
    `level`, `sequence` and `pdu_num` (the same counter, from 0, +1 per PDU, 32-bit wrap in the
    wire header), `frames`, `fingerprint` (model hex string), `sample_start` (input sample index
    of the first frame), and where stream tags give them `rx_time` (UHD tuple, moved to the first
    frame using the rate), `sample_rate` (from `rx_rate`), `rx_freq`, and `true_label` (an s32
    vector, one class index per frame, -1 unknown; from sticky `true_label` tags: a tag applies
    to the frames starting at or after it; class names are mapped through the model's classes).

    Batching: all complete PDUs that the available input holds are encoded in one forward pass.
    Framing is deterministic: PDU k holds frames [k F, (k + 1) F) for F = frames_per_pdu, whatever
    the scheduler or the CPU load, except where the input says otherwise: a stream tag
    `hqarf_flush` (any value) sends the complete frames up to and including the frame holding it
    at once, the last PDU shorter, and the next PDU starts after them. flowgraphs.frame_source
    puts one on the last sample of a finite source, so the tail of a recording gets out before
    the flowgraph ends. Stall flush (opt-in, for live streams that must bound latency):
    `flush_after` seconds > 0 (`set_flush_after`) sends complete frames that waited that long
    without new input as a shorter PDU; PDU boundaries then depend on timing. Default 0: off.
    Samples of an incomplete frame are never sent: at the end they are dropped and counted in
    `samples_dropped`. Complete frames still waiting when the flowgraph stops (no flush tag, no
    stall flush) cannot reach anyone any more (downstream blocks have finished): they are not
    published, but counted in `frames_unsent` and logged.

    Level: `set_level(level)` (GRC callback) validates and applies from the next PDU built.
    Bad input: NaN/inf samples are replaced by 0, counted (`samples_nonfinite`) and warned about
    once; an encoding failure drops that batch, counted (`frames_failed`) and logged; the
    flowgraph keeps running. Construction raises ValueError for a bad parameter and
    hqarf.WeightsError (naming the file) for a missing or corrupt model.

    Keeping up: at each call the samples that arrived since the last one are the input backlog
    (`input_backlog`, high-water mark `backlog_max`). When it reaches a new high above
    BACKLOG_FRAMES frames, `backlog_growths` counts it and a warning says the encoder is falling
    behind its source (a radio source then overflows and drops samples); at most one warning per
    5 s, and a summary at stop.

    Speed: `runtime` is "torch" (eager, default), "torchscript" or "onnx" (hqarf.runtime);
    `num_threads` is this block's inference threads (1 default; 0 = leave torch's setting alone).
    It does not set torch's process-wide count: torch calls run under it without changing other
    blocks' calls (hqarf.runtime.torch_threads), and ONNX Runtime sessions have their own pools.
    Frames go through the network in chunks of `codec.chunk` (16), a size whose activations stay in
    cache. With num_threads n > 1 the chunks run on n workers of one thread each, and while input
    keeps coming complete PDUs are encoded n at a time (one per worker; a call that brings no new
    input sends those waiting): on 2 cores, level 0 sustains 10 Msps this way (README "Speed").

    Counters (plain attributes, readable while running): frames_encoded, pdus_sent, bytes_sent,
    samples_dropped, samples_nonfinite, frames_failed, short_pdus, frames_unsent, backlog_growths,
    backlog_max, input_backlog; `counters()` returns all.
    """

    def __init__(self, model="", level=0, frames_per_pdu=16, device="cpu", num_threads=1, runtime="torch",
                 flush_after=DEFAULT_FLUSH_AFTER_S):
        gr.basic_block.__init__(self, name="hqarf_encoder", in_sig=[np.complex64], out_sig=None)
        self.frames_per_pdu = check_int("frames_per_pdu", frames_per_pdu, 1, wire.MAX_FRAMES)
        num_threads = check_int("num_threads", num_threads, 0)
        self.codec = load_codec(model or None, device=device, runtime=check_runtime(runtime),
                                num_threads=num_threads, exemplars=False)  # encoding never reads the bank
        self.frame_len = self.codec.frame_len
        # PDUs encoded per call while input keeps coming: one per inference worker (num_threads)
        self._batch_pdus = self.codec.runtime.workers
        self._level = self._check_level(level)
        self._classes = self.codec.classes
        self.message_port_register_out(PDUS)
        self._fingerprint = pmt.intern(self.codec.fingerprint_hex)
        self._flush_after = 0.0
        self.set_flush_after(flush_after)
        self._flush_marks: list = []   # input offsets of hqarf_flush tags not yet acted on

        capacity = self.frame_len * self.frames_per_pdu + (1 << 16)
        self._buf = np.zeros(capacity, np.complex64)
        self._fill = 0            # samples in _buf
        self._buf_offset = 0      # input sample index of _buf[0]
        self._held = 0            # items left unconsumed in GNU Radio's buffer, already copied
        self._last_input = time.monotonic()
        self._sequence = 0
        # Sticky tag state: lists of (offset, value), oldest first, pruned as frames leave.
        self._times: list = []
        self._labels: list = []
        self._freqs: list = []
        self._rate = None
        self._warned: set = set()

        self.frames_encoded = 0
        self.pdus_sent = 0
        self.bytes_sent = 0
        self.samples_dropped = 0
        self.samples_nonfinite = 0
        self.frames_failed = 0
        self.short_pdus = 0
        self.frames_unsent = 0
        self.input_backlog = 0
        self.backlog_max = 0
        self.backlog_growths = 0
        self._backlog_logged = -BACKLOG_LOG_PERIOD_S
        # Warn when the backlog grows (a radio source would overflow). A flowgraph fed by an
        # unthrottled file or vector source outruns any encoder by design and may turn the warning
        # off; the counters count either way.
        self.backlog_warnings = True

    # -- parameters ---------------------------------------------------------------------------
    def _check_level(self, level) -> int:
        return check_level(level, self.codec.levels)

    def level(self) -> int:
        return self._level

    def set_level(self, level) -> None:
        """Change the level; applies from the next PDU. Raises ValueError for an invalid level."""
        self._level = self._check_level(level)

    def flush_after(self) -> float:
        return self._flush_after

    def set_flush_after(self, seconds) -> None:
        seconds = float(seconds)
        if not seconds >= 0:
            raise ValueError(f"flush_after must be >= 0 seconds, got {seconds}")
        self._flush_after = seconds

    def counters(self) -> dict:
        return {"frames_encoded": self.frames_encoded, "pdus_sent": self.pdus_sent,
                "bytes_sent": self.bytes_sent, "samples_dropped": self.samples_dropped,
                "samples_nonfinite": self.samples_nonfinite, "frames_failed": self.frames_failed,
                "short_pdus": self.short_pdus, "frames_unsent": self.frames_unsent,
                "frames_pending": self._fill // self.frame_len,
                "input_backlog": self.input_backlog, "backlog_max": self.backlog_max,
                "backlog_growths": self.backlog_growths}

    # -- scheduler ----------------------------------------------------------------------------
    def general_work(self, input_items, output_items):
        try:
            return self._work(input_items[0])
        except Exception as exc:  # an exception here would abort the whole process
            self.logger.error(f"unexpected error, input dropped: {exc!r}")
            self.consume(0, len(input_items[0]))
            self._held = 0
            return 0

    def _work(self, samples) -> int:
        n = len(samples)
        fresh = n - self._held
        now = time.monotonic()
        if fresh > 0:
            self._track_backlog(fresh, now)
            start = self.nitems_read(0) + self._held
            self._read_tags(start, start + fresh)
            self._append(samples[self._held:])
            self._last_input = now
        self._send_flush_marks()
        idle = now - self._last_input
        complete = self._fill // self.frame_len
        stalled = self._flush_after > 0 and complete > 0 and fresh <= 0 and idle >= self._flush_after
        sent = self.frames_encoded + self.frames_failed
        # With several workers, complete PDUs are encoded `workers` at a time (one per worker) while the
        # input keeps coming; a call that brings no new input (the source paused or ended) sends them.
        self._send(stalled, batch=self._batch_pdus if fresh > 0 else 1)
        if self.frames_encoded + self.frames_failed != sent:
            # time spent encoding is not time the source was silent: the flush wait restarts now
            self._last_input = time.monotonic()
        held_pdus = self._fill >= self.frame_len * self.frames_per_pdu
        if self._flush_after <= 0 and not held_pdus:
            self.consume(0, n - self._held)
            self._held = 0
            return 0
        # Stall flush, and complete PDUs held for a batch: leave one (already copied) item in GNU
        # Radio's buffer: the scheduler keeps calling us only while input is there, and these calls
        # are what notice that the input has stopped (and send, or flush after the timeout).
        keep = 1 if (self._fill >= self.frame_len and n > 0) else 0
        self.consume(0, n - keep)
        self._held = keep
        if keep and fresh <= 0 and not held_pdus:
            time.sleep(min(_POLL_S, max(0.0, self._flush_after - idle)) or _POLL_S)
        return 0

    def _track_backlog(self, waiting: int, now: float) -> None:
        self.input_backlog = waiting
        if waiting <= self.backlog_max:
            return
        self.backlog_max = waiting
        if waiting > BACKLOG_FRAMES * self.frame_len:
            self.backlog_growths += 1
            if self.backlog_warnings and now - self._backlog_logged >= BACKLOG_LOG_PERIOD_S:
                self._backlog_logged = now
                rate = f" ({1e3 * waiting / self._rate:.1f} ms at {self._rate / 1e6:g} Msps)" if self._rate else ""
                self.logger.warn(f"input backlog grew to {waiting} samples{rate}: the encoder is not keeping "
                                 f"up with its source (a radio source overflows); counted in backlog_growths")

    def stop(self):
        try:
            if self.backlog_growths:
                self.logger.info(f"input backlog grew {self.backlog_growths} times, to at most "
                                 f"{self.backlog_max} samples: the encoder fell behind its source")
            waiting = self._fill // self.frame_len
            if waiting:  # downstream has finished: publishing now would lose them uncounted
                self.frames_unsent += waiting
                self.logger.warn(f"end of stream: {waiting} complete frames not sent (fewer than "
                                 f"frames_per_pdu={self.frames_per_pdu} and no {TAG_FLUSH} tag after them); "
                                 f"counted in frames_unsent")
                self._fill -= waiting * self.frame_len
                self._buf[:self._fill] = self._buf[waiting * self.frame_len:waiting * self.frame_len + self._fill]
                self._buf_offset += waiting * self.frame_len
            if self._fill:
                self.samples_dropped += self._fill
                self.logger.info(f"end of stream: dropped {self._fill} samples of an incomplete frame")
                self._buf_offset += self._fill
                self._fill = 0
        except Exception as exc:  # never raise from stop(): it would abort the process
            self.logger.error(f"error while flushing at stop: {exc!r}")
        return True

    # -- internals ----------------------------------------------------------------------------
    def _append(self, samples) -> None:
        need = self._fill + len(samples)
        if need > len(self._buf):
            grown = np.zeros(max(need, 2 * len(self._buf)), np.complex64)
            grown[:self._fill] = self._buf[:self._fill]
            self._buf = grown
        self._buf[self._fill:need] = samples
        self._fill = need

    def _read_tags(self, start: int, stop: int) -> None:
        for tag in self.get_tags_in_range(0, start, stop):
            key = pmt.symbol_to_string(tag.key)
            try:
                if key == TAG_RX_TIME:
                    secs = pmt.to_uint64(pmt.tuple_ref(tag.value, 0))
                    frac = pmt.to_double(pmt.tuple_ref(tag.value, 1))
                    self._times.append((tag.offset, int(secs), float(frac)))
                elif key in (TAG_RX_RATE, TAG_SAMPLE_RATE):
                    rate = pmt.to_double(tag.value)
                    self._rate = rate if rate > 0 else None
                elif key == TAG_RX_FREQ:
                    self._freqs.append((tag.offset, pmt.to_double(tag.value)))
                elif key == TAG_FLUSH:
                    self._flush_marks.append(tag.offset)
                elif key == TAG_TRUE_LABEL:
                    index = self._label_of(tag, self._classes)
                    if index is not None:
                        self._labels.append((tag.offset, index))
            except (RuntimeError, ValueError, TypeError) as exc:
                self._warn_once(key, f"ignoring malformed {key} tag {tag.value}: {exc}")

    def _send_flush_marks(self) -> None:
        """Act on hqarf_flush tags the input has reached: send every complete frame that starts at
        or before the tagged sample (a tag inside an incomplete last frame sends those before it)."""
        L = self.frame_len
        self._flush_marks.sort()
        while self._flush_marks and self._flush_marks[0] < self._buf_offset + self._fill:
            mark = self._flush_marks.pop(0)
            if mark >= self._buf_offset:
                self._send(True, limit=(mark - self._buf_offset) // L + 1)

    def _send(self, flush: bool, limit: int | None = None, batch: int = 1) -> None:
        """Encode and publish every complete PDU in the buffer, once there are at least `batch` of
        them; with `flush` also the complete frames of an unfinished PDU, as a shorter PDU.
        `limit`: consider the first frames only."""
        L, fpp = self.frame_len, self.frames_per_pdu
        complete = self._fill // L if limit is None else min(limit, self._fill // L)
        count = complete if flush else (complete // fpp) * fpp
        if count == 0 or (not flush and count < batch * fpp):
            return
        frames = self._buf[:count * L].reshape(count, L)
        finite = np.isfinite(frames.view(np.float32)).all()
        if not finite:
            bad = ~np.isfinite(frames.view(np.float32)).reshape(count, L, 2).all(axis=2)
            self.samples_nonfinite += int(bad.sum())
            self._warn_once("nonfinite", "NaN or infinite input samples replaced by 0 (counted in "
                                         "samples_nonfinite)")
            frames = np.where(bad, np.complex64(0), frames)
        level = self._level
        try:
            blobs = self.codec.compress_messages(frames, level, fpp, self._sequence)
        except Exception as exc:
            self.frames_failed += count
            self.logger.error(f"encoding failed, {count} frames dropped: {exc!r}")
        else:
            for blob, first in zip(blobs, range(0, count, fpp)):
                last = min(first + fpp, count)
                meta = self._metadata(level, last - first, self._buf_offset + first * L)
                self.message_port_pub(PDUS, pmt.cons(meta, u8vector(blob)))
                self._sequence = (self._sequence + 1) & 0xFFFFFFFF
                self.pdus_sent += 1
                self.bytes_sent += len(blob)
                self.frames_encoded += last - first
                self.short_pdus += (last - first) < fpp
        used = count * L
        rest = self._fill - used
        self._buf[:rest] = self._buf[used:self._fill]
        self._fill = rest
        self._buf_offset += used
        self._prune(self._buf_offset)

    def _metadata(self, level: int, frames: int, first: int):
        meta = pmt.make_dict()
        meta = pmt.dict_add(meta, META_LEVEL, pmt.from_long(level))
        meta = pmt.dict_add(meta, META_SEQUENCE, pmt.from_long(self._sequence))
        meta = pmt.dict_add(meta, META_PDU_NUM, pmt.from_uint64(self._sequence))
        meta = pmt.dict_add(meta, META_FRAMES, pmt.from_long(frames))
        meta = pmt.dict_add(meta, META_FINGERPRINT, self._fingerprint)
        meta = pmt.dict_add(meta, META_SAMPLE_START, pmt.from_uint64(first))
        if self._rate:
            meta = pmt.dict_add(meta, META_SAMPLE_RATE, pmt.from_double(self._rate))
        when = _sticky(self._times, first)
        if when is not None:
            offset, secs, frac = when
            if offset != first and self._rate:
                frac += (first - offset) / self._rate
                whole = math.floor(frac)
                secs, frac = secs + whole, frac - whole
            if offset == first or self._rate:
                meta = pmt.dict_add(meta, META_RX_TIME,
                                    pmt.make_tuple(pmt.from_uint64(secs), pmt.from_double(frac)))
        freq = _sticky(self._freqs, first)
        if freq is not None:
            meta = pmt.dict_add(meta, META_RX_FREQ, pmt.from_double(freq[1]))
        if self._labels:
            L = self.frame_len
            labels = [_sticky_value(self._labels, first + i * L, -1) for i in range(frames)]
            meta = pmt.dict_add(meta, META_TRUE_LABEL, pmt.init_s32vector(frames, labels))
        return meta

    def _prune(self, offset: int) -> None:
        """Forget sticky tags superseded before `offset` (keep the one still in force)."""
        for entries in (self._times, self._labels, self._freqs):
            while len(entries) > 1 and entries[1][0] <= offset:
                entries.pop(0)


def _sticky(entries: list, offset: int):
    """The last (offset, ...) entry at or before `offset`, or None."""
    found = None
    for entry in entries:
        if entry[0] > offset:
            break
        found = entry
    return found


def _sticky_value(entries: list, offset: int, default):
    found = _sticky(entries, offset)
    return default if found is None else found[1]
