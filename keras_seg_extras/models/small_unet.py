"""A small U-Net trained from scratch, for CPU demos, recipes on the sample data and tests."""

import keras
from keras import layers

from keras_seg_extras._common import check_choice, check_number, fail, renamed_argument


def _conv_block(x, filters, name):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def small_unet(input_shape=(None, None, 3), num_classes=1, activation="sigmoid",
               filters=(16, 32, 64, 128), name="small_unet", classes=None):
    """Build a small U-Net trained from scratch (no pretrained encoder).

    The encoder-decoder of Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for
    Biomedical Image Segmentation" (MICCAI 2015), scaled down: per level two 3x3 convolutions
    with BatchNorm and ReLU, 2x2 max-pooling down, 2x2 transposed convolutions up, skip
    concatenations, a 1x1 head. Height and width must be multiples of
    ``2 ** (len(filters) - 1)``.

    Args:
        input_shape: (H, W, channels); H and W may be None (fully convolutional).
        num_classes: number of output channels.
        activation: "sigmoid", "softmax" or None (logits); computed in float32.
        filters: filters per level, shallow to deep (at least two levels).
        name: model name.
        classes: the former name of ``num_classes`` (deprecated).

    Returns:
        A ``keras.Model`` mapping (B, H, W, channels) to (B, H, W, num_classes).

    Example:
        >>> model = small_unet((64, 64, 1), num_classes=3, activation="softmax", filters=(4, 8))
        >>> model.output_shape
        (None, 64, 64, 3)
        >>> import numpy as np
        >>> probabilities = model(np.zeros((1, 64, 64, 1), "float32"))
        >>> round(float(np.asarray(probabilities).sum(-1).mean()), 4)
        1.0
    """
    owner = "small_unet"
    num_classes = renamed_argument(owner, "num_classes", num_classes, "classes", classes, 1)
    check_number(owner, "num_classes", num_classes, minimum=1, integer=True)
    check_choice(owner, "activation", activation, ("sigmoid", "softmax", None))
    if len(filters) < 2:
        fail(owner, "filters", filters, "must name at least two levels")
    factor = 2 ** (len(filters) - 1)
    for size in input_shape[:2]:
        if size is not None and size % factor:
            fail(owner, "input_shape", input_shape, f"must have H and W divisible by {factor}")
    inputs = keras.Input(input_shape, name="image")
    x, skips = inputs, []
    for level, f in enumerate(filters[:-1]):
        x = _conv_block(x, f, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(name=f"pool{level}")(x)
    x = _conv_block(x, filters[-1], "bottom")
    for level in reversed(range(len(filters) - 1)):
        x = layers.Conv2DTranspose(filters[level], 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"concat{level}")([x, skips[level]])
        x = _conv_block(x, filters[level], f"dec{level}")
    outputs = layers.Conv2D(num_classes, 1, name="head")(x)
    if activation is not None:
        outputs = layers.Activation(activation, dtype="float32", name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name=name)
