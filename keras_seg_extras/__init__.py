"""keras-seg-extras: techniques of winning segmentation and multi-label solutions as Keras 3 objects.

Conventionally imported as ``import keras_seg_extras as kse``. Importing it imports every
subpackage, so that every registered class is known to ``keras.saving.load_model`` and every
name is where an editor finds it (``kse.losses.DiceLoss``, ``kse.data.decode_siim``). It works
under every Keras backend and without TensorFlow or OpenCV installed: the TensorFlow-only parts
(``tf.data`` pipelines, ``tf.distribute``, serving export) and OpenCV import them at their
first use (:class:`keras_seg_extras._common.OptionalModule` or an import inside the function).

Subpackages: ``losses``, ``metrics``, ``callbacks``, ``training``, ``models``, ``inference``,
``video``, ``data``, ``datasets``, ``export`` (whose :func:`~keras_seg_extras.export.export_model`
is also ``kse.export_model``); docs/api.md lists every public name.
"""

__version__ = "0.1.0"

from keras_seg_extras import callbacks  # noqa: E402
from keras_seg_extras import data  # noqa: E402
from keras_seg_extras import datasets  # noqa: E402
from keras_seg_extras import export  # noqa: E402
from keras_seg_extras import inference  # noqa: E402
from keras_seg_extras import losses  # noqa: E402
from keras_seg_extras import metrics  # noqa: E402
from keras_seg_extras import models  # noqa: E402
from keras_seg_extras import training  # noqa: E402
from keras_seg_extras import video  # noqa: E402
from keras_seg_extras.export import export_model, export_saved_model  # noqa: E402

__all__ = ["callbacks", "data", "datasets", "export", "export_model", "export_saved_model",
           "inference", "losses", "metrics", "models", "training", "video"]
