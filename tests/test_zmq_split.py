# SPDX-License-Identifier: GPL-3.0-or-later
"""Sensor and cloud flowgraphs over ZMQ PUB/SUB on 127.0.0.1: every frame arrives in order, the
reconstruction is Codec.decompress of the bytes sent, and the remote ModRec agrees frame by frame
with the classifier run offline on the same bytes. Also the demo, end to end."""
import io
import time

import numpy as np
import pytest

from conftest import CLASSES, random_frames
from gnuradio import hqarf
from gnuradio.hqarf import flowgraphs, sigmf

L = 1024


def offline_predictions(classifier, frames, online):
    """Offline argmax, where online and offline may differ only on a near tie (batching moves
    float results by ~1e-7): returns (offline predictions, indices of disagreeing clear cases)."""
    logits = classifier.logits(frames)
    top2 = np.sort(logits, 1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4
    offline = logits.argmax(1)
    return offline, np.flatnonzero((offline != np.asarray(online)) & clear)


@pytest.mark.parametrize("level, frames_per_pdu", [(2, 16), (4, 1)])
def test_sensor_to_cloud_over_zmq(tiny_model_dir, rng, level, frames_per_pdu):
    codec, classifier = hqarf.load_codec(tiny_model_dir), hqarf.load_classifier(tiny_model_dir)
    count = 50
    x = random_frames(rng, count)
    labels = rng.integers(0, len(CLASSES), count)
    sensor = flowgraphs.sensor(tiny_model_dir, level, x, labels=labels, frames_per_pdu=frames_per_pdu,
                               collect=True)
    assert sensor.address.startswith("tcp://127.0.0.1:")
    cloud = flowgraphs.cloud(tiny_model_dir, sensor.address, max_queue=count + 1, collect=True,
                             keep_samples=True)
    flowgraphs.run_split(sensor, cloud, count)

    blobs = flowgraphs.pdus_from(sensor.pdus)
    assert len(blobs) == -(-count // frames_per_pdu)
    counters = cloud.decoder.counters()
    assert counters["decoded_frames"] == count and counters["sequence_gaps"] == 0
    assert counters["received"] == len(blobs) == counters["accepted"]
    sent = np.concatenate([codec.decompress(b) for b in blobs])
    np.testing.assert_allclose(np.array(cloud.samples.data()).reshape(-1, L), sent, rtol=1e-5, atol=1e-6)

    messages = flowgraphs.classifications_from(cloud.classified)
    assert [m["offset"] for m in messages] == [i * L for i in range(count)]
    assert [m["hqarf_sequence"] for m in messages] == [i // frames_per_pdu for i in range(count)]
    assert [m["hqarf_level"] for m in messages] == [level] * count
    assert [m["true_label"] for m in messages] == labels.tolist()  # carried in the PDU metadata
    online = [m["class_index"] for m in messages]
    offline, disagree = offline_predictions(classifier, sent, online)
    assert disagree.size == 0
    assert cloud.modrec.accuracy() == pytest.approx(float(np.mean(offline == labels)))
    # What crossed the socket: the wire bytes plus the PMT metadata, far less than raw IQ.
    assert sensor.counter.payload_bytes == sum(len(b) for b in blobs)
    assert sensor.counter.payload_bytes < sensor.counter.serialized_bytes < x.nbytes / 10


def test_cloud_with_another_model_drops_everything_and_keeps_running(tiny_model_dir, other_model_dir, rng):
    sensor = flowgraphs.sensor(tiny_model_dir, 0, random_frames(rng, 8), frames_per_pdu=4)
    cloud = flowgraphs.cloud(other_model_dir, sensor.address, classifier_model=tiny_model_dir)
    cloud.start()
    try:
        sensor.start()
        flowgraphs.connect(sensor, cloud.handshake)  # no PDU leaves before the subscription is there
        sensor.wait()
        deadline = time.monotonic() + 300  # a hang guard: the two PDUs are on their way
        while cloud.decoder.counters()["received"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        cloud.stop()
        cloud.wait()
    counters = cloud.decoder.counters()
    assert counters["dropped_fingerprint"] == 2 and counters["decoded_frames"] == 0


def test_run_demo_prints_the_table_and_the_split(tiny_model_dir, rng, tmp_path):
    """A placeholder recording (random frames labelled per frame) through run_demo."""
    frames_per_class = 5
    names = [name for name in CLASSES for _ in range(frames_per_class)]
    x = random_frames(rng, len(names))
    base = tmp_path / "placeholder"
    sigmf.write_sigmf(base, x.reshape(-1), sample_rate=1e6,
                      annotations=sigmf.frame_annotations(names, L))
    out = io.StringIO()
    result = flowgraphs.run_demo(model=tiny_model_dir, recording=f"{base}.sigmf-data",
                                 frames_per_class=4, levels=[0, 4], out=out)
    text = out.getvalue()
    assert "level" in text and "341.3x" in text and "21.3x" in text and "bytes over the socket" in text
    assert [row["level"] for row in result["levels"]] == [0, 4]
    assert all(row["frames"] == 24 for row in result["levels"])
    classifier = hqarf.load_classifier(tiny_model_dir)
    labels = np.repeat(np.arange(len(CLASSES)), frames_per_class)
    keep = np.concatenate([np.arange(i * 5, i * 5 + 4) for i in range(len(CLASSES))])
    assert result["raw_accuracy"] == pytest.approx(float(np.mean(classifier.predict(x[keep]) == labels[keep])))
    split = result["split"]
    assert split["frames"] == 24 and split["sequence_gaps"] == 0 and split["level"] == 4
    assert split["raw_bytes"] == 24 * L * 8 and split["payload_bytes"] < split["socket_bytes"] < split["raw_bytes"]
