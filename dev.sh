#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The one entry point for developers and CI: ./dev.sh setup | demo | test | bench | train | env
# Every command runs the idempotent set-up first (Debian packages, .venv, Python packages).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
cmd="${1:-help}"; shift || true

bash scripts/setup.sh
export PYTHONPATH="$root/shim:$root${PYTHONPATH:+:$PYTHONPATH}"
export GRC_BLOCKS_PATH="$root/grc"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
py="$root/.venv/bin/python"
export PATH="$root/.venv/bin:$PATH"

case "$cmd" in
  setup) ;;
  demo)  exec "$py" apps/gr-hqarf demo "$@" ;;
  test)  exec "$py" -m pytest tests -ra "$@" ;;
  bench) exec "$py" bench/bench.py "$@" ;;
  train) exec "$py" training/train.py "$@" ;;
  fuzz)  exec "$py" scripts/fuzz_readers.py "$@" ;;
  env)   [ $# -gt 0 ] && exec "$@"; echo "PYTHONPATH=$PYTHONPATH GRC_BLOCKS_PATH=$GRC_BLOCKS_PATH python=$py" ;;
  *) echo "usage: ./dev.sh setup|demo|test|bench|train|env [args]" >&2; exit 2 ;;
esac
