# SPDX-License-Identifier: GPL-3.0-or-later
"""Puts scripts/ on sys.path so tests can use scripts/fuzz_readers.py (the long fuzz run)."""
import sys
from pathlib import Path

_SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)
