# SPDX-License-Identifier: GPL-3.0-or-later
"""The gr-hqarf command, in process (cli.main) on a tiny random model: recordings in, compressed
files out and back, classification, model info, and one-line errors for bad input."""
import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASSES, random_frames
from gnuradio import hqarf
from gnuradio.hqarf import cli, container, load_codec, sigmf

ROOT = Path(__file__).resolve().parents[1]
FRAME = 1024


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(result, *fragments, rc=1):
    code, out, err = result
    assert code == rc, (code, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gr-hqarf: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def reference(codec, x, level):
    """What the codec itself makes of x at a level: zero-pad to whole frames, compress, decompress, cut."""
    n = -(-len(x) // codec.frame_len) * codec.frame_len
    frames = np.concatenate([x, np.zeros(n - len(x), np.complex64)]).reshape(-1, codec.frame_len)
    return codec.decompress(codec.compress(frames, level)).reshape(-1)[: len(x)]


@pytest.fixture
def labelled_recording(tmp_path, rng):
    """A SigMF recording of 6 frames, one core:label annotation per frame, plus a 100-sample tail."""
    x = random_frames(rng, 7, scale=0.5).reshape(-1)[: 6 * FRAME + 100]
    annotations = sigmf.frame_annotations(CLASSES, FRAME, **{"hqarf:class_index": list(range(6))})
    sigmf.write_sigmf(tmp_path / "rec", x, sample_rate=2.5e6, annotations=annotations,
                      global_fields={"core:description": "six labelled frames", "core:author": "tests"})
    return tmp_path / "rec", x


# -- round trips -------------------------------------------------------------------------------
def test_sigmf_round_trip_keeps_length_rate_metadata_and_matches_the_codec(
        tmp_path, tiny_model_dir, labelled_recording, capsys):
    base, x = labelled_recording
    compressed = tmp_path / "rec.hqarf"
    code, out, _ = run(capsys, "compress", f"{base}.sigmf-meta", "-o", compressed, "--level", 2,
                       "--model", tiny_model_dir)
    assert code == 0
    assert "level 2" in out and "7 frames" in out and "compression ratio" in out and "vs cf32" in out

    code, out, _ = run(capsys, "decompress", compressed, "-o", tmp_path / "out", "--model", tiny_model_dir)
    assert code == 0
    samples, meta = sigmf.read_recording(tmp_path / "out.sigmf-meta")
    codec = load_codec(tiny_model_dir)
    assert len(samples) == len(x) == 6 * FRAME + 100
    np.testing.assert_allclose(samples, reference(codec, x, 2), rtol=0, atol=1e-6)

    g = meta["global"]
    assert g["core:datatype"] == "cf32_le" and g["core:sample_rate"] == 2.5e6
    assert g["core:description"] == "six labelled frames" and g["core:author"] == "tests"
    assert g["hqarf:level"] == 2 and g["hqarf:fingerprint"] == codec.fingerprint_hex
    assert g["hqarf:original_datatype"] == "cf32_le"
    assert {"name": "hqarf", "version": "0.1.0", "optional": True} in g["core:extensions"]
    assert [a["core:label"] for a in meta["annotations"]] == CLASSES
    assert g["core:sha512"] == hashlib.sha512((tmp_path / "out.sigmf-data").read_bytes()).hexdigest()


def test_compressed_file_is_header_then_codec_compress_messages(tmp_path, tiny_model_dir, rng, capsys):
    """The documented layout: header, then length-prefixed codec.compress bytes of 16 frames each."""
    codec = load_codec(tiny_model_dir)
    x = random_frames(rng, 41).reshape(-1)[: 40 * FRAME + 10]
    x.tofile(tmp_path / "in.cf32")
    assert run(capsys, "compress", tmp_path / "in.cf32", "-o", tmp_path / "c.hqarf", "-l", 3,
               "--model", tiny_model_dir, "--sample-rate", 1e6)[0] == 0

    frames = np.concatenate([x, np.zeros(41 * FRAME - len(x), np.complex64)]).reshape(41, FRAME)
    with open(tmp_path / "c.hqarf", "rb") as f:
        assert f.read(8) == container.MAGIC
        f.seek(0)
        header = container.read_header(f, "c.hqarf")
        assert (header.level, header.sample_count, header.frame_count, header.message_count) == (3, len(x), 41, 3)
        assert (header.sample_rate, header.datatype, header.fingerprint) == (1e6, "cf32_le", codec.fingerprint_hex)
        for i in range(3):
            (length,) = np.frombuffer(f.read(4), "<u4")
            assert f.read(length) == codec.compress(frames[16 * i:16 * (i + 1)], 3, sequence=i)
        assert f.read() == b""


@pytest.mark.parametrize("fmt", ["cf32", "ci16"])
def test_raw_inputs_round_trip(tmp_path, tiny_model_dir, rng, capsys, fmt):
    codec = load_codec(tiny_model_dir)
    x = random_frames(rng, 3, scale=0.4).reshape(-1)[:2500]
    if fmt == "cf32":
        x.tofile(tmp_path / "in.cf32")
        expected_in = x
    else:  # interleaved int16 reads as full scale [-1, 1)
        ints = np.round(np.stack([x.real, x.imag], 1) * 8000).astype("<i2")
        ints.tofile(tmp_path / "in.ci16")
        expected_in = ((ints[:, 0] + 1j * ints[:, 1]) / 32768).astype(np.complex64)
    code, out, _ = run(capsys, "compress", tmp_path / f"in.{fmt}", "-o", tmp_path / "c.hqarf", "-l", 1,
                       "--model", tiny_model_dir)
    assert code == 0 and f"({fmt}_le)" in out
    assert run(capsys, "decompress", tmp_path / "c.hqarf", "-o", tmp_path / "out.sigmf-data",
               "--model", tiny_model_dir)[0] == 0
    samples, meta = sigmf.read_recording(tmp_path / "out")
    assert len(samples) == 2500 and meta["global"]["hqarf:original_datatype"] == f"{fmt}_le"
    assert "core:sample_rate" not in meta["global"]  # a raw file did not say
    np.testing.assert_allclose(samples, reference(codec, expected_in, 1), rtol=0, atol=1e-6)


def test_an_empty_recording_is_refused_with_one_line(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "in.fc32").write_bytes(b"")
    code, _, err = run(capsys, "compress", tmp_path / "in.fc32", "-o", tmp_path / "c.hqarf", "--model", tiny_model_dir)
    assert code != 0 and "Traceback" not in err and not (tmp_path / "c.hqarf").exists()


@pytest.mark.parametrize("length", [1, FRAME - 1, FRAME, FRAME + 1, 17 * FRAME + 3])
def test_original_length_is_restored_exactly(tmp_path, tiny_model_dir, rng, capsys, length):
    x = random_frames(rng, 18).reshape(-1)[:length]
    x.tofile(tmp_path / "in.fc32")
    assert run(capsys, "compress", tmp_path / "in.fc32", "-o", tmp_path / "c.hqarf", "-l", 4,
               "--model", tiny_model_dir)[0] == 0
    assert run(capsys, "decompress", tmp_path / "c.hqarf", "-o", tmp_path / "out", "--model", tiny_model_dir)[0] == 0
    assert (tmp_path / "out.sigmf-data").stat().st_size == 8 * length


# -- classify ----------------------------------------------------------------------------------
def test_classify_prints_each_frame_a_histogram_and_the_accuracy(tiny_model_dir, labelled_recording, capsys):
    base, _ = labelled_recording
    code, out, _ = run(capsys, "classify", f"{base}.sigmf-data", "--model", tiny_model_dir)
    assert code == 0
    frame_lines = [line for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(frame_lines) == 7
    assert "partial: 100 samples" in frame_lines[-1]
    assert "summary: 7 frames, original samples" in out
    assert all(name in out for name in CLASSES)
    assert "accuracy" in out and "of 6 labelled frames" in out

    code, out, _ = run(capsys, "classify", base, "--model", tiny_model_dir, "--level", 3, "--summary-only")
    assert code == 0 and "level 3 reconstruction" in out and "of 6 labelled frames" in out
    assert not any(line.split()[0].isdigit() for line in out.splitlines() if line.split())

    # the shipped model has an unknown detector: classes from it, one network per frame
    code, out, _ = run(capsys, "classify", base, "--classes-from", "detector", "--summary-only")
    assert code == 0 and "of 6 labelled frames" in out


def test_classify_a_compressed_file_keeps_the_labels(tmp_path, tiny_model_dir, labelled_recording, capsys):
    base, _ = labelled_recording
    assert run(capsys, "compress", base, "-o", tmp_path / "c.hqarf", "-l", 0, "--model", tiny_model_dir)[0] == 0
    code, out, _ = run(capsys, "classify", tmp_path / "c.hqarf", "--model", tiny_model_dir, "-s")
    assert code == 0 and "decompressed from c.hqarf" in out and "of 6 labelled frames" in out


def test_frame_labels_follow_annotations_covering_most_of_a_frame():
    meta = {"annotations": [{"core:sample_start": 0, "core:sample_count": 2 * FRAME, "core:label": "a"},
                            {"core:sample_start": 2 * FRAME + 100, "core:sample_count": 900, "core:label": "b"},
                            {"core:sample_start": 3 * FRAME, "core:sample_count": 10, "core:label": "c"}]}
    assert sigmf.frame_labels(meta, 5, FRAME) == ["a", "a", "b", None, None]


# -- info --------------------------------------------------------------------------------------
def test_info_prints_every_level(tiny_model_dir, capsys):
    code, out, _ = run(capsys, "info", tiny_model_dir)
    codec = load_codec(tiny_model_dir)
    assert code == 0 and codec.fingerprint_hex in out
    rows = {int(line.split()[0]): line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()}
    assert sorted(rows) == list(range(codec.levels))
    for level, row in rows.items():
        assert int(row[1]) == codec.tokens(level) and int(row[2]) == codec.bits_per_frame(level)
        assert row[3] == f"{codec.compression_ratio(level, 64):.1f}" and row[4] == f"{codec.compression_ratio(level, 32):.1f}"
        assert int(row[5]) == codec.message_size(level, 1) and int(row[6]) == codec.message_size(level, 16)
    assert "provenance" in out and "made_by: tests/conftest.py" in out
    assert "classifier   6 classes: " + ", ".join(CLASSES) in out


def test_info_on_a_compressed_file_prints_its_header(tmp_path, tiny_model_dir, labelled_recording, capsys):
    base, _ = labelled_recording
    run(capsys, "compress", base, "-o", tmp_path / "c.hqarf", "-l", 2, "--model", tiny_model_dir)
    code, out, _ = run(capsys, "info", tmp_path / "c.hqarf")
    assert code == 0 and "level             2" in out and "6244 samples" in out and "six labelled frames" in out


def test_app_runs_from_the_checkout(tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(ROOT / "apps" / "gr-hqarf"), "info", "--model", str(tiny_model_dir)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "fingerprint" in proc.stdout and "CR vs ci16" in proc.stdout


# -- demo --------------------------------------------------------------------------------------
def test_demo_passes_its_options_to_run_demo(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("gnuradio.hqarf.flowgraphs")
    fake.run_demo = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "gnuradio.hqarf.flowgraphs", fake)
    monkeypatch.setattr(hqarf, "flowgraphs", fake, raising=False)
    assert run(capsys, "demo", "--model", "m", "--levels", "0,2,4", "--frames-per-class", 3)[0] == 0
    assert calls == [{"model": "m", "levels": [0, 2, 4], "frames_per_class": 3}]


# -- errors ------------------------------------------------------------------------------------
def test_missing_input_is_a_one_line_error(tmp_path, tiny_model_dir, capsys):
    result = run(capsys, "compress", tmp_path / "nothere.cf32", "-o", tmp_path / "c", "-l", 0, "--model", tiny_model_dir)
    assert_one_line_error(result, "nothere.cf32", "no such file")
    result = run(capsys, "classify", tmp_path / "nothere.sigmf-meta", "--model", tiny_model_dir)
    assert_one_line_error(result, "nothere.sigmf-meta")


def test_garbage_given_to_decompress_is_refused(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "junk.hqarf").write_bytes(os.urandom(500))
    result = run(capsys, "decompress", tmp_path / "junk.hqarf", "-o", tmp_path / "out", "--model", tiny_model_dir)
    assert_one_line_error(result, "junk.hqarf", "not a gr-hqarf compressed file")
    assert not (tmp_path / "out.sigmf-meta").exists()


def test_a_file_from_another_model_names_both_fingerprints(tmp_path, tiny_model_dir, other_model_dir,
                                                           labelled_recording, capsys):
    base, _ = labelled_recording
    run(capsys, "compress", base, "-o", tmp_path / "c.hqarf", "-l", 1, "--model", tiny_model_dir)
    result = run(capsys, "decompress", tmp_path / "c.hqarf", "-o", tmp_path / "out", "--model", other_model_dir)
    assert_one_line_error(result, load_codec(tiny_model_dir).fingerprint_hex, load_codec(other_model_dir).fingerprint_hex)
    assert not (tmp_path / "out.sigmf-meta").exists() and not (tmp_path / "out.sigmf-data").exists()


def test_truncated_and_extended_files_are_refused(tmp_path, tiny_model_dir, labelled_recording, capsys):
    base, _ = labelled_recording
    run(capsys, "compress", base, "-o", tmp_path / "c.hqarf", "-l", 1, "--model", tiny_model_dir)
    blob = (tmp_path / "c.hqarf").read_bytes()
    for name, data, fragment in [("short.hqarf", blob[:-7], "truncated"), ("header.hqarf", blob[:40], "truncated"),
                                 ("long.hqarf", blob + b"\0", "trailing data"),
                                 ("flipped.hqarf", blob[:-3] + bytes([blob[-3] ^ 1]) + blob[-2:], "checksum")]:
        (tmp_path / name).write_bytes(data)
        result = run(capsys, "decompress", tmp_path / name, "-o", tmp_path / "out", "--model", tiny_model_dir)
        assert_one_line_error(result, name, fragment)


def test_bad_recordings_are_one_line_errors(tmp_path, tiny_model_dir, rng, capsys):
    x = random_frames(rng, 1)
    sigmf.write_sigmf(tmp_path / "good", x)
    meta = json.loads((tmp_path / "good.sigmf-meta").read_text())
    cases = {"bad_json": ("{not json", "not valid JSON"),
             "bad_type": (json.dumps({**meta, "global": {**meta["global"], "core:datatype": "cf17_le"}}),
                          "unknown SigMF datatype 'cf17_le'"),
             "real_type": (json.dumps({**meta, "global": {**meta["global"], "core:datatype": "rf32_le"}}),
                           "needs complex IQ")}
    for name, (text, fragment) in cases.items():
        (tmp_path / f"{name}.sigmf-meta").write_text(text)
        (tmp_path / f"{name}.sigmf-data").write_bytes((tmp_path / "good.sigmf-data").read_bytes())
        result = run(capsys, "compress", tmp_path / f"{name}.sigmf-meta", "-o", tmp_path / "c", "-l", 0,
                     "--model", tiny_model_dir)
        assert_one_line_error(result, f"{name}.sigmf-meta", fragment)

    (tmp_path / "odd.cf32").write_bytes(b"\0" * 1001)
    result = run(capsys, "compress", tmp_path / "odd.cf32", "-o", tmp_path / "c", "-l", 0, "--model", tiny_model_dir)
    assert_one_line_error(result, "odd.cf32", "not a whole number of cf32_le samples")
    (tmp_path / "what.xyz").write_bytes(b"\0" * 8)
    result = run(capsys, "compress", tmp_path / "what.xyz", "-o", tmp_path / "c", "-l", 0, "--model", tiny_model_dir)
    assert_one_line_error(result, "what.xyz", "give it explicitly")
    assert run(capsys, "compress", tmp_path / "what.xyz", "--format", "cf32", "-o", tmp_path / "c", "-l", 0,
               "--model", tiny_model_dir)[0] == 0


def test_usage_errors_exit_2(tmp_path, tiny_model_dir, labelled_recording, capsys):
    base, _ = labelled_recording
    result = run(capsys, "compress", base, "-o", tmp_path / "c", "-l", 7, "--model", tiny_model_dir)
    assert_one_line_error(result, "--level 7", "0..4", rc=2)
    code, _, err = run(capsys, "compress", base, "-o", tmp_path / "c")  # no --level: argparse says so
    assert code == 2 and "--level" in err and "Traceback" not in err
    assert run(capsys)[0] == 2
    result = run(capsys, "classify", base, "--model", tiny_model_dir, "--classes-from", "detector")
    assert_one_line_error(result, "--classes-from detector", "no unknown detector", rc=2)


def test_sigmf_archive_and_integer_datatypes_read_as_complex64(tmp_path, rng):
    import tarfile
    ints = rng.integers(-2000, 2000, size=(3000, 2)).astype("<i2")
    sigmf.write_sigmf(tmp_path / "rec", np.zeros(1, np.complex64))  # a valid meta to edit
    meta = json.loads((tmp_path / "rec.sigmf-meta").read_text())
    meta["global"].update({"core:datatype": "ci16_le", "core:sample_rate": 48000})
    del meta["global"]["core:sha512"]
    (tmp_path / "rec.sigmf-meta").write_text(json.dumps(meta))
    ints.tofile(tmp_path / "rec.sigmf-data")
    with tarfile.open(tmp_path / "rec.sigmf", "w") as tar:
        for ext in ("sigmf-meta", "sigmf-data"):
            tar.add(tmp_path / f"rec.{ext}", arcname=f"rec/rec.{ext}")
    expected = (ints[:, 0] + 1j * ints[:, 1]) / 32768
    for path in ("rec", "rec.sigmf-meta", "rec.sigmf-data", "rec.sigmf"):
        rec = sigmf.open_recording(tmp_path / path)
        assert rec.num_samples == 3000 and rec.sample_rate == 48000 and rec.datatype == "ci16_le"
        got = rec.read(1000, 500)
        assert got.dtype == np.complex64
        np.testing.assert_allclose(got, expected[1000:1500], rtol=0, atol=1e-7)
