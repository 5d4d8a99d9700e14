#!/usr/bin/env bash
# One idempotent set-up for gr-hqarf on Debian 12: system packages, the .venv, Python packages,
# and the source-tree shim that makes `from gnuradio import hqarf` work without installing.
# Safe to run again; each step is skipped when already done.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages: GNU Radio 3.10 (Python modules built for /usr/bin/python3 + numpy 1.24).
need_apt=0
/usr/bin/python3 -c 'from gnuradio import gr, pdu, zeromq' >/dev/null 2>&1 || need_apt=1
for tool in cmake g++ grcc; do command -v "$tool" >/dev/null 2>&1 || need_apt=1; done
if [ "$need_apt" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "installing Debian packages (gnuradio gnuradio-dev cmake g++)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    gnuradio gnuradio-dev cmake g++ make python3-venv >/dev/null
fi

# 1b. What GNU Radio Companion needs beyond the gnuradio package: GTK's introspection data (Debian's
# gnuradio only recommends it, so --no-install-recommends leaves GRC failing with "Namespace Gtk not
# available"), and a headless X server plus xwininfo for the test that starts GRC itself.
grc_packages=(gir1.2-gtk-3.0 xvfb xauth x11-utils)
missing=()
for pkg in "${grc_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "installing Debian packages for GNU Radio Companion (${missing[*]})"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. A venv on Debian's Python that still sees GNU Radio (system site packages).
if [ ! -x .venv/bin/python ]; then
  log "creating .venv from /usr/bin/python3 --system-site-packages"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi

# 3. Python packages, always under the constraints (numpy 1.24.2, torch 2.13.0 CPU).
stamp=.venv/.hqarf-requirements
want="$(cat requirements/constraints.txt requirements/requirements.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages into .venv (constraints: requirements/constraints.txt)"
  pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
  "${pip[@]}" install -c requirements/constraints.txt -r requirements/requirements.txt
  # torchsig's metadata demands numpy>=2, which would break GNU Radio; its code runs on 1.24.
  # Its torchaudio import is handled in training/torchsig_compat.py (the one place for it).
  "${pip[@]}" install -c requirements/constraints.txt --no-deps torchsig==2.2.0
  echo "$want" > "$stamp"
fi

# 4. Source-tree shim: shim/gnuradio/hqarf -> python/hqarf, used through PYTHONPATH.
mkdir -p shim/gnuradio
[ -L shim/gnuradio/hqarf ] || ln -sfn ../../python/hqarf shim/gnuradio/hqarf

# 5. Check that the pieces run together in one process.
.venv/bin/python - <<'PY'
import numpy, torch
from gnuradio import gr
assert numpy.__version__.startswith("1.24"), f"numpy {numpy.__version__}: GNU Radio needs Debian's 1.24"
assert torch.__version__.startswith("2.13.0"), f"unexpected torch {torch.__version__}"
PY
log "ready: GNU Radio $(.venv/bin/python -c 'from gnuradio import gr; print(gr.version())'), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
