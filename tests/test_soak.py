# SPDX-License-Identifier: GPL-3.0-or-later
"""The soak command (scripts/soak.py, ./dev.sh soak) at CI size: sensor and cloud in two processes
over ZMQ on 127.0.0.1; every frame sent is received, decoded and classified, nothing lost or
unaccounted, no gap, reorder or duplicate, memory sampled for both processes. The long run's
figures are in the README (Robustness)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_soak_accounts_for_every_frame(tiny_model_dir, tmp_path):
    out = tmp_path / "soak.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shim"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # --rate 0: unpaced (the decoder's queue holds all 600 frames), so nothing depends on timing.
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--frames", "600", "--level", "3",
                           "--model", str(tiny_model_dir), "--rate", "0", "--frames-per-pdu", "16",
                           "--sample-s", "0.2", "--no-rss-check", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["frames_sent"] == r["frames_received"] == r["frames_decoded"] == r["frames_classified"] == 600
    assert r["pdus_sent"] == r["pdus_received"] == 38  # 37 full PDUs and the 8-frame tail
    assert r["unaccounted_frames"] == 0 and r["lost_in_transit_frames"] == 0 and set(r["lost"].values()) == {0}
    assert (r["sequence_gaps"], r["reordered"], r["duplicates"], r["dropped"]) == (0, 0, 0, {})
    assert r["drained"] and r["rss"] and all(s["cloud_rss_mib"] and s["sensor_rss_mib"] for s in r["rss"])
    assert "frames sent 600 in 38 PDUs / received 600" in proc.stdout and "soak: PASS" in proc.stdout
