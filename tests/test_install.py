# SPDX-License-Identifier: GPL-3.0-or-later
"""CMake installs the module into a prefix, and `from gnuradio import hqarf` works from there."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is installed by scripts/setup.sh")
def test_cmake_install_into_prefix(tmp_path, tiny_model_dir):
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, text=True)  # noqa: E731
    run("cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
        f"-DHQARF_PYTHON={sys.executable}")
    run("cmake", "--build", str(build))
    run("cmake", "--install", str(build))

    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "gnuradio" / "hqarf" / "codec.py").is_file()
    assert (site / "gnuradio" / "hqarf" / "data" / "6mod_sample.sigmf-data").is_file()
    assert sorted(p.name for p in (prefix / "share/gnuradio/grc/blocks").glob("*.yml")) == \
        sorted(p.name for p in (ROOT / "grc").glob("*.yml"))
    app = prefix / "bin" / "gr-hqarf"
    assert app.read_text().splitlines()[0] == f"#!{sys.executable}"

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    code = ("import gnuradio.hqarf as h, sys; print(h.__file__); "
            f"c = h.load_codec({str(tiny_model_dir)!r}); print(c.levels, c.bits_per_index); "
            "from gnuradio.hqarf import flowgraphs; print(flowgraphs.DEFAULT_RECORDING.is_file(), h.encoder.__name__)")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0].startswith(str(site)), out
    assert out[1:] == ["5", "6", "True", "encoder"]
