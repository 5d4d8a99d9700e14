# SPDX-License-Identifier: GPL-3.0-or-later
"""A training run's checkpoints: per (stage, level) safetensors states (no pickle) and a JSON progress
file that --resume continues from and --redo-from rewinds."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STAGES = ("hae", "hqarf_nokl", "hqarf")  # then "direct" where the codec config has direct levels
CHAIN = (*STAGES, "semantic", "direct")  # "semantic": the global token's head (codec v3)


def parse_redo(spec: str) -> tuple:
    """'hqarf_nokl:2' -> ('hqarf_nokl', 2); a stage alone means from its level 0."""
    stage, _, level = spec.partition(":")
    if stage not in CHAIN:
        raise SystemExit(f"--redo-from {spec!r}: the stage must be one of {', '.join(CHAIN)}")
    try:
        return stage, int(level or 0)
    except ValueError:
        raise SystemExit(f"--redo-from {spec!r}: the level must be a number") from None


def progress_key(stage: str, level) -> str:
    """'hae/L2', or the stage alone for stages without levels (classifiers, semantic)."""
    return stage if level is None else f"{stage}/L{level}"


class Checkpoints:
    """Per (stage, level) checkpoints: safetensors states (no pickle) plus a JSON progress file."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "checkpoint"
        self.progress_file = self.dir / "progress.json"
        self.progress = json.loads(self.progress_file.read_text()) if self.progress_file.exists() else {
            "done": [], "durations_s": {}, "metrics": {}}

    def done(self, stage: str, level=None) -> bool:
        return [stage, level] in self.progress["done"]

    def save(self, stage: str, level, module: torch.nn.Module, duration: float, metrics: dict):
        self.dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                  str(self.dir / f"{stage}.safetensors"))
        self.progress["done"].append([stage, level])
        key = progress_key(stage, level)
        self.progress["durations_s"][key] = round(duration, 1)
        self.progress["metrics"][key] = metrics
        self.progress_file.write_text(json.dumps(self.progress, indent=1))

    def _forget(self, entries) -> None:
        """Drop these (stage, level) entries from the done list, with their durations and metrics."""
        entries = [tuple(e) for e in entries]
        self.progress["done"] = [e for e in self.progress["done"] if tuple(e) not in entries]
        for s, lv in entries:
            self.progress["durations_s"].pop(progress_key(s, lv), None)
            self.progress["metrics"].pop(progress_key(s, lv), None)
        self.progress_file.write_text(json.dumps(self.progress, indent=1))

    def redo_direct(self, level: int) -> str:
        """Forget level `level`'s direct decoder alone (no later level depends on it); returns its key."""
        if ["direct", level] not in self.progress["done"]:
            raise SystemExit(f"--redo-direct {level}: this run has no direct decoder of level {level} to redo")
        self._forget([("direct", level)])
        return progress_key("direct", level)

    def redo_detector(self) -> str | None:
        """Forget the unknown detector (it learned reconstructions that a redone decoder no longer makes);
        returns its key, or None if it was not trained."""
        if not self.done("unknown_detector"):
            return None
        self._forget([("unknown_detector", None)])
        return progress_key("unknown_detector", None)

    def redo_from(self, stage: str, level: int) -> list:
        """Forget (stage, level) and every chain level after it (the order of CHAIN: HAE levels 0-4,
        then the quantised stages, then the direct decoders), so --resume trains them again; returns
        what was dropped. The classifiers' checkpoints are kept."""
        start = CHAIN.index(stage)
        def later(entry):
            s, lv = entry
            return s in CHAIN and (CHAIN.index(s) > start or (s == stage and (lv is None or lv >= level)))
        dropped = sorted((tuple(e) for e in self.progress["done"] if later(e)),
                         key=lambda e: (CHAIN.index(e[0]), -1 if e[1] is None else e[1]))
        self._forget(dropped)
        return dropped

    def import_model(self, model_dir: Path, levels: int, direct_levels) -> list:
        """Start this (new) run from a shipped model directory: its classifiers, unknown detector, chain
        weights, global token head and direct decoders become done checkpoints, with the stage
        durations, metrics and invocations of its provenance, so --redo-from retrains a part of it.
        The HAE and no-KL stages' weights are not in a model: they are marked done without a file
        (nothing after them needs them). Returns the checkpoints written."""
        if self.progress["done"]:
            raise SystemExit(f"--init-from: {self.dir} already holds checkpoints")
        manifest = model_dir / "codec.json"
        if not manifest.exists():
            raise SystemExit(f"--init-from: {manifest} does not exist")
        codec_manifest = json.loads(manifest.read_text())
        provenance = codec_manifest.get("provenance", {})
        codec = load_file(str(model_dir / "codec.safetensors"))
        self.dir.mkdir(parents=True, exist_ok=True)
        states = {"hqarf": {k: v for k, v in codec.items() if not k.startswith(("direct.", "semantic."))},
                  "direct": codec}
        if any(k.startswith("semantic.") for k in codec):
            states["semantic"] = {k[len("semantic."):]: v for k, v in codec.items() if k.startswith("semantic.")}
        for name in ("classifier", "heldout_classifier", "unknown_detector"):
            if (model_dir / f"{name}.safetensors").exists():
                # without the feature-space statistics the shipped classifier carries (fitted after training)
                states[name] = {k: v for k, v in load_file(str(model_dir / f"{name}.safetensors")).items()
                                if not k.startswith("out_of_set.")}
        for name, state in states.items():
            save_file({k: v.contiguous() for k, v in state.items()}, str(self.dir / f"{name}.safetensors"))
        done = [[s, None] for s in states if s not in ("hqarf", "direct")]
        # a direct level the imported model lacks (a preset that added one) stays to be trained
        done += [[s, lv] for s in STAGES for lv in range(levels)] + [
            ["direct", lv] for lv in direct_levels if any(k.startswith(f"direct.{lv}.") for k in codec)]
        self.progress["done"] = done
        self.progress["durations_s"] = dict(provenance.get("durations_s", {}))
        self.progress["durations_s"].pop("evaluate", None)
        self.progress["metrics"] = dict(provenance.get("stage_metrics", {}))
        self.progress["invocations"] = list(provenance.get("invocations", []))
        self.progress["imported_from"] = {"model": str(model_dir),
                                          "codec_fingerprint": codec_manifest.get("fingerprint")}
        self.progress_file.write_text(json.dumps(self.progress, indent=1))
        return sorted(states)

    def has_weights(self, stage: str) -> bool:
        return (self.dir / f"{stage}.safetensors").exists()

    def load(self, stage: str, module: torch.nn.Module, fresh=()) -> bool:
        """Load a stage's checkpoint. `fresh`: prefixes of parts that train again from the module's own initial
        weights (a level --redo-direct or --redo-from dropped, the token head trained again): the file's weights
        under them are not loaded, and the file may lack them; every other weight must be in the file and fit."""
        path = self.dir / f"{stage}.safetensors"
        if not path.exists():
            return False
        state = load_file(str(path))
        if not fresh:
            module.load_state_dict(state)
            return True
        fresh = tuple(fresh)
        result = module.load_state_dict({k: v for k, v in state.items() if not k.startswith(fresh)}, strict=False)
        bad = [k for k in result.missing_keys if not k.startswith(fresh)] + list(result.unexpected_keys)
        if bad:
            raise SystemExit(f"{path}: does not fit this architecture ({', '.join(bad[:4])} ...)")
        return True
