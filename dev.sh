#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The one entry point for developers and CI: ./dev.sh setup | demo | test | bench | train | grc | fuzz | soak | env
# Every command runs the idempotent set-up first (Debian packages, .venv, Python packages).
set -euo pipefail
caller_dir="$PWD"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
cmd="${1:-help}"; shift || true

bash scripts/setup.sh
export PYTHONPATH="$root/shim:$root${PYTHONPATH:+:$PYTHONPATH}"
export GRC_BLOCKS_PATH="$root/grc${GRC_BLOCKS_PATH:+:$GRC_BLOCKS_PATH}"
user_qt_platform="${QT_QPA_PLATFORM-}"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
py="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH"

case "$cmd" in
  setup) ;;
  demo)  exec "$py" apps/gr-hqarf demo "$@" ;;
  test)  exec "$py" -m pytest tests -ra "$@" ;;
  bench) exec "$py" bench/bench.py "$@" ;;
  train) exec "$py" training/train.py "$@" ;;
  grc)
    # GRC runs a flowgraph (F6) with the interpreter GRC itself runs under (the Options block's run
    # command is '{python} -u {filename}', {python} = GRC's sys.executable), so GRC must run on the
    # .venv's Python, the one that has torch; its own shebang is /usr/bin/python3. Qt windows of the
    # flowgraphs must show, so the offscreen default above is not applied here.
    if [ -n "$user_qt_platform" ]; then export QT_QPA_PLATFORM="$user_qt_platform"; else unset QT_QPA_PLATFORM; fi
    grc="${HQARF_GRC:-$(command -v gnuradio-companion || true)}"
    [ -n "$grc" ] || { echo "dev.sh grc: gnuradio-companion not found (Debian package gnuradio)" >&2; exit 1; }
    cd "$caller_dir"   # FILE.grc arguments are relative to where ./dev.sh was called from
    exec "$py" "$grc" "$@" ;;
  fuzz)  exec "$py" scripts/fuzz_readers.py "$@" ;;
  soak)  exec "$py" scripts/soak.py "$@" ;;   # sensor and cloud in two processes over ZMQ (README Robustness)
  env)   cd "$caller_dir"; [ $# -gt 0 ] && exec "$@"; echo "PYTHONPATH=$PYTHONPATH GRC_BLOCKS_PATH=$GRC_BLOCKS_PATH python=$py" ;;
  *) echo "usage: ./dev.sh setup|demo|test|bench|train|grc|fuzz|soak|env [args]" >&2; exit 2 ;;
esac
