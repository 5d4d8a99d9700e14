# SPDX-License-Identifier: GPL-3.0-or-later
"""Parameter checks shared by the codec core, the blocks and the command (no GNU Radio, no torch)."""
from __future__ import annotations

import math

import numpy as np


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """An integer parameter (integral floats such as GRC's 2.0 accepted) within bounds, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)) and (not math.isfinite(value) or value != int(value)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise ValueError(f"{name} must be {minimum}{upper}, got {value}")
    return value


def check_level(level, levels: int) -> int:
    """A compression level of a model with `levels` levels (0 .. levels - 1), or ValueError."""
    return check_int("level", level, 0, levels - 1)
