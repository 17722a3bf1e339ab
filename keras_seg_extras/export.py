"""SavedModel export with a serving signature for images of any size (TensorFlow only).

The exported artifact needs TensorFlow alone to serve: ``tf.saved_model.load(path)`` in a
process that never imports ``keras_seg_extras`` (or TF-Serving) calls it. What the signatures
do, in order:

1. cast the image batch (B, H, W, C) to float32; ``uint8`` input is multiplied by
   ``uint8_scale`` (default 1.0: values stay in [0, 255], the range ``UNetPlusPlus`` and the
   keras.applications EfficientNets expect, since they normalise inside the model; use
   ``1 / 255`` for a model trained on [0, 1] inputs). Float input is passed unchanged, so it
   must already be on the model's scale;
2. pad bottom and right with zeros to the next multiple of ``multiple`` (32 for a five-level
   encoder);
3. run the model (wrapped in :class:`~keras_seg_extras.inference.TestTimeAugmentation` when
   ``tta`` is given), in inference mode;
4. crop the output back to (H, W).

Endpoints: ``serve`` (float32 input, also ``serving_default``) and ``serve_uint8``; each returns
``{"probabilities": float32 (B, H, W, K)}`` plus ``"mask": uint8 (B, H, W, K)`` = probabilities
> threshold when ``threshold`` is given.
"""

import keras
import tensorflow as tf

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.inference.tta import with_tta

_OWNER = "export_saved_model"


def _tta_model(model, tta):
    if tta is None:
        return model
    if isinstance(tta, dict):
        return with_tta(model, **tta)
    return with_tta(model, tta)


def _check_model(model):
    if not isinstance(model, keras.Model):
        fail(_OWNER, "model", model, "must be a keras.Model")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        fail(_OWNER, "model", model.name,
             f"must have one input and one output; it has {len(model.inputs)} input(s) and "
             f"{len(model.outputs)} output(s)")
    shape = model.input_shape
    if len(shape) != 4:
        fail(_OWNER, "model", model.name,
             f"must take image batches (B, H, W, C); its input shape is {shape}")
    if shape[1] is not None or shape[2] is not None:
        fail(_OWNER, "model", model.name,
             f"must accept any image size (input_shape=(None, None, C)) to serve padded images; "
             f"its input shape is {shape}. Rebuild it with None height and width and copy the "
             f"weights (model_any_size.set_weights(model.get_weights()))")
    if shape[3] is None:
        fail(_OWNER, "model", model.name, "must have a known number of input channels")


def serving_function(model, threshold=None, multiple=32, uint8_scale=1.0):
    """The TensorFlow function behind the export's endpoints (see the module docstring).

    Args:
        model: a single-input, single-output Keras model taking (B, H, W, C) images with any H, W
            that are multiples of ``multiple``.
        threshold: None, or the probability above which ``"mask"`` is 1.
        multiple: pad height and width to a multiple of this.
        uint8_scale: factor applied to uint8 inputs after the cast to float32.

    Returns:
        ``serve(images)``: images uint8 or float (B, H, W, C) -> dict of outputs.
    """

    @tf.function(reduce_retracing=True)
    def predict(x):
        # One traced graph of the model shared by the uint8 and the float endpoints.
        size = tf.shape(x)[1:3]
        padded = (size + multiple - 1) // multiple * multiple
        x = tf.pad(x, [[0, 0], [0, padded[0] - size[0]], [0, padded[1] - size[1]], [0, 0]])
        probabilities = tf.cast(model(x, training=False), tf.float32)
        return probabilities[:, :size[0], :size[1], :]

    def serve(images):
        x = tf.cast(images, tf.float32)
        if images.dtype == tf.uint8 and uint8_scale != 1.0:
            x = x * uint8_scale
        probabilities = predict(x)
        outputs = {"probabilities": probabilities}
        if threshold is not None:
            outputs["mask"] = tf.cast(probabilities > threshold, tf.uint8)
        return outputs

    return serve


def export_saved_model(model, path, tta=None, threshold=None, multiple=32, uint8_scale=1.0,
                       verbose=False):
    """Export ``model`` as a SavedModel that serves images of any size, uint8 or float.

    Args:
        model: a ``keras.Model`` with input shape (None, None, C) and one output of
            probabilities (B, H, W, K), e.g. ``UNetPlusPlus(...)``, ``with_tta(...)``,
            ``ensemble(...)``.
        path: output directory.
        tta: None, or a :class:`~keras_seg_extras.inference.TestTimeAugmentation` ``transforms``
            preset/tuple ("hflip" is the report's), or a dict of its arguments
            (``{"transforms": "flips", "scales": (1.0, 1.5)}``), applied inside the export.
        threshold: None, or a number in [0, 1]: the export also returns ``"mask"``
            (``probabilities > threshold`` as uint8).
        multiple: height and width are zero-padded to a multiple of this (32), and cropped back.
        uint8_scale: uint8 images are cast to float32 and multiplied by this (1.0 keeps
            [0, 255], which UNetPlusPlus expects; 1/255 for models trained on [0, 1]).
        verbose: print the exported variables.

    Returns:
        ``path``.

    Example (serving without keras_seg_extras)::

        kse.export_saved_model(model, "export/siim", tta="hflip", threshold=0.5)
        # elsewhere, TensorFlow only:
        served = tf.saved_model.load("export/siim")
        out = served.serve_uint8(images_uint8)  # {"probabilities": ..., "mask": ...}
    """
    _check_model(model)
    if threshold is not None:
        threshold = check_number(_OWNER, "threshold", threshold, minimum=0.0, maximum=1.0)
    multiple = check_number(_OWNER, "multiple", multiple, minimum=1, integer=True)
    uint8_scale = check_number(_OWNER, "uint8_scale", uint8_scale, minimum=0.0,
                               min_inclusive=False)
    if tta is not None and not isinstance(tta, (str, tuple, list, dict)):
        fail(_OWNER, "tta", tta, "must be None, a TestTimeAugmentation preset or tuple, or a dict")
    served = _tta_model(model, tta)
    channels = served.input_shape[-1]
    serve = serving_function(served, threshold, multiple, uint8_scale)

    archive = keras.export.ExportArchive()
    archive.track(served)
    for name, dtype in (("serve", tf.float32), ("serve_uint8", tf.uint8)):
        archive.add_endpoint(
            name, tf.function(serve),
            input_signature=[tf.TensorSpec([None, None, None, channels], dtype, name="images")])
    archive.write_out(str(path), verbose=verbose)
    return path

