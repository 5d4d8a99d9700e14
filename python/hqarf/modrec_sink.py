# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio block: classify the modulation of every frame of a complex stream (ModRec).

Frames (codec frame_len samples) are classified in batches with hqarf.Classifier; the block
keeps a histogram and, given true labels, a running accuracy and confusion matrix.
"""
from __future__ import annotations

import time

import numpy as np
import pmt
from gnuradio import gr

from .classifier import load_classifier
from ._checks import check_int
from ._vocabulary import TAG_LEVEL, TAG_SEQUENCE, TAG_TRUE_LABEL, WarnsOnce
from .runtime import check_runtime

CLASSIFICATION = pmt.intern("classification")
SUMMARY_PERIOD_S = 10.0
_CLASS, _INDEX, _CONFIDENCE, _SEQUENCE, _OFFSET, _TRUE, _CORRECT, _UNKNOWN, _UNKNOWN_SCORE = (
    pmt.intern(k) for k in ("class", "class_index", "confidence", "sequence", "offset",
                            "true_label", "correct", "unknown", "unknown_score"))
_FRAME_TAGS = (TAG_LEVEL, TAG_SEQUENCE)


class modrec_sink(WarnsOnce, gr.basic_block):
    """HQARF ModRec Sink: classify every frame of a complex stream, keep statistics.

    The input is cut into frames of the classifier's frame length (1024) from the first sample
    (hqarf.decoder output is frame-aligned). For each frame one message goes out on port
    `classification` (only when something is connected): a dict with `class` (name),
    `class_index`, `confidence` (softmax probability of that class), `unknown` (True when the frame
    looks like none of the classes) and `unknown_score`, `sequence` (frame number in this sink, from
    0), `offset` (input sample index of the frame start), and when known `true_label`, `correct`,
    `hqarf_level` and `hqarf_sequence` (from the decoder's tags).

    Unknown: a frame is flagged when the model's unknown score (its unknown detector's probability of
    "none of the classes") exceeds `unknown_threshold`; -1 uses the threshold shipped with the model
    (set for about 1 % false flags on clean frames of the six classes), 1 or more flags nothing. A
    model without a detector flags nothing. Flagged frames keep their most likely class in `class`
    and are counted (`unknown` in counters()); the histogram and the accuracy stay those of the
    six-class decision over every frame (as in the offline reports).

    Truth: `true_label` >= 0 scores every frame as that class (-1: unknown). A `true_label` stream
    tag (class index, or class name symbol; -1 unknown) overrides it from the frame whose first
    sample is at or after the tag onwards (sticky), so a recording of mixed classes can be scored;
    hqarf.decoder re-creates these tags from labels the encoder carried in the PDU metadata.

    Python: `frames()`, `histogram()` ({class name: count}), `accuracy()` (None until a labelled
    frame was seen), `confusion()` (true x predicted counts), `counters()`. A short summary is
    logged every 10 s and at stop. Batched: each work() call classifies all complete frames it
    has in one call (chunks of `classifier.chunk`, 16). Bad input: samples of an incomplete frame at the end are
    dropped and counted (`samples_dropped`); NaN/inf samples are replaced by 0, counted
    (`samples_nonfinite`), warned about once; a malformed true_label tag is ignored and warned
    about once. Errors never stop the flowgraph.

    Stop: frames still in the sink's input when the flowgraph is stopped (tb.stop() while the
    upstream block was ahead) are never classified. A block cannot see its unread input, so the
    flowgraph that stops it reports what its upstream produced: `account_stop(produced_samples)`
    counts the difference in `lost_at_stop_frames` and logs it (flowgraphs.Loopback and
    flowgraphs.Cloud do it in wait(); a hand-built flowgraph passes the upstream block's
    `nitems_written(0)`). To classify them instead, let the upstream finish (flowgraphs.Cloud.drain).

    Classes from: "classifier" (default) takes each frame's class from the ModRec classifier and its unknown
    score from the unknown detector, two networks per frame; "detector" takes both from the unknown
    detector (its outputs for the six classes, then "none of them"), one network, about twice the frames
    per second at the same accuracy (docs/speed.md). The offline reports use the classifier.

    Speed: `runtime` ("torch" default, "torchscript"; "onnx" runs TorchScript, see
    hqarf.classifier) and `num_threads` (1; 0 = leave torch's setting alone) as for hqarf.encoder;
    torch's process-wide thread count is not changed for other blocks. The block classifies what each
    call brings: with GNU Radio's default buffer (hqarf.decoder upstream sets a larger one) that is 2-4
    frames, 1.5-3x slower than 64; give the block that feeds it a minimum output buffer of 65536 samples
    (`set_min_output_buffer(65536)`; GRC: that block's Advanced tab).
    """

    def __init__(self, model="", true_label=-1, device="cpu", num_threads=1, runtime="torch", unknown_threshold=-1.0,
                 classes_from="classifier"):
        gr.basic_block.__init__(self, name="hqarf_modrec_sink", in_sig=[np.complex64], out_sig=None)
        num_threads = check_int("num_threads", num_threads, 0)
        self.classifier = load_classifier(model or None, device=device, runtime=check_runtime(runtime),
                                          num_threads=num_threads)
        self.classes = list(self.classifier.classes)
        if isinstance(true_label, str):
            if true_label not in self.classes:
                raise ValueError(f"true_label {true_label!r} is not one of {self.classes}")
            true_label = self.classes.index(true_label)
        self.true_label = check_int("true_label", true_label, -1, len(self.classes) - 1)
        self._unknown_count = 0
        self.set_unknown_threshold(unknown_threshold)
        self.set_classes_from(classes_from)
        self.frame_len = self.classifier.frame_len
        self.message_port_register_out(CLASSIFICATION)
        self._partial = np.zeros(0, np.complex64)
        self._partial_offset = 0
        self._label = self.true_label          # label in force at the last frame classified
        self._label_changes: list = []         # (offset, label) not yet reached by a frame start
        self._frame_tags: dict = {}            # offset -> [(key, value)] of frames not yet complete
        self._hist = np.zeros(len(self.classes), np.int64)
        self._confusion = np.zeros((len(self.classes), len(self.classes)), np.int64)
        self._frames = 0
        self._scored = 0
        self._correct = 0
        self.samples_dropped = 0
        self.samples_nonfinite = 0
        self.errors = 0
        self.lost_at_stop_frames = 0
        self._accounted = 0                    # upstream samples already accounted for at a stop
        self._warned: set = set()
        self._last_summary = time.monotonic()

    # -- statistics -----------------------------------------------------------------------------
    def frames(self) -> int:
        return self._frames

    def histogram(self) -> dict:
        return {name: int(n) for name, n in zip(self.classes, self._hist)}

    def accuracy(self):
        return self._correct / self._scored if self._scored else None

    def confusion(self) -> np.ndarray:
        return self._confusion.copy()

    def set_unknown_threshold(self, threshold) -> None:
        """GRC callback: the unknown score above which a frame is flagged (-1: the model's own)."""
        try:
            threshold = float(threshold)
        except (TypeError, ValueError):
            raise ValueError(f"unknown_threshold must be a number, got {threshold!r}") from None
        if not (threshold == -1.0 or threshold >= 0.0):
            raise ValueError(f"unknown_threshold must be -1 (the model's) or >= 0, got {threshold}")
        self.unknown_threshold = self.classifier.unknown_threshold if threshold == -1.0 else threshold

    def set_classes_from(self, classes_from) -> None:
        """GRC callback: "classifier" (the class from the classifier, the unknown score from the detector) or
        "detector" (both from the unknown detector: one network, about twice the frames per second)."""
        # a model without a (matching) detector fails here, not in work()
        self.classes_from = self.classifier.check_classes_from(classes_from)

    def counters(self) -> dict:
        return {"frames": self._frames, "scored": self._scored, "correct": self._correct,
                "unknown": self._unknown_count,
                "samples_dropped": self.samples_dropped, "samples_nonfinite": self.samples_nonfinite,
                "errors": self.errors, "lost_at_stop_frames": self.lost_at_stop_frames}

    def summary(self) -> str:
        top = sorted(self.histogram().items(), key=lambda kv: -kv[1])[:3]
        acc = self.accuracy()
        acc_text = f", accuracy {acc:.3f} on {self._scored}" if acc is not None else ""
        unknown = f", {self._unknown_count} flagged unknown" if self._unknown_count else ""
        return f"{self._frames} frames classified{acc_text}{unknown}; most frequent {top}"

    # -- scheduler ------------------------------------------------------------------------------
    def general_work(self, input_items, output_items):
        samples = input_items[0]
        try:
            self._work(samples)
        except Exception as exc:  # an exception here would abort the whole process
            self.errors += 1
            self.logger.error(f"unexpected error, {len(samples)} samples skipped: {exc!r}")
            self._partial = np.zeros(0, np.complex64)
            self._partial_offset = self.nitems_read(0) + len(samples)
        self.consume(0, len(samples))
        return 0

    def _work(self, samples) -> None:
        L = self.frame_len
        start = self.nitems_read(0)
        n = len(samples)
        if len(self._partial):
            data = np.concatenate([self._partial, samples])
        else:
            data, self._partial_offset = samples, start
        self._read_tags(start, start + n)
        count = len(data) // L
        if count:
            frames = data[:count * L].reshape(count, L)
            bad = ~np.isfinite(frames.view(np.float32)).reshape(count, L, 2).all(axis=2)
            if bad.any():
                self.samples_nonfinite += int(bad.sum())
                self._warn_once("nonfinite", "NaN or infinite samples replaced by 0")
                frames = np.where(bad, np.complex64(0), frames)
            self._classify(frames, self._partial_offset)
        self._partial = np.array(data[count * L:], dtype=np.complex64)
        self._partial_offset += count * L
        now = time.monotonic()
        if now - self._last_summary >= SUMMARY_PERIOD_S:
            self._last_summary = now
            self.logger.info(self.summary())

    def _read_tags(self, start: int, stop: int) -> None:
        """Queue label changes and frame-start tags until the frames they belong to are complete."""
        for tag in self.get_tags_in_range(0, start, stop):
            key = pmt.symbol_to_string(tag.key)
            if key == TAG_TRUE_LABEL:
                index = self._label_of(tag, self.classes)
                if index is not None:
                    self._label_changes.append((tag.offset, index))
            elif key in _FRAME_TAGS:
                self._frame_tags.setdefault(tag.offset, []).append((pmt.intern(key), tag.value))
        self._label_changes.sort(key=lambda c: c[0])

    def _classify(self, frames, first_offset: int) -> None:
        L = self.frame_len
        result = self.classifier.classify(frames, self.unknown_threshold, self.classes_from)
        predicted, confidence = result["prediction"], result["confidence"]
        unknown, score = result["unknown"], result["score"]
        self._unknown_count += int(unknown.sum())
        offsets = first_offset + L * np.arange(len(frames), dtype=np.int64)
        labels = np.empty(len(frames), np.int64)
        changes, c = self._label_changes, 0
        for i, offset in enumerate(offsets):
            while c < len(changes) and changes[c][0] <= offset:
                self._label = changes[c][1]
                c += 1
            labels[i] = self._label
        del changes[:c]  # a tag inside the last frame applies from the next frame on
        frame_tags = self._frame_tags
        np.add.at(self._hist, predicted, 1)
        scored = labels >= 0
        if scored.any():
            np.add.at(self._confusion, (labels[scored], predicted[scored]), 1)
            self._scored += int(scored.sum())
            self._correct += int((labels[scored] == predicted[scored]).sum())
        publish = not pmt.is_null(self.message_subscribers(CLASSIFICATION))
        for i in range(len(frames)) if publish else ():
            p = int(predicted[i])
            msg = pmt.make_dict()
            msg = pmt.dict_add(msg, _CLASS, pmt.intern(self.classes[p]))
            msg = pmt.dict_add(msg, _INDEX, pmt.from_long(p))
            msg = pmt.dict_add(msg, _CONFIDENCE, pmt.from_double(float(confidence[i])))
            msg = pmt.dict_add(msg, _UNKNOWN, pmt.from_bool(bool(unknown[i])))
            msg = pmt.dict_add(msg, _UNKNOWN_SCORE, pmt.from_double(float(score[i])))
            msg = pmt.dict_add(msg, _SEQUENCE, pmt.from_uint64(self._frames + i))
            msg = pmt.dict_add(msg, _OFFSET, pmt.from_uint64(int(offsets[i])))
            if labels[i] >= 0:
                msg = pmt.dict_add(msg, _TRUE, pmt.from_long(int(labels[i])))
                msg = pmt.dict_add(msg, _CORRECT, pmt.from_bool(bool(labels[i] == p)))
            for key, value in frame_tags.get(int(offsets[i]), ()):
                msg = pmt.dict_add(msg, key, value)
            self.message_port_pub(CLASSIFICATION, msg)
        self._frames += len(frames)
        for offset in [o for o in frame_tags if o <= offsets[-1]]:
            del frame_tags[offset]

    def stop(self):
        try:
            if len(self._partial):
                self.samples_dropped += len(self._partial)
                self._partial = np.zeros(0, np.complex64)
            dropped = f"; {self.samples_dropped} samples of an incomplete frame dropped" if self.samples_dropped else ""
            self.logger.info(self.summary() + dropped)
        except Exception:
            pass
        return True

    def account_stop(self, produced_samples: int) -> int:
        """After the flowgraph has stopped: `produced_samples` (the upstream block's
        nitems_written(0)) minus what this sink read are frames it never classified. Counts them
        in `lost_at_stop_frames`, logs one line, returns the count (0 when all were read).
        Calling it again counts only what was produced since (wait() may run more than once)."""
        try:
            produced, read = int(produced_samples), int(self.nitems_read(0))
        except Exception as exc:  # not started, or already torn down
            self.logger.error(f"cannot account for unread input at stop: {exc!r}")
            return 0
        frames = max(0, produced - max(read, self._accounted)) // self.frame_len
        self._accounted = max(self._accounted, produced)
        if frames:
            self.lost_at_stop_frames += frames
            self.logger.warn(f"stopped with {frames} frames not yet classified (they were in the input "
                             f"when the flowgraph stopped); counted in lost_at_stop_frames")
        return frames
