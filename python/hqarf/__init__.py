# SPDX-License-Identifier: GPL-3.0-or-later
"""gr-hqarf: learned compression of IQ frames with a hierarchical VQ autoencoder (HQARF).

The codec core (load_codec, load_classifier, the wire format) is plain PyTorch and imports no
GNU Radio; the blocks (encoder, decoder, modrec_sink) are imported on first use.
"""
from .classifier import Classifier, load_classifier
from .codec import Codec, load_codec
from .weights import DEFAULT_MODEL_DIR, WeightsError
from .wire import WireFormatError

__version__ = "0.1.0"

_BLOCKS = {"encoder": ".encoder", "decoder": ".decoder", "modrec_sink": ".modrec_sink"}


def __getattr__(name):
    # Blocks need GNU Radio; importing them lazily keeps the core usable without it.
    if name in _BLOCKS:
        import importlib
        return getattr(importlib.import_module(_BLOCKS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Codec", "Classifier", "WireFormatError", "WeightsError", "DEFAULT_MODEL_DIR",
           "load_codec", "load_classifier", "encoder", "decoder", "modrec_sink"]
