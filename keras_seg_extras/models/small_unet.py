"""A small U-Net trained from scratch, for CPU demos, recipes on the sample data and tests.

Not a pretrained-encoder model: four levels of two 3x3 convolutions with BatchNorm and ReLU,
max-pool down, transposed-convolution up, skip concatenations. Input sizes must be
multiples of 2**(len(filters) - 1).
"""

import keras
from keras import layers

from keras_seg_extras._common import check_choice, check_number, fail


def _conv_block(x, filters, name):
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def small_unet(input_shape=(None, None, 3), classes=1, activation="sigmoid",
               filters=(16, 32, 64, 128), name="small_unet"):
    """Build a small U-Net.

    Args:
        input_shape: (H, W, channels); H and W may be None (fully convolutional).
        classes: number of output channels.
        activation: "sigmoid", "softmax" or None (logits).
        filters: filters per level, shallow to deep.
        name: model name.

    Returns:
        A ``keras.Model`` mapping (B, H, W, channels) to (B, H, W, classes).

    Example:
        >>> model = small_unet((64, 64, 1), classes=3, activation=None)
    """
    owner = "small_unet"
    check_number(owner, "classes", classes, minimum=1, integer=True)
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
    outputs = layers.Conv2D(classes, 1, name="head")(x)
    if activation is not None:
        outputs = layers.Activation(activation, dtype="float32", name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name=name)
