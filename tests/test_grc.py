# SPDX-License-Identifier: GPL-3.0-or-later
"""GRC: the block YAML documents every parameter, every example compiles with grcc, and the
compiled examples run headless (the Qt ones offscreen) with a small model and a placeholder
recording."""
import importlib.util
import os
import py_compile
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, random_frames
from gnuradio.hqarf import sigmf

BLOCKS = ["hqarf_encoder", "hqarf_decoder", "hqarf_modrec_sink"]
EXAMPLES = ["file_loopback", "usrp_sensor", "remote_classifier", "file_sensor"]


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shim"), str(ROOT)]),
            "GRC_BLOCKS_PATH": str(ROOT / "grc"), "QT_QPA_PLATFORM": "offscreen"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """All examples compiled by grcc in one run (loading GRC's block library takes seconds)."""
    out = tmp_path_factory.mktemp("grcc")
    grcc = shutil.which("grcc")
    assert grcc, "grcc is part of GNU Radio 3.10 and must be on PATH"
    files = [str(ROOT / "examples" / f"{name}.grc") for name in EXAMPLES]
    result = subprocess.run([grcc, "-o", str(out), *files], env=env(), capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A placeholder SigMF recording: 12 random frames labelled per frame."""
    base = tmp_path_factory.mktemp("recording") / "placeholder"
    x = random_frames(np.random.default_rng(7), 12)
    sigmf.write_sigmf(base, x.reshape(-1), sample_rate=1e6,
                      annotations=sigmf.frame_annotations(["4ask", "2fsk"] * 6, 1024))
    return Path(f"{base}.sigmf-data")


@pytest.mark.parametrize("block", BLOCKS)
def test_block_yaml_documents_and_checks_its_parameters(block):
    spec = yaml.safe_load((ROOT / "grc" / f"{block}.block.yml").read_text())
    assert spec["id"] == block and spec["category"] == "[HQARF]" and spec["file_format"] == 1
    doc = spec["documentation"]
    for param in spec["parameters"]:
        assert param["label"] in doc, f"{block}: parameter {param['label']!r} is not documented"
    assert spec["asserts"]
    name = block.removeprefix("hqarf_")
    assert spec["templates"]["make"].startswith(f"hqarf.{name}(model=${{model}}")
    expert = {p["id"] for p in spec["parameters"] if p.get("hide") == "part"}
    assert "device" in expert
    if block == "hqarf_decoder":
        assert spec["templates"]["callbacks"] == ["set_exemplars(${exemplars})"]
        assert "exemplars=${exemplars}" in spec["templates"]["make"]
    if block == "hqarf_encoder":
        assert spec["templates"]["callbacks"] == ["set_level(${level})", "set_flush_after(${flush_after})"]
        for text in ("3072", "192 bits", "21.3x", "341.3x"):
            assert text in doc


def test_tree_lists_every_block():
    tree = yaml.safe_load((ROOT / "grc" / "hqarf.tree.yml").read_text())
    assert tree == {"[HQARF]": BLOCKS}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_compiles(compiled, name):
    script = compiled / f"{name}.py"
    assert script.exists()
    py_compile.compile(str(script), doraise=True)
    text = script.read_text()
    assert "hqarf.encoder(" in text or "hqarf.decoder(" in text
    if name == "file_loopback":
        assert "self.hqarf_encoder_0.set_level(self.level)" in text  # the range widget's callback


def test_file_sensor_example_runs_headless(compiled, recording, tiny_model_dir):
    spec = importlib.util.spec_from_file_location("file_sensor", compiled / "file_sensor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tb = module.file_sensor(address="tcp://127.0.0.1:*", data_file=str(recording), frames_per_pdu=4,
                            level=3, model=str(tiny_model_dir), samp_rate=10e6)
    encoder = tb.hqarf_encoder_0
    tb.start()  # the recording loops until stopped
    try:
        deadline = time.monotonic() + 600  # a hang guard, not a speed test
        while encoder.pdus_sent < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        tb.stop()
        tb.wait()
    assert encoder.pdus_sent >= 3 and encoder.level() == 3


def test_qt_examples_run_offscreen(compiled, recording, tiny_model_dir):
    """file_loopback with its level slider, and remote_classifier, in a subprocess (Qt offscreen)."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(compiled)!r})
        from PyQt5 import Qt
        app = Qt.QApplication(sys.argv)
        from file_loopback import file_loopback
        from remote_classifier import remote_classifier
        tb = file_loopback(data_file={str(recording)!r}, model={str(tiny_model_dir)!r}, frames_per_pdu=2)
        tb.start()
        deadline = time.monotonic() + 600  # a hang guard, not a speed test
        while tb.hqarf_modrec_sink_0.frames() < 4 and time.monotonic() < deadline:
            app.processEvents(); time.sleep(0.01)
        tb.set_level(3)
        assert tb.hqarf_encoder_0.level() == 3
        tb.stop(); tb.wait()
        assert tb.hqarf_modrec_sink_0.frames() >= 4, tb.hqarf_decoder_0.counters()
        rc = remote_classifier(address="tcp://127.0.0.1:1", model={str(tiny_model_dir)!r})
        rc.start(); time.sleep(0.2); rc.stop(); rc.wait()
        print("OK", tb.hqarf_modrec_sink_0.frames())
    """)
    result = subprocess.run([sys.executable, "-c", script], env=env(), capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
