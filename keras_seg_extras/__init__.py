"""keras-seg-extras: techniques of winning segmentation and multi-label solutions as Keras 3 objects.

Conventionally imported as ``import keras_seg_extras as kse``.

The backend-agnostic parts (losses, metrics, callbacks, models, inference, training) are
imported at once, so that every registered class is known to ``keras.saving.load_model``
as soon as the package is imported. The TensorFlow- or OpenCV-heavy parts (``data``,
``datasets``, ``export``) load on first attribute access.
"""

import importlib

__version__ = "0.1.0"

from keras_seg_extras import losses  # noqa: E402,F401
from keras_seg_extras import metrics  # noqa: E402,F401
from keras_seg_extras import callbacks  # noqa: E402,F401
from keras_seg_extras import models  # noqa: E402,F401
from keras_seg_extras import inference  # noqa: E402,F401
from keras_seg_extras import training  # noqa: E402,F401

_LAZY = ("data", "datasets", "export")
_LAZY_EXPORTS = ("export_model", "export_saved_model")


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"keras_seg_extras.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_EXPORTS:
        return getattr(importlib.import_module("keras_seg_extras.export"), name)
    raise AttributeError(f"module 'keras_seg_extras' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_LAZY_EXPORTS))
