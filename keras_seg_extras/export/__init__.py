"""Serving export (TensorFlow backend): one serving graph as a SavedModel, ONNX or LiteRT model.

:func:`export_model` writes a segmentation model (a ``UNetPlusPlus``, a TTA wrapper, an
``ensemble``) with its padding, test-time augmentation and threshold inside, in the format a
deployment needs, and checks the artifact with that format's own runtime before returning.
The artifacts need no ``keras_seg_extras`` to serve: TensorFlow (SavedModel), ONNX Runtime
(``.onnx``) or the LiteRT interpreter (``.tflite``) alone. The ONNX and LiteRT converters and
runtimes come with the ``export`` extra (``pip install 'keras-seg-extras[export]'``).
"""

from keras_seg_extras.export.exporter import (PROBE_SIZE, ExportVerificationError,
                                              export_model, export_saved_model)
from keras_seg_extras.export.formats import FORMATS, ONNX_OPSET
from keras_seg_extras.export.serving import ENDPOINTS, serving_function

__all__ = ["ENDPOINTS", "ExportVerificationError", "FORMATS", "ONNX_OPSET", "PROBE_SIZE",
           "export_model", "export_saved_model", "serving_function"]
