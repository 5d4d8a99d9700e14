# SPDX-License-Identifier: GPL-3.0-or-later
"""Model files: safetensors weights plus a JSON manifest (config, classes, fingerprint, provenance).

Loading never executes code (no pickle). Every failure raises WeightsError naming the file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"
FORMAT_VERSION = 1


class WeightsError(RuntimeError):
    """A model file is missing, unreadable, corrupt or not the kind expected. The message names it."""


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensor names, dtypes, shapes and bytes, first 8 bytes in hex.

    Carried in every wire message, so a decoder with other weights refuses it."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def config_fingerprint(config, weights_fingerprint: str) -> str:
    """SHA-256 over the manifest's config (canonical JSON) bound to the weights' fingerprint.

    Stored as `config_fingerprint` in every manifest: the weights fingerprint alone does not cover
    settings that change no tensor shape (a codec's frame_len), so an edited config would load
    with weights trained for another one."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(f"{weights_fingerprint}|{text}".encode()).hexdigest()[:16]


def manifest_path(path, kind: str) -> Path:
    """Accept a model directory, its `<kind>.json` manifest or its `<kind>.safetensors`."""
    if path is None or str(path) == "":
        path = DEFAULT_MODEL_DIR
    p = Path(path).expanduser()
    if p.is_dir():
        return p / f"{kind}.json"
    if p.suffix == ".safetensors":
        return p.with_suffix(".json")
    return p


def save(directory, kind: str, state: dict[str, torch.Tensor], manifest: dict) -> Path:
    """Write `<kind>.safetensors` and `<kind>.json` into `directory`; returns the manifest path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    weights = directory / f"{kind}.safetensors"
    save_file(state, str(weights))
    full = {"format": f"hqarf-{kind}", "format_version": FORMAT_VERSION, "weights": weights.name,
            "fingerprint": fingerprint(state), **manifest}
    full["config_fingerprint"] = config_fingerprint(full.get("config"), full["fingerprint"])
    out = directory / f"{kind}.json"
    out.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return out


def load(path, kind: str) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """Read and check a manifest and its weights. Returns (manifest, state dict, manifest path)."""
    mpath = manifest_path(path, kind)
    if path is None or str(path) == "":
        if not mpath.exists():
            raise WeightsError(f"no shipped default {kind} model at {mpath}: train one with "
                               f"`python training/train.py` or pass a model path")
    if not mpath.exists():
        raise WeightsError(f"{kind} manifest not found: {mpath}")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{mpath}: unreadable or not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != f"hqarf-{kind}":
        raise WeightsError(f"{mpath}: not a gr-hqarf {kind} manifest (format field is "
                           f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{mpath}: unsupported format_version {manifest.get('format_version')!r}")
    name = manifest.get("weights", f"{kind}.safetensors")
    # The weights live beside their manifest: a bare file name, no directories, no links out.
    if (not isinstance(name, str) or not name or Path(name).name != name or name in (".", "..")
            or not name.endswith(".safetensors")):
        raise WeightsError(f"{mpath}: \"weights\" must name a .safetensors file in the model directory, "
                           f"got {name!r}")
    wpath = mpath.parent / name
    if wpath.is_symlink() and wpath.resolve().parent != mpath.parent.resolve():
        raise WeightsError(f"{mpath}: weights {name} link outside the model directory")
    if not wpath.exists():
        raise WeightsError(f"{kind} weights file not found: {wpath} (named by {mpath})")
    try:
        state = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{wpath}: corrupt or unreadable safetensors file ({exc})") from None
    actual = fingerprint(state)
    if manifest.get("fingerprint") != actual:
        raise WeightsError(f"{wpath}: weights fingerprint {actual} does not match {manifest.get('fingerprint')} "
                           f"in {mpath.name}: the file is corrupt or belongs to another model")
    try:
        config_actual = config_fingerprint(manifest.get("config"), actual)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{mpath}: config is not plain JSON ({exc})") from None
    if manifest.get("config_fingerprint") != config_actual:
        raise WeightsError(f"{mpath}: config_fingerprint {manifest.get('config_fingerprint')!r} does not match "
                           f"its config and weights ({config_actual}): the config was edited, or the manifest "
                           f"predates config fingerprints (save the model again)")
    return manifest, state, mpath


def load_into(module: torch.nn.Module, state: dict, wpath: Path) -> None:
    """load_state_dict with an error that names the file."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{wpath}: weights do not fit the architecture in its manifest ({exc})") from None
