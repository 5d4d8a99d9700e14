# SPDX-License-Identifier: GPL-3.0-or-later
"""gr-hqarf's SigMF files against the official `sigmf` package: its validator accepts every file the
project writes, and the project reads what the package writes (SigMF pairs and archives)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import sigmf
from sigmf.sigmffile import SigMFFile, fromfile
from sigmf.validate import validate

from gnuradio.hqarf import cli
from gnuradio.hqarf import sigmf as hq_sigmf

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "6mod_sample.sigmf-meta"


def package_accepts(meta_path: Path) -> dict:
    """The package's schema validation, its namespace check (as an error) and its checksum check."""
    meta = json.loads(Path(meta_path).read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # undeclared extensions
        validate(meta)
    fromfile(str(meta_path))  # validates again and verifies core:sha512 against the data file
    return meta


def test_written_recording_with_labels_and_extension_is_valid_sigmf(tmp_path, rng):
    x = (rng.standard_normal(4096) + 1j * rng.standard_normal(4096)).astype(np.complex64)
    notes = hq_sigmf.frame_annotations(["4ask", "2fsk", "4ask", "ofdm-256"], 1024, **{"hqarf:class_index": [0, 4, 0, 5]})
    meta_path, _ = hq_sigmf.write_sigmf(tmp_path / "rec", x, sample_rate=1e6,
                                        global_fields={"hqarf:level": 2, "core:author": "test"}, annotations=notes)
    meta = package_accepts(meta_path)
    assert meta["global"]["core:version"] == sigmf.__specification__
    assert {"name": "hqarf", "version": "0.1.0", "optional": True} in meta["global"]["core:extensions"]


def test_shipped_sample_recording_is_valid_sigmf():
    meta = package_accepts(SAMPLE)
    assert meta["global"]["core:sample_rate"] > 0 and len(meta["annotations"]) > 0


def test_decompressed_recording_is_valid_sigmf_and_keeps_the_inputs_version_and_fields(tmp_path, tiny_model_dir,
                                                                                       rng, capsys):
    x = (0.5 * rng.standard_normal(3000) + 0.5j * rng.standard_normal(3000)).astype(np.complex64)
    hq_sigmf.write_sigmf(tmp_path / "in", x, sample_rate=2e6,
                         global_fields={"core:num_channels": 1, "core:description": "a test"})
    meta_in = json.loads((tmp_path / "in.sigmf-meta").read_text())
    meta_in["global"]["core:version"] = "1.0.0"  # an older file: its version is kept, not replaced
    (tmp_path / "in.sigmf-meta").write_text(json.dumps(meta_in))
    assert cli.main(["compress", str(tmp_path / "in.sigmf-meta"), "-o", str(tmp_path / "c.hqarf"), "-l", "1",
                     "--model", str(tiny_model_dir), "-q"]) == 0
    assert cli.main(["decompress", str(tmp_path / "c.hqarf"), "-o", str(tmp_path / "out"), "--model",
                     str(tiny_model_dir), "-q"]) == 0
    g = package_accepts(tmp_path / "out.sigmf-meta")["global"]
    assert g["core:version"] == "1.0.0" and g["core:num_channels"] == 1 and g["core:description"] == "a test"
    assert g["core:sample_rate"] == 2e6 and g["hqarf:level"] == 1 and g["core:datatype"] == "cf32_le"
    assert "warning" not in capsys.readouterr().err


def test_missing_sample_rate_is_warned_about_once_per_step(tmp_path, tiny_model_dir, rng, capsys):
    x = (0.5 * rng.standard_normal(2048) + 0.5j * rng.standard_normal(2048)).astype(np.complex64)
    x.tofile(tmp_path / "in.cf32")
    assert cli.main(["compress", str(tmp_path / "in.cf32"), "-o", str(tmp_path / "c.hqarf"), "-l", "0",
                     "--model", str(tiny_model_dir), "-q"]) == 0
    assert cli.main(["decompress", str(tmp_path / "c.hqarf"), "-o", str(tmp_path / "out"), "--model",
                     str(tiny_model_dir), "-q"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 2 and all("sample rate" in line and line.startswith("gr-hqarf: warning:") for line in warned)
    assert "core:sample_rate" not in package_accepts(tmp_path / "out.sigmf-meta")["global"]
    with pytest.warns(hq_sigmf.RecordingWarning, match="no sample rate"):
        hq_sigmf.write_sigmf(tmp_path / "again", x)


@pytest.mark.parametrize("datatype,scale", [("cf32_le", 1.0), ("ci16_le", 2 ** 15), ("cu8", 2 ** 7)])
def test_project_reads_what_the_package_writes(tmp_path, rng, datatype, scale):
    x = (0.5 * rng.standard_normal(1500) + 0.5j * rng.standard_normal(1500)).astype(np.complex64)
    if datatype == "cf32_le":
        raw = x
    else:
        kind = np.int16 if datatype == "ci16_le" else np.uint8
        offset = 2 ** 7 if datatype == "cu8" else 0
        parts = np.stack([x.real, x.imag], -1) * (scale - 1) + offset
        raw = np.clip(np.rint(parts), np.iinfo(kind).min, np.iinfo(kind).max).astype(kind)
    raw.tofile(tmp_path / "pkg.sigmf-data")
    meta = SigMFFile(data_file=str(tmp_path / "pkg.sigmf-data"),
                     global_info={sigmf.DATATYPE_KEY: datatype, sigmf.SAMPLE_RATE_KEY: 48000.0})
    meta.add_capture(0, metadata={sigmf.FREQUENCY_KEY: 915e6})
    meta.add_annotation(0, 1024, metadata={sigmf.LABEL_KEY: "16psk"})
    meta.tofile(str(tmp_path / "pkg.sigmf-meta"))
    expected = fromfile(str(tmp_path / "pkg.sigmf-meta")).read_samples()  # the package's own scaling
    rec = hq_sigmf.open_recording(tmp_path / "pkg.sigmf-meta")
    assert rec.sample_rate == 48000.0 and rec.datatype == datatype and len(rec) == 1500
    np.testing.assert_allclose(rec.read(), expected, rtol=0, atol=1e-6)
    assert hq_sigmf.frame_labels(rec.metadata, 1, 1024) == ["16psk"]
    # the same recording as a .sigmf archive (one tar, read in place)
    meta.tofile(str(tmp_path / "pkg.sigmf"), toarchive=True)
    archived = hq_sigmf.open_recording(tmp_path / "pkg.sigmf")
    np.testing.assert_array_equal(archived.read(), rec.read())
