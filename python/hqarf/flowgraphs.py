# SPDX-License-Identifier: GPL-3.0-or-later
"""Headless flowgraphs built from the hqarf blocks, shared by the tests, the demo and the benchmark.

loopback(): frames -> encoder -> decoder -> modrec_sink in one process. sensor() / cloud(): the same
split over ZMQ PUB/SUB. encoder_benchmark() / decoder_benchmark(): one block alone, timed.
run_demo(): a recording through all of it, printed as a table.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pmt
from gnuradio import blocks, gr

from . import sigmf
from ._vocabulary import TAG_TRUE_LABEL, u8vector, u8vector_bytes
from .classifier import load_classifier
from .codec import load_codec
from .decoder import DEFAULT_MAX_QUEUED_FRAMES, decoder
from .encoder import TAG_FLUSH, encoder
from .modrec_sink import modrec_sink

# The sample recording: in a checkout under examples/data, installed by CMake beside the package.
DEFAULT_RECORDING = next((p for p in (
    Path(__file__).resolve().parents[2] / "examples" / "data" / "6mod_sample.sigmf-data",
    Path(__file__).resolve().parent / "data" / "6mod_sample.sigmf-data") if p.exists()),
    Path(__file__).resolve().parent / "data" / "6mod_sample.sigmf-data")
# Output buffer of the sample sources, in samples: one work() call of an encoder or a modrec_sink
# sees at most this much, so it bounds the batch (GNU Radio's default would be 8192).
SOURCE_BUFFER = 1 << 16


def frame_source(frames, labels=None, repeat=False):
    """A vector source of the frames' samples; with `labels` (one class index per frame) a
    `true_label` tag at every frame start, as a labelled recording would give. A finite source
    tags its last sample `hqarf_flush`, so the encoder sends the tail before the flowgraph ends."""
    frames = np.asarray(frames, dtype=np.complex64)
    tags = []
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(frames):
            raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
        key = pmt.intern(TAG_TRUE_LABEL)
        tags = [gr.tag_utils.python_to_tag((i * frames.shape[1], key, pmt.from_long(int(label))))
                for i, label in enumerate(labels)]
    if not repeat and frames.size:
        tags.append(gr.tag_utils.python_to_tag((frames.size - 1, pmt.intern(TAG_FLUSH), pmt.PMT_T)))
    source = blocks.vector_source_c(frames.reshape(-1).tolist(), repeat, 1, tags)
    source.set_min_output_buffer(SOURCE_BUFFER)
    return source


# What a Sensor publishes (before its first frame) until its Cloud has seen one: a ZMQ PUB socket
# drops what it sends before the subscription has reached it, and that takes an unknown time.
PROBE = "hqarf_probe"


class Gate(gr.sync_block):
    """Passes complex samples through once `open()` was called; until then the stream waits."""

    def __init__(self):
        gr.sync_block.__init__(self, name="hqarf_gate", in_sig=[np.complex64], out_sig=[np.complex64])
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def work(self, input_items, output_items):
        if not self._open.wait(0.05):
            return 0
        n = min(len(input_items[0]), len(output_items[0]))
        output_items[0][:n] = input_items[0][:n]
        return n


class Handshake(gr.basic_block):
    """Message pass-through that swallows and counts PROBE symbols (the sensor's hello)."""

    def __init__(self):
        gr.basic_block.__init__(self, name="hqarf_handshake", in_sig=None, out_sig=None)
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("in"), self.handle)
        self.probes = 0
        self.passed = 0

    def handle(self, msg):
        if pmt.is_symbol(msg) and pmt.symbol_to_string(msg) == PROBE:
            self.probes += 1
        else:
            self.passed += 1
            self.message_port_pub(pmt.intern("out"), msg)


def connect(sensor_tb, handshake, timeout_s: float = 300.0, period_s: float = 0.05) -> int:
    """With both flowgraphs started: probe until `handshake` (the cloud's) has seen one, then open
    the sensor's gate. No frame is sent before the subscription is in place, however long it took.
    Returns the probes sent; raises TimeoutError after `timeout_s` (only a broken link takes that)."""
    deadline = time.monotonic() + timeout_s
    sent = 0
    while handshake.probes == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no probe reached the cloud in {timeout_s} s ({sent} sent)")
        sensor_tb.probe()
        sent += 1
        time.sleep(period_s)
    sensor_tb.gate.open()
    return sent


class PduCounter(gr.basic_block):
    """Counts PDUs, their payload bytes and their serialized size (what a ZMQ message sink sends)."""

    def __init__(self):
        gr.basic_block.__init__(self, name="hqarf_pdu_counter", in_sig=None, out_sig=None)
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self.handle)
        self.pdus = 0
        self.payload_bytes = 0
        self.serialized_bytes = 0

    def handle(self, msg):
        self.pdus += 1
        if pmt.is_pair(msg) and pmt.is_u8vector(pmt.cdr(msg)):
            self.payload_bytes += pmt.length(pmt.cdr(msg))
        self.serialized_bytes += len(pmt.serialize_str(msg))


def pdus_from(debug) -> list:
    """The payload bytes of every PDU a message_debug stored, in order."""
    return [u8vector_bytes(pmt.cdr(debug.get_message(i)))
            for i in range(debug.num_messages())]


def classifications_from(debug) -> list:
    """The classification dicts a message_debug stored from a modrec_sink, as Python dicts."""
    return [pmt.to_python(debug.get_message(i)) for i in range(debug.num_messages())]


class Loopback(gr.top_block):
    """frames -> encoder -> decoder -> modrec_sink; `pdus` and `classified` are message_debugs
    storing the PDUs and the classification messages when built with collect=True, `samples` a
    vector sink of the reconstruction with keep_samples=True. The classifier comes from `model`
    unless `classifier_model` names another directory; `classes_from` is the sink's (modrec_sink)."""

    def __init__(self, model, level, source_frames, labels=None, frames_per_pdu=16, true_label=-1,
                 device="cpu", num_threads=1, max_queue=None, collect=False, keep_samples=False,
                 classifier_model=None, runtime="torch", classes_from="classifier"):
        gr.top_block.__init__(self, "hqarf loopback")
        frames = np.asarray(source_frames, dtype=np.complex64)
        if max_queue is None:  # an unthrottled source outruns the decoder: queue every PDU
            max_queue = math.ceil(len(frames) / frames_per_pdu) + 1
        self.source = frame_source(frames, labels)
        self.encoder = encoder(model=model, level=level, frames_per_pdu=frames_per_pdu,
                               device=device, num_threads=num_threads, runtime=runtime)
        self.encoder.backlog_warnings = False  # a vector source outruns any encoder: counted, not a warning
        self.decoder = decoder(model=model, device=device, max_queue=max_queue, num_threads=num_threads,
                               runtime=runtime, max_queued_frames=max(DEFAULT_MAX_QUEUED_FRAMES, len(frames)))
        self.modrec = modrec_sink(model=model if classifier_model is None else classifier_model,
                                  true_label=true_label, device=device, num_threads=num_threads,
                                  runtime=runtime, classes_from=classes_from)
        self.connect(self.source, self.encoder)
        self.msg_connect(self.encoder, "pdus", self.decoder, "pdus")
        self.connect(self.decoder, self.modrec)
        self.pdus = self.classified = self.samples = None
        if collect:
            self.pdus = blocks.message_debug()
            self.classified = blocks.message_debug()
            self.msg_connect(self.encoder, "pdus", self.pdus, "store")
            self.msg_connect(self.modrec, "classification", self.classified, "store")
        if keep_samples:
            self.samples = blocks.vector_sink_c()
            self.connect(self.decoder, self.samples)


    def wait(self):
        """Wait for the end, then count frames the ModRec sink never read (stopped early)."""
        gr.top_block.wait(self)
        account_stop(self.decoder, self.modrec)


def account_stop(decoder_block, sink_block) -> int:
    """After a decoder -> modrec_sink flowgraph stopped: frames the decoder produced that the sink
    never read are counted in the sink's lost_at_stop_frames (modrec_sink.account_stop)."""
    return sink_block.account_stop(decoder_block.nitems_written(0))


def loopback(model, level, source_frames, **kwargs) -> Loopback:
    """Build (not run) a loopback flowgraph; see Loopback. tb.run() returns when all is through."""
    return Loopback(model, level, source_frames, **kwargs)


class Sensor(gr.top_block):
    """frames -> gate -> encoder -> ZMQ PUB message sink bound to `address` (`self.address` is the
    real endpoint, so "tcp://127.0.0.1:*" picks a free port). `counter` measures what is published.
    The gate holds the frames back until `gate.open()`: `connect()` (run_split does it) opens it
    once the cloud has received a `probe()`, so no PDU goes out before anyone listens."""

    def __init__(self, model, level, source_frames, address="tcp://127.0.0.1:*", labels=None,
                 frames_per_pdu=16, device="cpu", num_threads=1, timeout_ms=100, collect=False):
        from gnuradio import zeromq
        gr.top_block.__init__(self, "hqarf sensor")
        self.source = frame_source(source_frames, labels)
        self.encoder = encoder(model=model, level=level, frames_per_pdu=frames_per_pdu,
                               device=device, num_threads=num_threads)
        self.encoder.backlog_warnings = False  # a vector source outruns any encoder: counted, not a warning
        self.publisher = zeromq.pub_msg_sink(address, timeout_ms, True)
        self.address = self.publisher.last_endpoint()
        self.counter = PduCounter()
        self.gate = Gate()
        self.connect(self.source, self.gate, self.encoder)
        self.msg_connect(self.encoder, "pdus", self.publisher, "in")
        self.msg_connect(self.encoder, "pdus", self.counter, "in")
        self.pdus = None
        if collect:
            self.pdus = blocks.message_debug()
            self.msg_connect(self.encoder, "pdus", self.pdus, "store")


    def probe(self) -> None:
        """Publish one PROBE (the flowgraph must be running)."""
        self.publisher.to_basic_block()._post(pmt.intern("in"), pmt.intern(PROBE))


def sensor(model, level, source_frames, **kwargs) -> Sensor:
    return Sensor(model, level, source_frames, **kwargs)


class Cloud(gr.top_block):
    """ZMQ SUB message source connected to `address` -> handshake -> decoder -> modrec_sink. Runs
    until stopped. `collect`, `keep_samples` and `classifier_model` as in Loopback; `handshake`
    counts (and keeps from the decoder) a Sensor's probes."""

    def __init__(self, model, address, true_label=-1, max_queue=64, device="cpu", num_threads=1,
                 timeout_ms=100, collect=False, keep_samples=False, classifier_model=None):
        from gnuradio import zeromq
        gr.top_block.__init__(self, "hqarf cloud")
        self.subscriber = zeromq.sub_msg_source(address, timeout_ms, False)
        self.decoder = decoder(model=model, device=device, max_queue=max_queue)
        self.modrec = modrec_sink(model=model if classifier_model is None else classifier_model,
                                  true_label=true_label, device=device, num_threads=num_threads)
        self.handshake = Handshake()
        self.msg_connect(self.subscriber, "out", self.handshake, "in")
        self.msg_connect(self.handshake, "out", self.decoder, "pdus")
        self.connect(self.decoder, self.modrec)
        self.classified = self.samples = None
        if collect:
            self.classified = blocks.message_debug()
            self.msg_connect(self.modrec, "classification", self.classified, "store")
        if keep_samples:
            self.samples = blocks.vector_sink_c()
            self.connect(self.decoder, self.samples)

    def wait(self):
        """Wait for the end, then count frames the ModRec sink never read (stopped early)."""
        gr.top_block.wait(self)
        account_stop(self.decoder, self.modrec)

    def lost(self) -> dict:
        """Frames lost in this flowgraph, by cause (after it stopped)."""
        c, m = self.decoder.counters(), self.modrec.counters()
        return {"decoder_queue_at_stop": c["lost_at_stop_frames"], "decoder_failed": c["frames_failed"],
                "sink_unread_at_stop": m["lost_at_stop_frames"]}

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Deliver what is queued, then stop: post "done" to the decoder, which finishes once its
        queue is out; the ModRec sink then classifies what is left in its input and finishes.
        Waits at most `timeout_s` (what is still queued then is counted lost_at_stop_* by the
        decoder's stop()); returns whether everything was drained. PDUs arriving after the call
        are not decoded: call it once the sender has finished."""
        self.decoder.to_basic_block()._post(pmt.intern("system"),
                                            pmt.cons(pmt.intern("done"), pmt.from_long(1)))
        deadline = time.monotonic() + timeout_s
        sink = self.modrec.to_basic_block().detail()
        while not sink.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        drained = bool(sink.done())
        self.stop()
        self.wait()
        return drained


def cloud(model, address, **kwargs) -> Cloud:
    return Cloud(model, address, **kwargs)


def run_split(sensor_tb: Sensor, cloud_tb: Cloud, frames: int, timeout_s: float = 300.0) -> float:
    """Run a sensor and a cloud flowgraph until the cloud has classified `frames` frames.

    Both start; the sensor's frames wait at its gate until a probe has reached the cloud
    (`connect`: a PUB socket drops what it sends before a subscriber is connected). Returns the
    seconds from the gate opening to the last frame; raises TimeoutError (after stopping both) if
    the frames do not all arrive in `timeout_s` (a hang guard: the result does not depend on it)."""
    cloud_tb.start()
    try:
        sensor_tb.start()
        connect(sensor_tb, cloud_tb.handshake, timeout_s)
        began = time.monotonic()
        deadline = began + timeout_s
        def arrived():
            # the reconstruction's vector sink (keep_samples) is a branch of its own: it can lag the ModRec sink
            kept = cloud_tb.samples is None or cloud_tb.samples.nitems_read(0) >= frames * cloud_tb.decoder.codec.frame_len
            return cloud_tb.modrec.frames() >= frames and kept
        while not arrived() and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - began
        sensor_tb.wait()
        if cloud_tb.modrec.frames() < frames:
            raise TimeoutError(f"cloud classified {cloud_tb.modrec.frames()} of {frames} frames in "
                               f"{timeout_s} s; decoder counters {cloud_tb.decoder.counters()}")
        return elapsed
    finally:
        cloud_tb.stop()
        cloud_tb.wait()
        sensor_tb.stop()
        sensor_tb.wait()


# -- benchmarks ----------------------------------------------------------------------------------
def warm_up(codec=None, level=0, classifier=None) -> None:
    """Build a compiled runtime's graphs for `level` before timing (the first call exports them)."""
    if codec is not None:
        frames = np.ones((2, codec.frame_len), np.complex64)
        codec.decode(codec.encode(frames, level), level)
    if classifier is not None:
        for net in (classifier, classifier.detector):  # the sink runs both
            if net is not None:
                net.logits(np.ones((2, net.frame_len), np.complex64))


def encoder_benchmark(model, level, frames, frames_per_pdu=16, device="cpu", num_threads=1,
                      runtime="torch") -> dict:
    """Time vector source -> encoder over `frames`; Msps counts input samples per wall second."""
    frames = np.asarray(frames, dtype=np.complex64)
    tb = gr.top_block("hqarf encoder benchmark")
    source = frame_source(frames)
    block = encoder(model=model, level=level, frames_per_pdu=frames_per_pdu, device=device,
                    num_threads=num_threads, runtime=runtime)
    warm_up(block.codec, level)
    tb.connect(source, block)
    began = time.perf_counter()
    tb.run()
    seconds = time.perf_counter() - began
    return {"frames": block.frames_encoded, "seconds": seconds, "pdus": block.pdus_sent,
            "bytes": block.bytes_sent, "msps": frames.size / seconds / 1e6,
            "backlog_growths": block.backlog_growths}


def decoder_benchmark(model, blobs, device="cpu", num_threads=1, runtime="torch") -> dict:
    """Time a decoder emitting every frame of the PDUs `blobs` (queued before start) to a null sink."""
    tb = gr.top_block("hqarf decoder benchmark")
    block = decoder(model=model, device=device, max_queue=len(blobs) + 1, num_threads=num_threads,
                    runtime=runtime)
    for level in sorted({block.codec.parse(blob).level for blob in blobs}):
        warm_up(block.codec, level)
    sink = blocks.null_sink(gr.sizeof_gr_complex)
    tb.connect(block, sink)
    port = pmt.intern("pdus")
    raw = block.to_basic_block()
    for blob in blobs:
        raw._post(port, pmt.cons(pmt.make_dict(), u8vector(blob)))
    raw._post(pmt.intern("system"), pmt.cons(pmt.intern("done"), pmt.from_long(1)))
    began = time.perf_counter()
    tb.run()
    seconds = time.perf_counter() - began
    frames = block.counters()["decoded_frames"]
    return {"frames": frames, "seconds": seconds, "msps": frames * block.frame_len / seconds / 1e6}


def modrec_benchmark(model, frames, device="cpu", num_threads=1, runtime="torch", classes_from="classifier",
                     default_buffer=False) -> dict:
    """Time vector source -> modrec_sink over `frames`; `default_buffer`: the source with GNU Radio's default
    output buffer (the sink then gets 2-4 frames per call), not frame_source's."""
    frames = np.asarray(frames, dtype=np.complex64)
    tb = gr.top_block("hqarf modrec benchmark")
    block = modrec_sink(model=model, device=device, num_threads=num_threads, runtime=runtime,
                        classes_from=classes_from)
    warm_up(classifier=block.classifier)
    source = blocks.vector_source_c(frames.reshape(-1).tolist(), False) if default_buffer else frame_source(frames)
    tb.connect(source, block)
    began = time.perf_counter()
    tb.run()
    seconds = time.perf_counter() - began
    return {"frames": block.frames(), "seconds": seconds, "msps": frames.size / seconds / 1e6}


def chain_benchmark(model, level, frames, device="cpu", num_threads=1, runtime="torch",
                    classes_from="classifier") -> dict:
    """Time vector source -> encoder -> decoder -> modrec_sink (Loopback) over `frames`."""
    loop = loopback(model, level, frames, device=device, num_threads=num_threads, runtime=runtime,
                    classes_from=classes_from)
    warm_up(loop.encoder.codec, level)
    warm_up(loop.decoder.codec, level)
    warm_up(classifier=loop.modrec.classifier)
    began = time.perf_counter()
    loop.run()
    seconds = time.perf_counter() - began
    return {"frames": loop.modrec.frames(), "seconds": seconds,
            "msps": np.asarray(frames).size / seconds / 1e6}


# -- demo ----------------------------------------------------------------------------------------
def load_labelled_frames(recording, classes, frames_per_class=None, frame_len=1024):
    """Frames and class indices from a SigMF recording labelled per frame (core:label annotations).

    Frames whose label is missing or not one of `classes` are skipped; with `frames_per_class`,
    the first that many frames of each class are kept, in recording order."""
    samples, metadata = sigmf.read_recording(recording)
    count = len(samples) // frame_len
    names = sigmf.frame_labels(metadata, count, frame_len)
    keep, seen = [], {}
    for i, name in enumerate(names):
        if name in classes and (frames_per_class is None or seen.get(name, 0) < frames_per_class):
            seen[name] = seen.get(name, 0) + 1
            keep.append(i)
    frames = samples[:count * frame_len].reshape(count, frame_len)[keep]
    labels = np.array([classes.index(names[i]) for i in keep], np.int64)
    return frames, labels


def run_demo(model=None, recording=None, frames_per_class=64, levels=None, out=sys.stdout,
             frames_per_pdu=16, split_level=None, num_threads=1) -> dict:
    """Run the file loopback at every level and the sensor/cloud split over ZMQ; print a table.

    `recording`: a SigMF recording with one core:label annotation per frame (default
    examples/data/6mod_sample). Returns the numbers printed, as a dict."""
    # The table is the report: keep the blocks' per-run info lines (summaries at stop) out of it.
    gr.logging().set_default_level(gr.log_levels.warn)
    codec = load_codec(model, exemplars=False)  # geometry only: the flowgraphs' decoders load their own
    classifier = load_classifier(model)
    recording = Path(recording) if recording else DEFAULT_RECORDING
    frames, labels = load_labelled_frames(recording, classifier.classes, frames_per_class,
                                          codec.frame_len)
    if not len(frames):
        raise ValueError(f"{recording}: no frame labelled with one of {classifier.classes}")
    levels = list(range(codec.levels)) if levels is None else [int(v) for v in levels]
    raw_bytes = frames.size * 8
    print(f"{len(frames)} frames of {codec.frame_len} samples from {recording.name}, "
          f"{len(set(labels.tolist()))} classes; model {codec.fingerprint_hex}", file=out)
    raw_accuracy = float((classifier.predict(frames) == labels).mean())
    print(f"ModRec accuracy on the original frames: {raw_accuracy:.3f}\n", file=out)
    header = f"{'level':>5} {'ratio':>8} {'bytes/frame':>12} {'accuracy':>9} {'unknown':>8} {'Msps':>7}"
    print(header + "\n" + "-" * len(header), file=out)
    rows = []
    for level in levels:
        tb = loopback(model, level, frames, labels=labels, frames_per_pdu=frames_per_pdu,
                      num_threads=num_threads)
        began = time.perf_counter()
        tb.run()
        seconds = time.perf_counter() - began
        row = {"level": level, "compression_ratio": codec.compression_ratio(level),
               "bytes_per_frame": tb.encoder.bytes_sent / max(1, tb.encoder.frames_encoded),
               "accuracy": tb.modrec.accuracy(), "msps": frames.size / seconds / 1e6,
               "frames": tb.modrec.frames(), "unknown": tb.modrec.counters().get("unknown", 0)}
        rows.append(row)
        print(f"{level:>5} {row['compression_ratio']:>7.1f}x {row['bytes_per_frame']:>12.1f} "
              f"{row['accuracy']:>9.3f} {row['unknown']:>8} {row['msps']:>7.3f}", file=out)
        del tb
    print("(unknown: frames the ModRec sink flagged as none of the six classes; Msps: samples through "
          "encoder, decoder and ModRec per second of wall clock, start-up included)", file=out)
    split_level = levels[len(levels) // 2] if split_level is None else int(split_level)
    sensor_tb = sensor(model, split_level, frames, labels=labels, frames_per_pdu=frames_per_pdu,
                       num_threads=num_threads)
    cloud_tb = cloud(model, sensor_tb.address, max_queue=math.ceil(len(frames) / frames_per_pdu) + 1,
                     num_threads=num_threads)
    run_split(sensor_tb, cloud_tb, len(frames))
    counter = sensor_tb.counter
    split = {"level": split_level, "address": sensor_tb.address, "pdus": counter.pdus,
             "payload_bytes": counter.payload_bytes, "socket_bytes": counter.serialized_bytes,
             "raw_bytes": raw_bytes, "accuracy": cloud_tb.modrec.accuracy(),
             "frames": cloud_tb.modrec.frames(), "sequence_gaps": cloud_tb.decoder.counters()["sequence_gaps"]}
    print(f"\nsensor -> cloud over ZMQ ({split['address']}), level {split_level}, "
          f"{frames_per_pdu} frames per PDU:", file=out)
    print(f"  {split['frames']} frames in {split['pdus']} PDUs, {split['sequence_gaps']} sequence gaps, "
          f"ModRec accuracy {split['accuracy']:.3f}", file=out)
    print(f"  bytes over the socket {split['socket_bytes']} (HQARF payload {split['payload_bytes']}, "
          f"PMT metadata and framing {split['socket_bytes'] - split['payload_bytes']}) vs raw "
          f"complex64 IQ {raw_bytes}: {raw_bytes / split['socket_bytes']:.1f}x smaller", file=out)
    return {"raw_accuracy": raw_accuracy, "levels": rows, "split": split}
