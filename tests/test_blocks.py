# SPDX-License-Identifier: GPL-3.0-or-later
"""The GNU Radio blocks in flowgraphs: encoder PDUs are Codec.compress bytes, decoder output is
Codec.decompress, ModRec agrees with the classifier offline; levels change while running; bad
PDUs, queue overflow and the end of the stream are handled as documented."""
import time

import numpy as np
import pmt
import pytest

from conftest import random_frames
from gnuradio import blocks, gr, hqarf
from gnuradio.hqarf import flowgraphs
from gnuradio.hqarf.weights import DEFAULT_MODEL_DIR

L = 1024
SYSTEM, PDUS = pmt.intern("system"), pmt.intern("pdus")


@pytest.fixture(scope="module")
def codec(tiny_model_dir):
    # The blocks run torch at their num_threads (1) without changing the process's count, and torch
    # rounds near-tie distances differently at other thread counts: compare at the blocks' count.
    return hqarf.load_codec(tiny_model_dir, num_threads=1)


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return hqarf.load_classifier(tiny_model_dir, num_threads=1)


def as_pdu(blob, meta=None):
    return pmt.cons(meta if meta is not None else pmt.make_dict(), pmt.init_u8vector(len(blob), list(blob)))


def run_encoder(model, samples, tags=(), **kwargs):
    """vector source -> encoder -> message_debug; returns (encoder, [(metadata dict, bytes)])."""
    tb = gr.top_block()
    source = blocks.vector_source_c(np.asarray(samples, np.complex64).tolist(), False, 1, list(tags))
    encoder = hqarf.encoder(model=model, **kwargs)
    store = blocks.message_debug()
    tb.connect(source, encoder)
    tb.msg_connect(encoder, "pdus", store, "store")
    tb.run()
    pdus = [store.get_message(i) for i in range(store.num_messages())]
    return encoder, [(pmt.to_python(pmt.car(p)), bytes(pmt.u8vector_elements(pmt.cdr(p)))) for p in pdus]


def run_decoder(model, messages, max_queue=64):
    """Post `messages` to a decoder, then "done"; returns (decoder, samples, tags by offset)."""
    tb = gr.top_block()
    decoder = hqarf.decoder(model=model, max_queue=max_queue)
    sink = blocks.vector_sink_c()
    tb.connect(decoder, sink)
    raw = decoder.to_basic_block()
    for msg in messages:
        raw._post(PDUS, msg)
    raw._post(SYSTEM, pmt.cons(pmt.intern("done"), pmt.from_long(1)))
    tb.run()
    tags = {}
    for tag in sink.tags():
        tags.setdefault(tag.offset, {})[pmt.symbol_to_string(tag.key)] = pmt.to_python(tag.value)
    return decoder, np.array(sink.data(), np.complex64), tags


def tag(offset, key, value):
    return gr.tag_utils.python_to_tag((offset, pmt.intern(key), value))


# -- encoder ----------------------------------------------------------------------------------------
def test_pdu_bytes_to_and_from_u8vector_through_pmt_serialisation():
    """The blocks build and read a PDU's u8vector through PMT's serialisation (one copy, not a list of
    ints): the same vector as pmt.init_u8vector, the same bytes back, for every size."""
    from gnuradio.hqarf import _vocabulary as V
    assert V._FAST_U8  # this GNU Radio serialises as expected, so the fast path is the one tested
    rng = np.random.default_rng(11)
    for size in (0, 1, 7, 255, 256, 6202, 70001):
        data = bytes(rng.integers(0, 256, size, dtype=np.uint8))
        vector = V.u8vector(data)
        assert pmt.is_u8vector(vector) and pmt.length(vector) == size
        assert pmt.equal(vector, pmt.init_u8vector(size, list(data)))
        assert V.u8vector_bytes(vector) == data
        assert V.u8vector_bytes(pmt.init_u8vector(size, list(data))) == data


def test_encoder_pdus_are_compress_bytes_and_the_tail_is_flushed(tiny_model_dir, codec, rng):
    x = random_frames(rng, 37)
    samples = np.concatenate([x.reshape(-1), random_frames(rng, 1)[0, :300]])  # + a partial frame
    # the end of the input is marked with a flush tag (what flowgraphs.frame_source does)
    encoder, pdus = run_encoder(tiny_model_dir, samples, [tag(len(samples) - 1, "hqarf_flush", pmt.PMT_T)],
                                level=2, frames_per_pdu=16)
    expected = [codec.compress(x[i:i + 16], 2, sequence=k) for k, i in enumerate(range(0, 37, 16))]
    assert [blob for _, blob in pdus] == expected  # 16 + 16 + a shorter PDU of 5 frames
    for k, (meta, _) in enumerate(pdus):
        assert meta["level"] == 2 and meta["sequence"] == k and meta["pdu_num"] == k
        assert meta["frames"] == min(16, 37 - 16 * k)
        assert meta["fingerprint"] == codec.fingerprint_hex
        assert meta["sample_start"] == 16 * k * L
        assert "rx_time" not in meta and "true_label" not in meta
    assert (encoder.frames_encoded, encoder.pdus_sent, encoder.samples_dropped) == (37, 3, 300)
    assert encoder.counters()["short_pdus"] == 1
    assert encoder.bytes_sent == sum(len(b) for b in expected)


def test_encoder_one_frame_per_pdu_batches_and_matches(tiny_model_dir, codec, rng):
    x = random_frames(rng, 20, scale=3.0)
    encoder, pdus = run_encoder(tiny_model_dir, x.reshape(-1), level=4, frames_per_pdu=1)
    assert [blob for _, blob in pdus] == [codec.compress(x[i], 4, sequence=i) for i in range(20)]
    assert encoder.samples_dropped == 0 and encoder.counters()["short_pdus"] == 0


def test_encoder_on_two_threads_sends_the_same_pdus_and_none_is_left_at_the_end(tiny_model_dir, codec, rng):
    """num_threads=2: complete PDUs are encoded two at a time while input keeps coming (one per worker);
    the last complete PDU of an odd count is sent when the input ends (no flush tag, no stall flush)."""
    x = random_frames(rng, 7 * 16 + 5)  # 7 PDUs of 16 (an odd count) or 29 of 4, and 5 or 1 frames more
    for fpp, level in ((16, 0), (4, 3)):
        count = len(x) // fpp * fpp
        encoder, pdus = run_encoder(tiny_model_dir, x.reshape(-1), level=level, frames_per_pdu=fpp, num_threads=2)
        expected = [codec.compress(x[i:i + fpp], level, sequence=k) for k, i in enumerate(range(0, count, fpp))]
        assert [blob for _, blob in pdus] == expected
        assert [meta["sample_start"] for meta, _ in pdus] == [i * L for i in range(0, count, fpp)]
        # complete frames of an unfinished PDU (no flush tag) are counted as unsent, as on one thread
        assert encoder.frames_encoded == count and encoder.frames_unsent == len(x) - count


def test_encoder_metadata_from_uhd_tags(tiny_model_dir, rng):
    x = random_frames(rng, 8)
    tags = [tag(0, "rx_time", pmt.make_tuple(pmt.from_uint64(100), pmt.from_double(0.25))),
            tag(0, "rx_rate", pmt.from_double(1e6)), tag(0, "rx_freq", pmt.from_double(915e6))]
    _, pdus = run_encoder(tiny_model_dir, x.reshape(-1), tags, level=0, frames_per_pdu=4)
    (m0, _), (m1, _) = pdus
    assert m0["rx_time"] == (100, 0.25) and m0["sample_rate"] == 1e6 and m0["rx_freq"] == 915e6
    secs, frac = m1["rx_time"]
    assert secs == 100 and frac == pytest.approx(0.25 + 4 * L / 1e6)


def test_encoder_sticky_true_labels_by_index_and_name(tiny_model_dir, codec, rng):
    x = random_frames(rng, 6)
    tags = [tag(1 * L, "true_label", pmt.from_long(3)),
            tag(3 * L + 5, "true_label", pmt.intern("2fsk")),  # mid-frame: from frame 4 on
            tag(5 * L, "true_label", pmt.intern("not-a-class"))]  # ignored, warned once
    _, pdus = run_encoder(tiny_model_dir, x.reshape(-1), tags, level=1, frames_per_pdu=6)
    (meta, _), = pdus
    assert list(meta["true_label"]) == [-1, 3, 3, 3, codec.classes.index("2fsk"), codec.classes.index("2fsk")]


def test_encoder_level_change_applies_from_the_next_pdu(tiny_model_dir, codec, rng):
    """A source that hands over one segment at a time, and changes the encoder's level between
    segments once the encoder has sent everything before: deterministic, like a GUI slider."""
    x = random_frames(rng, 16)
    schedule = [(0, 8), (3, 4), (1, 4)]  # (level, frames); frames_per_pdu = 4

    class SteppedSource(gr.sync_block):
        def __init__(self):
            gr.sync_block.__init__(self, "stepped", in_sig=None, out_sig=[np.complex64])
            self.sent = 0
            self.segment = 0
            self.encoder = None

        def work(self, input_items, output_items):
            out = output_items[0]
            bounds = np.cumsum([n for _, n in schedule]) * L
            if self.sent >= bounds[-1]:
                return -1
            if self.segment < len(schedule) and self.sent == (bounds[self.segment - 1] if self.segment else 0):
                deadline = time.monotonic() + 600  # a hang guard: the encoder catches up
                while self.encoder.frames_encoded * L < self.sent and time.monotonic() < deadline:
                    time.sleep(0.001)
                self.encoder.set_level(schedule[self.segment][0])
                self.segment += 1
            end = min(bounds[self.segment - 1], self.sent + len(out))
            n = end - self.sent
            out[:n] = x.reshape(-1)[self.sent:end]
            self.sent = end
            return n

    tb = gr.top_block()
    source = SteppedSource()
    encoder = hqarf.encoder(model=tiny_model_dir, level=0, frames_per_pdu=4)
    source.encoder = encoder
    decoder = hqarf.decoder(model=tiny_model_dir)
    store, sink = blocks.message_debug(), blocks.vector_sink_c()
    tb.connect(source, encoder)
    tb.msg_connect(encoder, "pdus", store, "store")
    tb.msg_connect(encoder, "pdus", decoder, "pdus")
    tb.connect(decoder, sink)
    tb.run()
    levels = [0, 0, 3, 1]
    blobs = flowgraphs.pdus_from(store)
    assert blobs == [codec.compress(x[4 * k:4 * k + 4], level, sequence=k) for k, level in enumerate(levels)]
    # The decoder follows the level of each PDU.
    y = np.array(sink.data()).reshape(-1, L)
    np.testing.assert_allclose(y, np.concatenate([codec.decompress(b) for b in blobs]), atol=1e-5)
    frame_levels = [pmt.to_long(t.value) for t in sink.tags() if pmt.symbol_to_string(t.key) == "hqarf_level"]
    assert frame_levels == [level for level in levels for _ in range(4)]


def test_encoder_replaces_nonfinite_samples(tiny_model_dir, codec, rng):
    x = random_frames(rng, 2)
    x[1, 7] = np.nan
    encoder, pdus = run_encoder(tiny_model_dir, x.reshape(-1), level=0, frames_per_pdu=2)
    clean = x.copy()
    clean[1, 7] = 0
    assert [b for _, b in pdus] == [codec.compress(clean, 0)]
    assert encoder.counters()["samples_nonfinite"] == 1


def test_parameters_are_validated(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="level"):
        hqarf.encoder(model=tiny_model_dir, level=5)
    with pytest.raises(ValueError, match="level"):
        hqarf.encoder(model=tiny_model_dir, level=-1)
    with pytest.raises(ValueError, match="frames_per_pdu"):
        hqarf.encoder(model=tiny_model_dir, frames_per_pdu=0)
    with pytest.raises(ValueError, match="max_queue"):
        hqarf.decoder(model=tiny_model_dir, max_queue=0)
    with pytest.raises(ValueError, match="true_label"):
        hqarf.modrec_sink(model=tiny_model_dir, true_label=6)
    assert hqarf.modrec_sink(model=tiny_model_dir, true_label="16psk").true_label == 2
    missing = tmp_path / "nowhere"
    for make in (hqarf.encoder, hqarf.decoder, hqarf.modrec_sink):
        with pytest.raises(hqarf.WeightsError, match="nowhere"):
            make(model=str(missing))
    if not (DEFAULT_MODEL_DIR / "codec.json").exists():
        with pytest.raises(hqarf.WeightsError, match="default"):
            hqarf.encoder(model="")
    encoder = hqarf.encoder(model=tiny_model_dir, level=1)
    with pytest.raises(ValueError):
        encoder.set_level(7)
    with pytest.raises(ValueError):
        encoder.set_level(1.5)
    assert encoder.level() == 1
    encoder.set_level(3.0)  # GRC range widgets may pass floats
    assert encoder.level() == 3


# -- decoder ----------------------------------------------------------------------------------------
def test_decoder_output_is_decompress_with_frame_tags(tiny_model_dir, codec, rng):
    blobs = [codec.compress(random_frames(rng, n, scale=s), level, sequence=k)
             for k, (n, level, s) in enumerate([(3, 0, 1.0), (1, 4, 5.0), (70, 2, 0.01), (2, 1, 1.0)])]
    meta = pmt.dict_add(pmt.make_dict(), pmt.intern("rx_time"), pmt.make_tuple(pmt.from_uint64(7), pmt.from_double(0.5)))
    meta = pmt.dict_add(meta, pmt.intern("sample_rate"), pmt.from_double(2e6))
    messages = [as_pdu(b) for b in blobs]
    messages[1] = as_pdu(blobs[1], meta)
    decoder, y, tags = run_decoder(tiny_model_dir, messages)
    expected = np.concatenate([codec.decompress(b) for b in blobs])
    assert y.shape == (76 * L,)
    np.testing.assert_allclose(y.reshape(-1, L), expected, rtol=1e-5, atol=1e-6)
    frame_info = [(tags[i * L]["hqarf_level"], tags[i * L]["hqarf_sequence"]) for i in range(76)]
    assert frame_info == [(0, 0)] * 3 + [(4, 1)] + [(2, 2)] * 70 + [(1, 3)] * 2
    assert tags[3 * L]["rx_time"] == (7, 0.5) and tags[3 * L]["rx_rate"] == 2e6
    assert set(tags) == {i * L for i in range(76)}
    c = decoder.counters()
    assert (c["received"], c["decoded_messages"], c["decoded_frames"], c["sequence_gaps"]) == (4, 4, 76, 0)


def test_decoder_drops_bad_pdus_counts_them_and_keeps_decoding(tiny_model_dir, other_model_dir, codec, rng, capfd):
    good = [codec.compress(random_frames(rng, 2), 1, sequence=s) for s in (0, 1, 5)]
    foreign = hqarf.load_codec(other_model_dir).compress(random_frames(rng, 2), 1, sequence=2)
    corrupt = bytearray(good[0])
    corrupt[30] ^= 0x40
    messages = [as_pdu(good[0]),
                pmt.intern("not a pdu"),                                   # malformed
                pmt.cons(pmt.make_dict(), pmt.init_f32vector(3, [1, 2, 3])),  # malformed
                pmt.dict_add(pmt.make_dict(), pmt.intern("a"), pmt.PMT_T),  # a dict, not a pair
                pmt.init_u8vector(len(good[0]), list(good[0])),            # a bare vector: malformed
                as_pdu(foreign),                                           # fingerprint
                as_pdu(bytes(corrupt)),                                    # checksum
                as_pdu(good[0][:20]),                                      # truncated
                as_pdu(good[1]),
                as_pdu(good[2])]                                           # sequence 5: gap of 3
    decoder, y, _ = run_decoder(tiny_model_dir, messages)
    np.testing.assert_allclose(y.reshape(-1, L), np.concatenate([codec.decompress(b) for b in good]),
                               rtol=1e-5, atol=1e-6)
    c = decoder.counters()
    assert c["received"] == 10 and c["accepted"] == 3 and c["decoded_frames"] == 6
    assert (c["dropped_malformed"], c["dropped_fingerprint"], c["dropped_checksum"], c["dropped_truncated"]) == (4, 1, 1, 1)
    assert (c["sequence_gaps"], c["missing_messages"], c["dropped_overflow"]) == (1, 3, 0)
    log = "".join(capfd.readouterr())  # GNU Radio logs to stdout
    assert log.count("further 'malformed' drops are counted") == 1  # logged once per kind
    assert log.count("further 'fingerprint' drops") == 1


def test_decoder_queue_is_bounded(tiny_model_dir, codec, rng):
    """All ten PDUs reach the handler before work() runs: four fit, six are dropped on arrival."""
    blobs = [codec.compress(random_frames(rng, 1), 3, sequence=s) for s in range(10)]
    decoder, y, _ = run_decoder(tiny_model_dir, [as_pdu(b) for b in blobs], max_queue=4)
    np.testing.assert_allclose(y.reshape(-1, L), np.concatenate([codec.decompress(b) for b in blobs[:4]]),
                               rtol=1e-5, atol=1e-6)
    c = decoder.counters()
    assert (c["accepted"], c["dropped_overflow"], c["decoded_frames"], c["sequence_gaps"]) == (10, 6, 4, 0)


def test_decoder_idles_without_spinning_and_stops(tiny_model_dir, codec, rng):
    tb = gr.top_block()
    decoder = hqarf.decoder(model=tiny_model_dir)
    sink = blocks.vector_sink_c()
    tb.connect(decoder, sink)
    tb.start()
    try:
        cpu = time.process_time()
        time.sleep(0.6)
        assert time.process_time() - cpu < 0.2  # waiting for messages costs (almost) nothing
        blob = codec.compress(random_frames(rng, 2), 0)
        decoder.to_basic_block()._post(PDUS, as_pdu(blob))
        deadline = time.monotonic() + 10
        while len(sink.data()) < 2 * L and time.monotonic() < deadline:
            time.sleep(0.005)
        np.testing.assert_allclose(np.array(sink.data()).reshape(-1, L), codec.decompress(blob), rtol=1e-5, atol=1e-6)
    finally:
        began = time.monotonic()
        tb.stop()
        tb.wait()
    assert time.monotonic() - began < 60  # a hang guard: a sleeping decoder wakes up for stop()


# -- modrec sink ----------------------------------------------------------------------------------
def run_modrec_sink(samples, tags=(), **kwargs):
    """vector source -> hqarf.modrec_sink(**kwargs) -> message_debug; returns (sink, messages as dicts)."""
    tb = gr.top_block()
    source = blocks.vector_source_c(np.asarray(samples).reshape(-1).tolist(), False, 1, list(tags))
    sink = hqarf.modrec_sink(**kwargs)
    store = blocks.message_debug()
    tb.connect(source, sink)
    tb.msg_connect(sink, "classification", store, "store")
    tb.run()
    return sink, flowgraphs.classifications_from(store)


def test_modrec_sink_agrees_with_the_classifier(tiny_model_dir, classifier, rng):
    x = random_frames(rng, 30)
    tags = [tag(10 * L, "true_label", pmt.from_long(4)), tag(20 * L + 1, "true_label", pmt.intern("4ask"))]
    sink, messages = run_modrec_sink(np.concatenate([x.reshape(-1), x[0, :100]]), tags, model=tiny_model_dir,
                                     true_label=2)
    predicted = classifier.predict(x)
    truth = np.array([2] * 10 + [4] * 11 + [0] * 9)  # the mid-frame tag applies from frame 21
    assert [m["class_index"] for m in messages] == predicted.tolist()
    assert [m["class"] for m in messages] == [classifier.classes[p] for p in predicted]
    assert [m["offset"] for m in messages] == [i * L for i in range(30)]
    assert [m["sequence"] for m in messages] == list(range(30))
    assert [m["true_label"] for m in messages] == truth.tolist()
    np.testing.assert_allclose([m["confidence"] for m in messages], classifier.predict_proba(x).max(1), rtol=1e-5)
    assert sink.frames() == 30
    assert sink.accuracy() == pytest.approx(float(np.mean(predicted == truth)))
    hist = np.bincount(predicted, minlength=len(classifier.classes))
    assert sink.histogram() == dict(zip(classifier.classes, hist.tolist()))
    assert sink.confusion().sum() == 30
    assert sink.counters()["samples_dropped"] == 100


def test_modrec_sink_without_labels_has_no_accuracy(tiny_model_dir, rng):
    tb = gr.top_block()
    source = blocks.vector_source_c(random_frames(rng, 3).reshape(-1).tolist(), False)
    sink = hqarf.modrec_sink(model=tiny_model_dir)
    tb.connect(source, sink)
    tb.run()
    assert sink.frames() == 3 and sink.accuracy() is None


# -- end to end in one process --------------------------------------------------------------------
def test_loopback_carries_labels_and_matches_offline(tiny_model_dir, codec, classifier, rng):
    x = random_frames(rng, 45)
    labels = rng.integers(0, len(classifier.classes), 45)
    tb = flowgraphs.loopback(tiny_model_dir, 3, x, labels=labels, frames_per_pdu=8, collect=True,
                             keep_samples=True)
    tb.run()
    blobs = flowgraphs.pdus_from(tb.pdus)
    assert len(blobs) == 6 and tb.decoder.counters()["sequence_gaps"] == 0
    offline = np.concatenate([codec.decompress(b) for b in blobs])
    np.testing.assert_allclose(np.array(tb.samples.data()).reshape(-1, L), offline, rtol=1e-5, atol=1e-6)
    online = [m["class_index"] for m in flowgraphs.classifications_from(tb.classified)]
    assert online == classifier.predict(offline).tolist()
    assert [m["true_label"] for m in flowgraphs.classifications_from(tb.classified)] == labels.tolist()
    assert tb.modrec.accuracy() == pytest.approx(float(np.mean(classifier.predict(offline) == labels)))


def test_modrec_sink_flags_frames_its_unknown_detector_scores_above_the_threshold(tmp_path, rng):
    import shutil
    import torch
    from gnuradio.hqarf.classifier import Classifier, ClassifierConfig, ModRecNet
    from conftest import CLASSES, make_classifier, make_codec

    model = make_classifier(make_codec(tmp_path / "m"))
    torch.manual_seed(3)
    detector = ModRecNet(ClassifierConfig(num_classes=len(CLASSES) + 1, stem_width=8, widths=(8, 8), blocks=(1, 1)))
    # a hand-made out-of-set frame (a pure tone) between frames of noise
    tone = np.exp(2j * np.pi * 0.1 * np.arange(L)).astype(np.complex64)
    x = np.concatenate([random_frames(rng, 3), tone[None], random_frames(rng, 2)])
    wrapped = Classifier(detector, {"classes": [*CLASSES, "unknown"]}, kind="unknown_detector")
    scores = wrapped.predict_proba(x)[:, -1]
    threshold = float(np.sort(scores)[-2] + np.sort(scores)[-1]) / 2  # only the top-scoring frame above it
    wrapped.manifest["unknown_detector"] = {"threshold": threshold}
    wrapped.save(model)
    clf = hqarf.load_classifier(model)
    assert clf.detector is not None and clf.unknown_threshold == pytest.approx(threshold)
    expected = clf.classify(x)
    assert expected["unknown"].sum() == 1 and expected["unknown"][np.argmax(scores)]

    sink, messages = run_modrec_sink(x, model=model, true_label=0)
    assert [m["unknown"] for m in messages] == expected["unknown"].tolist()
    np.testing.assert_allclose([m["unknown_score"] for m in messages], scores, rtol=1e-5)
    assert sink.counters()["unknown"] == 1 and sum(sink.histogram().values()) == 6
    assert sink.confusion().sum() == 6  # the six-class decision still scores every frame
    sink.set_unknown_threshold(1.0)  # the GRC callback: flag nothing from now on
    assert sink.unknown_threshold == 1.0
    with pytest.raises(ValueError):
        sink.set_unknown_threshold(-0.5)

    # classes_from="detector": class, confidence and score all from the detector's one pass
    logits = torch.from_numpy(wrapped.logits(x))
    known = torch.softmax(logits[:, :-1], -1).numpy()
    one = clf.classify(x, classes_from="detector")
    assert one["prediction"].tolist() == known.argmax(-1).tolist()
    np.testing.assert_allclose(one["confidence"], known.max(-1), rtol=1e-5)
    np.testing.assert_allclose(one["score"], scores, rtol=1e-5)
    assert one["unknown"].tolist() == expected["unknown"].tolist()
    assert known.argmax(-1).tolist() != clf.predict(x).tolist()  # two random networks: the choice shows
    sink, messages = run_modrec_sink(x, model=model, true_label=0, classes_from="detector")
    assert [m["class_index"] for m in messages] == one["prediction"].tolist()
    assert [m["unknown"] for m in messages] == one["unknown"].tolist()
    assert sink.histogram() == {c: int((one["prediction"] == i).sum()) for i, c in enumerate(CLASSES)}
    sink.set_classes_from("classifier")  # the GRC callback
    assert sink.classes_from == "classifier"
    with pytest.raises(ValueError, match="classes_from"):
        sink.set_classes_from("both")
    with pytest.raises(ValueError, match="classes_from"):
        clf.classify(x, classes_from="both")

    # the whole chain with the sink on the detector (the bench's 'chain det' column)
    tb = flowgraphs.loopback(model, 0, x, frames_per_pdu=2, collect=True, keep_samples=True, classes_from="detector")
    tb.run()
    reconstructed = np.array(tb.samples.data()).reshape(-1, L)
    assert tb.modrec.classes_from == "detector" and len(reconstructed) == len(x)
    chained = flowgraphs.classifications_from(tb.classified)
    assert [m["class_index"] for m in chained] == clf.classify(reconstructed, classes_from="detector")["prediction"].tolist()
    shutil.rmtree(model)


def test_modrec_sink_refuses_classes_from_a_detector_the_model_lacks(tiny_model_dir):
    assert hqarf.load_classifier(tiny_model_dir).detector is None
    with pytest.raises(ValueError, match="no unknown detector"):
        hqarf.modrec_sink(model=tiny_model_dir, classes_from="detector")
