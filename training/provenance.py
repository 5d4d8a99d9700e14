# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped model's provenance: the evaluation's headline in its manifests and PROVENANCE.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.checkpoints import Checkpoints


def finalize_provenance(run_dir: Path, model_dir: Path, provenance: dict, ckpt: Checkpoints, report: dict,
                        wall: float | None, evaluated_by: str | None = None):
    """Add the evaluation's headline metrics to the manifests (the weights, and so the fingerprint,
    stay as they are) and write PROVENANCE.md beside the model."""
    headline = report.get("headline", {})
    provenance = {**provenance, "durations_s": ckpt.progress["durations_s"],
                  "total_duration_s": round(sum(ckpt.progress["durations_s"].values()), 1)}
    for kind in ("codec", "classifier"):
        path = model_dir / f"{kind}.json"
        manifest = json.loads(path.read_text())
        manifest["provenance"] = provenance
        manifest["metrics"] = headline
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    lines = ["# Provenance of this model", "",
             f"- command: `{provenance['command']}`", f"- commit: {provenance['commit']}",
             f"- preset: {provenance['preset']}, seed {provenance['seed']}, device {provenance['device']}, "
             f"torch {provenance['torch']}",
             f"- data: torchsig 6Mod, key {provenance['data']['key']}, per class {provenance['data']['per_class']}",
             *[f"- invocation {i + 1}: `{inv['command']}` at {inv['commit']} ({inv['started']})"
               for i, inv in enumerate(provenance.get("invocations", []))],
             *([f"- run started from the weights of `{provenance['imported_from']['model']}` (codec "
                f"{provenance['imported_from']['codec_fingerprint']}; train.py --init-from), whose invocations "
                "are the first ones above"] if provenance.get("imported_from") else []),
             f"- training time: {provenance['total_duration_s'] / 60:.1f} min of stages "
             + (f"(wall {wall / 60:.1f} min including data and evaluation)" if wall is not None else
                "(evaluated afterwards by `training/evaluate.py --write-provenance`)"), "",
             *([f"- evaluation: `{evaluated_by}`"] if evaluated_by else []),
             "## Durations (s)", "", *[f"- {k}: {v}" for k, v in provenance["durations_s"].items()], "",
             "## Metrics (held-out test set)", "", report.get("summary_table", ""), ""]
    (model_dir / "PROVENANCE.md").write_text("\n".join(lines))
