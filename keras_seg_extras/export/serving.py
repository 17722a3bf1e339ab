"""The serving graph every export format is made from (TensorFlow only).

One TensorFlow function, :func:`serving_function`, defines what an exported model does; the
SavedModel, ONNX and LiteRT writers all trace it, so every format serves the same graph:

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

It returns ``{"probabilities": float32 (B, H, W, K)}`` plus ``"mask": uint8 (B, H, W, K)`` =
probabilities > threshold when ``threshold`` is given.
"""

import keras
import numpy as np

from keras_seg_extras._common import OptionalModule, fail
from keras_seg_extras.inference.tta import with_tta

tf = OptionalModule("tensorflow", "tf")

#: Endpoint (SavedModel) and signature (LiteRT) name of each input dtype.
ENDPOINTS = {"float32": "serve", "uint8": "serve_uint8"}


def _tta_model(model, tta):
    """``model`` wrapped in test-time augmentation: None, a preset/tuple, or a dict of arguments."""
    if tta is None:
        return model
    if isinstance(tta, dict):
        return with_tta(model, **tta)
    return with_tta(model, tta)


def _check_servable(owner, model):
    """Raise unless ``model`` is a single-input, single-output image model of any H and W."""
    if keras.backend.backend() != "tensorflow":
        fail(owner, "model", getattr(model, "name", model),
             f"can be exported only under the TensorFlow backend (KERAS_BACKEND=tensorflow); "
             f"the backend is {keras.backend.backend()!r}")
    if not isinstance(model, keras.Model):
        fail(owner, "model", model, "must be a keras.Model")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        fail(owner, "model", model.name,
             f"must have one input and one output; it has {len(model.inputs)} input(s) and "
             f"{len(model.outputs)} output(s)")
    shape = model.input_shape
    if len(shape) != 4:
        fail(owner, "model", model.name,
             f"must take image batches (B, H, W, C); its input shape is {shape}")
    if shape[1] is not None or shape[2] is not None:
        fail(owner, "model", model.name,
             f"must accept any image size (input_shape=(None, None, C)) to serve padded images; "
             f"its input shape is {shape}. Rebuild it with None height and width and copy the "
             f"weights (model_any_size.set_weights(model.get_weights()))")
    if shape[3] is None:
        fail(owner, "model", model.name, "must have a known number of input channels")


def _input_spec(dtype, channels, image_size=None):
    """The ``images`` TensorSpec of one endpoint: (B, H, W, C), H and W dynamic or fixed."""
    height, width = (None, None) if image_size is None else image_size
    return tf.TensorSpec([None, height, width, channels], tf.as_dtype(dtype), name="images")


def serving_function(model, threshold=None, multiple=32, uint8_scale=1.0):
    """The TensorFlow function behind every export format (see the module docstring).

    Args:
        model: a single-input, single-output Keras model taking (B, H, W, C) images with any H, W
            that are multiples of ``multiple``.
        threshold: None, or the probability above which ``"mask"`` is 1.
        multiple: pad height and width to a multiple of this.
        uint8_scale: factor applied to uint8 inputs after the cast to float32.

    Returns:
        ``serve(images)``: images uint8 or float (B, H, W, C) -> dict of outputs.

    Example:
        >>> import keras
        >>> import tensorflow as tf
        >>> from keras_seg_extras.export import serving_function
        >>> inputs = keras.Input((None, None, 3))
        >>> model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
        >>> serve = serving_function(model, threshold=0.5)
        >>> out = serve(tf.zeros((2, 45, 33, 3)))  # padded to 64 x 64 inside, cropped back
        >>> out["probabilities"].shape, out["mask"].shape
        (TensorShape([2, 45, 33, 1]), TensorShape([2, 45, 33, 1]))
    """
    channels = model.input_shape[-1]

    @tf.function(reduce_retracing=True)
    def predict(x):
        # One traced graph of the model shared by the uint8 and the float endpoints.
        size = tf.shape(x)[1:3]
        padded = (size + multiple - 1) // multiple * multiple
        x = tf.pad(x, [[0, 0], [0, padded[0] - size[0]], [0, padded[1] - size[1]], [0, 0]])
        # The pad amounts are tensors, so converters lose the channel count (TFLite cannot
        # lower a convolution with unknown input channels); a reshape with a constant channel
        # entry restates it in the graph itself.
        x = tf.reshape(x, tf.stack([tf.shape(x)[0], padded[0], padded[1], channels]))
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


def _keras_reference(model, images, multiple=32):
    """What the exported graph must return, computed from the Keras model with NumPy padding.

    Zero-pads ``images`` (float32, already scaled) bottom/right to a multiple of ``multiple``,
    predicts with ``model`` in inference mode and crops back: independent of the TensorFlow
    graph above, so comparing an artifact with it checks that graph too.
    """
    height, width = images.shape[1:3]
    padded = np.zeros((images.shape[0], -(-height // multiple) * multiple,
                       -(-width // multiple) * multiple, images.shape[3]), np.float32)
    padded[:, :height, :width] = images
    return np.asarray(model(padded, training=False), np.float32)[:, :height, :width]
