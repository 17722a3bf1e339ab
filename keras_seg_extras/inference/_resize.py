"""Resizing helpers shared by the TTA layer and the ensemble layer (static or dynamic sizes).

Private to ``keras_seg_extras.inference``: the layers that use them are the public objects.
"""

import math

import keras
from keras import ops


def resize_images(x, size, interpolation="bilinear"):
    """Resize a (B, H, W, C) batch to ``size`` = (height, width), static or dynamic.

    ``keras.ops.image.resize`` needs Python integers; inside a TensorFlow graph with unknown
    image size (an exported serving signature) the size is a tensor, so the TensorFlow backend
    uses ``tf.image.resize`` (the same bilinear, half-pixel-centre kernel keras uses there).
    """
    height, width = size
    if isinstance(height, int) and isinstance(width, int):
        return ops.image.resize(x, (height, width), interpolation=interpolation)
    if keras.backend.backend() != "tensorflow":
        raise ValueError("resize_images: dynamic sizes need the TensorFlow backend; received "
                         f"size {size!r}.")
    import tensorflow as tf

    return tf.cast(tf.image.resize(x, tf.stack([height, width]), method=interpolation), x.dtype)


def image_size(x):
    """(height, width) of a (B, H, W, C) batch: Python ints where static, else scalar tensors."""
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        dynamic = ops.shape(x)
        height = dynamic[1] if height is None else height
        width = dynamic[2] if width is None else width
    return height, width


def scaled_size(size, scale, multiple=32):
    """``floor(size * scale / multiple + 1/2) * multiple`` (halves round up), at least
    ``multiple``; static (Python int) or dynamic (tensor) sizes."""
    if isinstance(size, int):
        return max(multiple, math.floor(size * scale / multiple + 0.5) * multiple)
    scaled = ops.cast(ops.floor(ops.cast(size, "float32") * scale / multiple + 0.5),
                      "int32") * multiple
    return ops.maximum(scaled, multiple)
