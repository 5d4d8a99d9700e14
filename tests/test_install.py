# SPDX-License-Identifier: GPL-3.0-or-later
"""CMake as a GNU Radio user expects it: install into a prefix (custom or the default /usr/local,
staged with DESTDIR), launchers that run on the interpreter with torch and say what is missing when
it is gone, `ctest` listing the suite, and `uninstall` removing what was installed."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "helpers" / "grc_probe.py"
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is installed by scripts/setup.sh")


def run(*cmd, **kwargs):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GRC_BLOCKS_PATH", "HQARF_GRC")}
    return {**env, **extra}


def configure(build, *options):
    run("cmake", "-S", str(ROOT), "-B", str(build), *options)
    run("cmake", "--build", str(build))


def test_cmake_install_into_prefix_then_uninstall(tmp_path, tiny_model_dir):
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    configure(build, f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DHQARF_PYTHON={sys.executable}")
    assert "qa_hqarf" in run("ctest", "-N", cwd=build).stdout  # `ctest` runs ./dev.sh test
    run("cmake", "--install", str(build))

    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "gnuradio" / "hqarf" / "codec.py").is_file()
    assert (site / "gnuradio" / "hqarf" / "data" / "6mod_sample.sigmf-data").is_file()
    blocks = prefix / "share/gnuradio/grc/blocks"
    assert sorted(p.name for p in blocks.glob("*.yml")) == sorted(p.name for p in (ROOT / "grc").glob("*.yml"))

    env = clean_env()
    code = ("import gnuradio.hqarf as h, sys; print(h.__file__); "
            f"c = h.load_codec({str(tiny_model_dir)!r}); print(c.levels, c.bits_per_index); "
            "from gnuradio.hqarf import flowgraphs; print(flowgraphs.DEFAULT_RECORDING.is_file(), h.encoder.__name__)")
    out = run(sys.executable, "-c", code, env={**env, "PYTHONPATH": str(site)}, cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(site)), out
    assert out[1:] == ["5", "6", "True", "encoder"]

    # The installed command works from anywhere, without PYTHONPATH and without this checkout's shim.
    info = run(str(prefix / "bin" / "gr-hqarf"), "info", str(tiny_model_dir), env=env, cwd=tmp_path).stdout
    assert "fingerprint" in info.lower()

    # The installed GRC launcher starts GRC (here the stand-in that prints what F6 would run) on
    # HQARF_PYTHON, with the installed module and blocks: the example validates against them.
    grc = shutil.copy(ROOT / "examples" / "file_loopback.grc", tmp_path / "file_loopback.grc")
    probe = json.loads(run(str(prefix / "bin" / "gnuradio-companion-hqarf"), str(grc), cwd=tmp_path,
                           env={**env, "HQARF_GRC": str(PROBE)}).stdout.strip().splitlines()[-1])
    assert probe["executable"] == sys.executable
    assert probe["env"]["GRC_BLOCKS_PATH"].split(os.pathsep)[0] == str(blocks)
    assert probe["runs"][0]["errors"] == []
    assert probe["runs"][0]["args"][:2] == [sys.executable, "-u"]

    run("cmake", "--build", str(build), "--target", "uninstall")
    assert not (prefix / "bin" / "gr-hqarf").exists()
    assert not (site / "gnuradio" / "hqarf" / "codec.py").exists()
    assert not list(blocks.glob("hqarf*.yml"))


def test_installed_command_says_when_its_python_is_gone(tmp_path):
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    gone = tmp_path / "deleted-clone" / ".venv" / "bin" / "python"
    configure(build, f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DHQARF_PYTHON={gone}")
    run("cmake", "--install", str(build))
    for command in ("gr-hqarf", "gnuradio-companion-hqarf"):
        result = subprocess.run([str(prefix / "bin" / command), "info"], capture_output=True, text=True,
                                env=clean_env())
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(gone) in lines[0] and "does not exist any more" in lines[0], result.stderr


def test_installed_command_says_when_its_python_lacks_torch(tmp_path):
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    configure(build, f"-DCMAKE_INSTALL_PREFIX={prefix}", "-DHQARF_PYTHON=/usr/bin/python3")
    run("cmake", "--install", str(build))
    result = subprocess.run([str(prefix / "bin" / "gr-hqarf"), "info"], capture_output=True, text=True,
                            env=clean_env())
    assert result.returncode == 1 and "cannot import torch" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_default_prefix_is_where_debian_python_and_grc_look(tmp_path):
    """With the default prefix (/usr/local, staged here with DESTDIR), Debian's python3 reads the
    module's directory and GRC's global block path holds the block files' directory."""
    build, stage = tmp_path / "build", tmp_path / "stage"
    configure(build, f"-DHQARF_PYTHON={sys.executable}")
    run("cmake", "--install", str(build), env={**os.environ, "DESTDIR": str(stage)})
    codec = next(stage.glob("usr/local/lib/python3*/*-packages/gnuradio/hqarf/codec.py"))
    site = "/" + str(codec.relative_to(stage).parents[2])
    paths = run("/usr/bin/python3", "-c", "import sys; print('\\n'.join(sys.path))", env=clean_env()).stdout
    assert site in paths.splitlines(), (site, paths)
    yml = next(stage.glob("usr/local/share/gnuradio/grc/blocks/hqarf_encoder.block.yml"))
    grc_paths = run("/usr/bin/python3", "-c", "from gnuradio import gr; "
                    "print(gr.prefs().get_string('grc', 'global_blocks_path', ''))", env=clean_env()).stdout
    assert "/" + str(yml.parent.relative_to(stage)) in grc_paths.strip().split(":")
    launcher = (stage / "usr/local/bin/gr-hqarf").read_text()
    assert f"py='{sys.executable}'" in launcher and f"site='{site}'" in launcher
