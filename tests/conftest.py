# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: the source tree on sys.path and small randomly initialised models on disk."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "shim", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
os.environ.setdefault("GRC_BLOCKS_PATH", str(ROOT / "grc"))
# Scripts the tests start (training/*.py) find the checkout as under ./dev.sh, from any caller.
_paths = [str(ROOT / "shim"), str(ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join(
    _paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in _paths])

CLASSES = ["4ask", "8pam", "16psk", "32qam_cross", "2fsk", "ofdm-256"]
TINY = dict(encoder_widths=(8, 8, 8, 8, 8), decoder_widths=(8, 8, 8, 8, 8),
            residual_blocks=(0, 1, 1, 1, 1), codebook_size=64, code_dim=16)


def make_codec(directory, seed=0, **overrides):
    """A small random-weight codec saved to `directory` (what tests use instead of a trained one)."""
    import torch
    from gnuradio.hqarf.codec import Codec
    from gnuradio.hqarf.model import HQARF, HQARFConfig

    torch.manual_seed(seed)
    model = HQARF(HQARFConfig(**{**TINY, **overrides}))
    codec = Codec(model)
    codec.save(directory, classes=CLASSES,
               provenance={"made_by": "tests/conftest.py", "seed": seed})
    return Path(directory)


def make_classifier(directory, seed=0):
    """A small random-weight classifier saved beside a codec (load_classifier(directory) finds it)."""
    import torch
    from gnuradio.hqarf.classifier import Classifier, ClassifierConfig, ModRecNet

    torch.manual_seed(seed)
    net = ModRecNet(ClassifierConfig(stem_width=8, widths=(8, 8), blocks=(1, 1)))
    Classifier(net, {"classes": CLASSES}).save(directory, provenance={"made_by": "tests/conftest.py"})
    return Path(directory)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A model directory with a random tiny codec and classifier (codec.* and classifier.*)."""
    directory = make_codec(tmp_path_factory.mktemp("tiny_model"))
    return make_classifier(directory)


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory):
    return make_codec(tmp_path_factory.mktemp("other_model"), seed=1)


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng(1234)


def random_frames(rng, n, frame_len=1024, scale=1.0):
    import numpy as np
    x = rng.standard_normal((n, frame_len)) + 1j * rng.standard_normal((n, frame_len))
    return (scale * x).astype(np.complex64)
