# SPDX-License-Identifier: GPL-3.0-or-later
"""Facts about a model read from its codec.json alone, without torch: GRC evaluates the blocks'
parameter checks (`asserts`) in its own interpreter, which may not have torch."""
from __future__ import annotations

import json
from pathlib import Path

# The same directory as weights.DEFAULT_MODEL_DIR (weights imports torch; a test keeps them equal).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"


def codec_manifest_path(model="") -> Path:
    """codec.json of `model`: a model directory, its codec.json or codec.safetensors; "" = shipped."""
    p = Path(str(model) or DEFAULT_MODEL_DIR).expanduser()
    if p.is_dir():
        return p / "codec.json"
    return p.with_suffix(".json") if p.suffix == ".safetensors" else p


def codec_levels(model="") -> int:
    """Number of compression levels of `model` (valid levels are 0 .. codec_levels - 1).

    Raises ValueError naming the file when it is missing or does not say."""
    path = codec_manifest_path(model)
    try:
        levels = json.loads(path.read_text())["config"]["levels"]
    except FileNotFoundError:
        raise ValueError(f"no codec model at {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} does not give config.levels: {error}") from None
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"{path}: config.levels must be a positive integer, not {levels!r}")
    return levels


def format_value(v) -> str:
    """A manifest value on one line: floats to 4 significant digits, flat lists in brackets."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


def pretty_lines(value, indent: int = 2) -> list:
    """Nested manifest values as indented `key: value` lines (gr-hqarf info)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v)):
                lines.append(f"{pad}{k}:")
                lines += pretty_lines(v, indent + 2)
            else:
                lines.append(f"{pad}{k}: {format_value(v)}")
    elif isinstance(value, list):
        for v in value:
            sub = pretty_lines(v, indent + 2)
            if sub and isinstance(v, dict):
                lines.append(f"{pad}- {sub[0].strip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {format_value(v)}")
    else:
        lines.append(f"{pad}{format_value(value)}")
    return lines
