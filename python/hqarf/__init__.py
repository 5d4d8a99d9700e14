# SPDX-License-Identifier: GPL-3.0-or-later
"""gr-hqarf: learned compression of IQ frames with a hierarchical VQ autoencoder (HQARF).

The codec core (load_codec, load_classifier, the wire format; model.py, codec.py, wire.py,
weights.py, classifier.py) is plain PyTorch and imports no GNU Radio; the blocks (encoder, decoder,
modrec_sink) are GNU Radio adapters over it.
"""
from .classifier import Classifier, load_classifier
from .codec import Codec, load_codec
from .weights import DEFAULT_MODEL_DIR, WeightsError
from .wire import WireFormatError

__version__ = "0.1.0"

_BLOCKS = ("encoder", "decoder", "modrec_sink")

# The blocks need GNU Radio; without it the codec core stays usable (gr_modtool's pattern: import
# the block classes eagerly, so `hqarf.encoder` is the class even after its module was imported).
try:
    from .decoder import decoder
    from .encoder import encoder
    from .modrec_sink import modrec_sink
except ImportError as _error:
    _BLOCKS_ERROR = _error

    def __getattr__(name):
        if name in _BLOCKS:
            raise ImportError(f"gnuradio.hqarf.{name} needs GNU Radio: {_BLOCKS_ERROR}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Codec", "Classifier", "WireFormatError", "WeightsError", "DEFAULT_MODEL_DIR",
           "load_codec", "load_classifier", "encoder", "decoder", "modrec_sink"]
