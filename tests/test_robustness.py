# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 15: crafted files, memory bounds, nothing lost at stop, deterministic framing, weights
confinement, the sequence policy and saturation. Each test failed before its fix."""
import json
import os
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pmt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_readers_path  # noqa: F401  (puts scripts/ on sys.path)
import fuzz_readers
from conftest import make_codec, random_frames
from gnuradio import blocks, gr, hqarf
from gnuradio.hqarf import cli, flowgraphs, wire
from gnuradio.hqarf.codec import MAX_SCALE

L = 1024
PDUS, SYSTEM = pmt.intern("pdus"), pmt.intern("system")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_model_dir):
    fuzz_readers.cache_models()
    return fuzz_readers.Corpus(tmp_path_factory.mktemp("fuzz"), tiny_model_dir)


def as_pdu(blob):
    return pmt.cons(pmt.make_dict(), pmt.init_u8vector(len(blob), list(blob)))


# -- 1, 2: crafted compressed files and SigMF metadata ------------------------------------------
@pytest.mark.parametrize("meta", [{"global": 5}, {"global": {}, "captures": [1, 2]}, {"global": {}, "annotations": [5]},
                                  {"global": {}, "captures": [{"core:sample_start": None}]},
                                  {"global": {"core:extensions": 7}}, [1], "x"])
def test_crafted_metadata_is_one_line_and_leaves_nothing(corpus, meta):
    data = fuzz_readers.apply(corpus.blob, ("meta_text", json.dumps(meta).encode()))
    assert fuzz_readers.check_compressed(corpus, data) == []
    # and it is refused, not accepted
    (corpus.work / "x.hqarf").write_bytes(data)
    assert cli.main(["info", str(corpus.work / "x.hqarf")]) == 1
    (corpus.work / "x.hqarf").unlink()


def test_deep_and_inflating_metadata_are_refused(corpus, capsys):
    for mutation, fragment in [(("deep", 100_000), "nested"), (("deep", 40), "nested deeper"),
                               (("inflate", 40 << 20), "inflates to more than")]:
        path = corpus.work / "x.hqarf"
        path.write_bytes(fuzz_readers.apply(corpus.blob, mutation))
        assert cli.main(["decompress", str(path), "-o", str(corpus.work / "o"), "-m", str(corpus.model), "-q"]) == 1
        assert fragment in capsys.readouterr().err
        assert os.listdir(corpus.work) == ["x.hqarf"]
        path.unlink()


def test_header_bytes_beyond_the_data_and_empty_inputs_are_refused(corpus, capsys, tmp_path):
    meta = json.loads(corpus.meta_text)
    meta["captures"][0]["core:header_bytes"] = 10 ** 12
    (tmp_path / "h.sigmf-meta").write_text(json.dumps(meta))
    os.link(corpus.directory / "rec.sigmf-data", tmp_path / "h.sigmf-data")
    assert cli.main(["compress", str(tmp_path / "h.sigmf-meta"), "-o", str(tmp_path / "c"), "-l", "0",
                     "-m", str(corpus.model), "-q"]) == 1
    assert "exceed" in capsys.readouterr().err
    (tmp_path / "empty.cf32").write_bytes(b"")
    assert cli.main(["compress", str(tmp_path / "empty.cf32"), "-o", str(tmp_path / "c"), "-l", "0",
                     "-m", str(corpus.model), "-q"]) == 1
    assert "no samples" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_sample_count_the_file_does_not_hold_is_refused_before_decoding(corpus, capsys):
    path = corpus.work / "x.hqarf"
    path.write_bytes(fuzz_readers.apply(corpus.blob, ("field", "sample_count", 2 ** 62)))
    assert cli.main(["classify", str(path), "-m", str(corpus.model), "-s", "-q"]) == 1
    assert "truncated" in capsys.readouterr().err
    path.unlink()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                           max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.integers(0, 500), value=json_values, delete=st.booleans())
def test_fuzz_structured_metadata_mutations(corpus, where, value, delete):
    mutation = ("meta_delete", where) if delete else ("meta", where, value)
    assert fuzz_readers.check_compressed(corpus, fuzz_readers.apply(corpus.blob, mutation)) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(fuzz_readers.FIELDS), value=st.integers(-1, 2 ** 64))
def test_fuzz_header_fields(corpus, field, value):
    assert fuzz_readers.check_compressed(corpus, fuzz_readers.apply(corpus.blob, ("field", field, value))) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10 ** 6), value=st.integers(0, 255), reseal=st.booleans(), raw=st.binary(max_size=300))
def test_fuzz_raw_bytes(corpus, position, value, reseal, raw):
    assert fuzz_readers.check_compressed(corpus, fuzz_readers.apply(corpus.blob, ("byte", position, value, reseal))) == []
    assert fuzz_readers.check_compressed(corpus, raw) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.integers(0, 500), value=json_values)
def test_fuzz_sigmf_metadata(corpus, where, value):
    meta = fuzz_readers.mutate_json(json.loads(corpus.meta_text), where, value)
    assert fuzz_readers.check_sigmf(corpus, json.dumps(meta).encode()) == []


# -- 3: memory -----------------------------------------------------------------------------------
def test_parse_memory_is_bounded_and_indices_are_compact(tiny_model_dir):
    codec = hqarf.load_codec(tiny_model_dir)
    rng = np.random.default_rng(0)
    for level in (0, 4):
        idx = rng.integers(0, 64, (wire.MAX_FRAMES, codec.tokens(level)))
        blob = wire.pack(idx, np.ones(wire.MAX_FRAMES, np.float32), level=level, bits=6, fingerprint=codec.fingerprint)
        assert len(blob) <= codec.max_message_size
        tracemalloc.start()
        message = codec.parse(blob)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert message.indices.dtype == np.uint8 and np.array_equal(message.indices, idx)
        assert peak < 2 * len(blob) + message.indices.nbytes + (2 << 20), peak  # docs/wire-format.md


def test_more_frames_than_the_limit_are_refused_from_the_header(tiny_model_dir):
    codec = hqarf.load_codec(tiny_model_dir)
    blob = bytearray(codec.compress(np.ones((1, L), np.complex64), 4))
    blob[20:22] = (wire.MAX_FRAMES + 1).to_bytes(2, "little")
    with pytest.raises(hqarf.WireFormatError) as info:
        codec.parse(bytes(blob))
    assert info.value.reason == "frame_count"


def run_decoder(model, messages, **kwargs):
    tb = gr.top_block()
    decoder = hqarf.decoder(model=model, **kwargs)
    sink = blocks.vector_sink_c()
    tb.connect(decoder, sink)
    for msg in messages:
        decoder.to_basic_block()._post(PDUS, msg)
    decoder.to_basic_block()._post(SYSTEM, pmt.cons(pmt.intern("done"), pmt.from_long(1)))
    tb.run()
    return decoder, np.array(sink.data(), np.complex64)


def test_decoder_queue_is_bounded_in_frames_and_oversized_pdus_are_refused(tiny_model_dir, rng):
    codec = hqarf.load_codec(tiny_model_dir)
    blobs = [codec.compress(random_frames(rng, 10), 4, sequence=s) for s in range(5)]
    big = as_pdu(bytes(codec.max_message_size + 1))
    decoder, y = run_decoder(tiny_model_dir, [as_pdu(b) for b in blobs] + [big], max_queued_frames=25)
    c = decoder.counters()
    assert (c["decoded_frames"], c["dropped_overflow"], c["dropped_length"]) == (20, 3, 1)


# -- 6: replays and reordering ---------------------------------------------------------------------
def test_replays_are_dropped_and_late_messages_counted_as_reordered(tiny_model_dir, rng):
    codec = hqarf.load_codec(tiny_model_dir)
    order = [0, 1, 2, 3, 0, 10, 5, 6, 7, 8]
    blobs = {s: codec.compress(random_frames(rng, 1), 3, sequence=s) for s in set(order)}
    decoder, y = run_decoder(tiny_model_dir, [as_pdu(blobs[s]) for s in order])
    c = decoder.counters()
    assert (c["dropped_duplicate"], c["missing_messages"], c["reordered"], c["sequence_gaps"]) == (1, 2, 4, 1)
    assert c["decoded_frames"] == 9
    expected = [s for i, s in enumerate(order) if s not in order[:i]]
    np.testing.assert_allclose(y.reshape(-1, L), np.concatenate([codec.decompress(blobs[s]) for s in expected]),
                               rtol=1e-5, atol=1e-6)


# -- 4, 7: nothing lost silently, framing independent of timing -------------------------------------
class TricklingSource(gr.sync_block):
    """Hands over one frame per call and pauses every few frames: a busy machine, reproducibly."""

    def __init__(self, frames, pause_every=5, pause_s=0.15):
        gr.sync_block.__init__(self, "trickle", in_sig=None, out_sig=[np.complex64])
        self.samples, self.sent, self.calls = frames.reshape(-1), 0, 0
        self.pause_every, self.pause_s = pause_every, pause_s

    def work(self, input_items, output_items):
        import time
        if self.sent >= len(self.samples):
            return -1
        self.calls += 1
        if self.calls % self.pause_every == 0:
            time.sleep(self.pause_s)  # only ever makes a timer-driven encoder cut a PDU short
        n = min(L, len(output_items[0]), len(self.samples) - self.sent)
        output_items[0][:n] = self.samples[self.sent:self.sent + n]
        self.sent += n
        return n


def test_framing_does_not_depend_on_timing_and_unsent_frames_are_counted(tiny_model_dir, rng):
    x = random_frames(rng, 37)
    tb = gr.top_block()
    source = TricklingSource(x)
    encoder = hqarf.encoder(model=tiny_model_dir, level=3, frames_per_pdu=16)
    store = blocks.message_debug()
    tb.connect(source, encoder)
    tb.msg_connect(encoder, "pdus", store, "store")
    tb.run()
    frames = [pmt.to_python(pmt.car(store.get_message(i)))["frames"] for i in range(store.num_messages())]
    assert frames == [16, 16]
    assert encoder.counters()["frames_unsent"] == 5 and encoder.pdus_sent == 2 and encoder.frames_encoded == 32


def test_loopback_delivers_the_tail_through_the_flush_tag(tiny_model_dir, rng):
    x = random_frames(rng, 64 + 5)
    tb = flowgraphs.loopback(tiny_model_dir, 2, x, frames_per_pdu=16)
    tb.run()
    assert tb.encoder.pdus_sent == 5 and tb.encoder.frames_unsent == 0
    assert tb.decoder.counters()["decoded_frames"] == 69 and tb.modrec.frames() == 69


def test_decoder_counts_what_is_queued_at_stop(tiny_model_dir, rng):
    codec = hqarf.load_codec(tiny_model_dir)
    decoder = hqarf.decoder(model=tiny_model_dir)
    decoder._handle(as_pdu(codec.compress(random_frames(rng, 7), 4, sequence=0)))  # queued, never run
    decoder.to_basic_block()._post(PDUS, as_pdu(codec.compress(random_frames(rng, 3), 4, sequence=1)))  # not handled
    decoder.stop()
    c = decoder.counters()
    assert (c["lost_at_stop_frames"], c["lost_at_stop_messages"], c["queued"]) == (10, 2, 0)
    assert c["received_frames"] == 10 and decoder.to_basic_block().nmsgs(PDUS) == 0


class HeldSink(hqarf.modrec_sink):
    """A ModRec sink that reads at most 16 frames per call and, from its second call on, holds
    that call until `release` is set: a busy sink, reproducibly (what it reads it classifies)."""

    def __init__(self, model):
        hqarf.modrec_sink.__init__(self, model=model)
        self.release, self.calls = threading.Event(), 0

    def general_work(self, input_items, output_items):
        self.calls += 1
        if self.calls > 1:
            self.release.wait(600)
        samples = input_items[0][:16 * L]
        self._work(samples)
        self.consume(0, len(samples))
        return 0


def post_pdus(decoder, blobs):
    for blob in blobs:
        decoder.to_basic_block()._post(PDUS, as_pdu(blob))


def test_stop_counts_what_the_decoder_queued_and_the_sink_never_read(tiny_model_dir, rng):
    codec = hqarf.load_codec(tiny_model_dir)
    tb = gr.top_block()
    decoder = hqarf.decoder(model=tiny_model_dir)
    sink = HeldSink(tiny_model_dir)
    tb.connect(decoder, sink)
    post_pdus(decoder, [codec.compress(random_frames(rng, 16), 4, sequence=s) for s in range(20)])
    tb.start()
    try:  # wait until the decoder wrote beyond the 32 frames the sink read (the deadline: a hang guard)
        deadline = time.monotonic() + 600
        while not (sink.calls > 1 and decoder.counters()["decoded_frames"] > 32) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        tb.stop()
        sink.release.set()
        tb.wait()
    flowgraphs.account_stop(decoder, sink)
    c, m = decoder.counters(), sink.counters()
    assert m["frames"] == 32 and c["received_frames"] == 320
    assert c["lost_at_stop_frames"] > 0 and m["lost_at_stop_frames"] > 0
    assert m["frames"] + m["lost_at_stop_frames"] + c["lost_at_stop_frames"] == 320
    assert c["decoded_frames"] == m["frames"] + m["lost_at_stop_frames"]
    assert flowgraphs.account_stop(decoder, sink) == 0  # counted once


def test_cloud_drain_delivers_everything_queued(tiny_model_dir, rng):
    codec = hqarf.load_codec(tiny_model_dir)
    cloud = flowgraphs.cloud(tiny_model_dir, "tcp://127.0.0.1:1", max_queue=64)  # nobody publishes there
    post_pdus(cloud.decoder, [codec.compress(random_frames(rng, 16), 2, sequence=s) for s in range(20)])
    cloud.start()
    assert cloud.drain(timeout_s=600)
    assert cloud.modrec.frames() == 320 == cloud.decoder.counters()["decoded_frames"]
    assert cloud.lost() == {"decoder_queue_at_stop": 0, "decoder_failed": 0, "sink_unread_at_stop": 0}


def test_loopback_stopped_early_accounts_for_every_frame(tiny_model_dir, rng):
    """Loopback.wait() counts what the sink never read: classified + lost == encoded, whatever the
    moment of the stop."""
    tb = flowgraphs.loopback(tiny_model_dir, 1, random_frames(rng, 400), frames_per_pdu=16)
    tb.start()
    deadline = time.monotonic() + 600
    while tb.modrec.frames() == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    tb.stop()
    tb.wait()
    c, m, e = tb.decoder.counters(), tb.modrec.counters(), tb.encoder.counters()
    assert c["received_frames"] == e["frames_encoded"]  # PDUs not yet handled at stop are counted too
    assert m["frames"] + m["lost_at_stop_frames"] + c["lost_at_stop_frames"] + c["frames_dropped"] == c["received_frames"]


# -- 5: weights ------------------------------------------------------------------------------------
def test_weights_must_lie_beside_the_manifest(tmp_path):
    directory = make_codec(tmp_path / "m")
    manifest = json.loads((directory / "codec.json").read_text())
    for name in ("/etc/passwd", "../m/codec.safetensors", "sub/codec.safetensors"):
        (directory / "codec.json").write_text(json.dumps({**manifest, "weights": name}))
        with pytest.raises(hqarf.WeightsError, match="codec.json"):
            hqarf.load_codec(directory)


def test_an_edited_config_does_not_load(tmp_path):
    directory = make_codec(tmp_path / "m")
    manifest = json.loads((directory / "codec.json").read_text())
    manifest["config"]["frame_len"] = 2048
    (directory / "codec.json").write_text(json.dumps(manifest))
    with pytest.raises(hqarf.WeightsError, match="config"):
        hqarf.load_codec(directory)


# -- 8: overflow -------------------------------------------------------------------------------------
def test_huge_amplitudes_saturate_quietly_and_are_counted(tiny_model_dir):
    codec = hqarf.load_codec(tiny_model_dir)
    x = np.full((2, L), 3e38 + 3e38j, np.complex64)
    x[1] = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blob = codec.compress(x, 0)
    assert codec.saturated_frames == 1
    assert codec.parse(blob).scales[0] == np.float32(MAX_SCALE)
