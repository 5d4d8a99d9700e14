# SPDX-License-Identifier: GPL-3.0-or-later
"""gr-hqarf: learned compression of IQ frames with a hierarchical VQ autoencoder (HQARF).

The codec core (load_codec, load_classifier, the wire format; model.py, codec.py, wire.py,
weights.py, classifier.py) is plain PyTorch and imports no GNU Radio; the blocks (encoder, decoder,
modrec_sink) are GNU Radio adapters over it.
"""
import sys as _sys

from .model_info import codec_levels

__version__ = "0.1.0"

_BLOCKS = ("encoder", "decoder", "modrec_sink")
_CORE = ("Codec", "Classifier", "WireFormatError", "WeightsError", "DEFAULT_MODEL_DIR",
         "load_codec", "load_classifier")

# Without torch (GRC or a generated flowgraph started by a Python that lacks it) the package still
# imports, so GRC can check block parameters (codec_levels); using a block or the codec then raises
# one ImportError that says which interpreter to use instead of a bare "No module named 'torch'".
try:
    from .classifier import Classifier, load_classifier
    from .codec import Codec, load_codec
    from .weights import DEFAULT_MODEL_DIR, WeightsError
    from .wire import WireFormatError
except ModuleNotFoundError as _error:
    if _error.name not in ("torch", "safetensors"):
        raise
    _MISSING = (f"gr-hqarf needs the Python package {_error.name!r}, which this interpreter "
                f"({_sys.executable}) cannot import. Run GRC and the flowgraphs on the Python that "
                "has gr-hqarf's dependencies: './dev.sh grc' in a checkout, 'gnuradio-companion-hqarf' "
                "after a CMake install (README: Using the blocks in GNU Radio Companion)")
else:
    _MISSING = None
    # The blocks need GNU Radio; without it the codec core stays usable (gr_modtool's pattern: import
    # the block classes eagerly, so `hqarf.encoder` is the class even after its module was imported).
    try:
        from .decoder import decoder
        from .encoder import encoder
        from .modrec_sink import modrec_sink
    except ImportError as _error:
        _MISSING = f"gnuradio.hqarf's blocks need GNU Radio: {_error}"


def __getattr__(name):
    if _MISSING is not None and (name in _BLOCKS or name in _CORE):
        raise ImportError(f"gnuradio.hqarf.{name}: {_MISSING}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Codec", "Classifier", "WireFormatError", "WeightsError", "DEFAULT_MODEL_DIR",
           "load_codec", "load_classifier", "codec_levels", "encoder", "decoder", "modrec_sink"]
