"""U-Net++ on a pretrained ``keras.applications`` encoder: the report's simplified decoder and
the full nested decoder of Zhou et al.

Paper 003 (SIIM-ACR pneumothorax, sections 3.2-3.3, Fig. 5 and the closing summary of the
architecture): "Unet++ Simplified with encoder EfficientNet B4 & Resnet decoder", LeakyReLU
activations in the decoder, input 512x512 (multiples of 32 because of the five halvings).
UNet++ itself: Zhou, Rahman Siddiquee, Tajbakhsh, Liang, "UNet++: A Nested U-Net Architecture
for Medical Image Segmentation" (DLMIA 2018), node X^{i,j} = H([X^{i,0}, ..., X^{i,j-1},
Up(X^{i+1,j-1})]).
"""

import math

import keras
from keras import layers

from keras_seg_extras._common import check_choice, check_number, fail, register
from keras_seg_extras.models.encoders import ENCODERS, build_encoder

_OWNER = "UNetPlusPlus"
_DEFAULT_DECODER_FILTERS = (256, 128, 64, 32, 16)
_MULTIPLE = 32


@register
class InputSizeCheck(layers.Layer):
    """Identity layer that checks that the image height and width are multiples of ``multiple``.

    With a static size (a fixed ``input_shape``, an eager call, ``model.predict`` tracing on a
    concrete batch) a wrong size raises ``ValueError`` naming it. When the size is only known at
    run time inside a TensorFlow graph (a SavedModel signature with ``None`` dimensions) the check
    becomes a ``tf.debugging`` assertion with the same message; other backends cannot raise from
    a traced function, so there only the static check runs (the encoder then fails on its own
    concatenation of mismatched skips).

    Args:
        multiple: the required divisor of height and width (32 for a five-level encoder).
        owner: the model named in the error message.
    """

    def __init__(self, multiple=_MULTIPLE, owner=_OWNER, **kwargs):
        super().__init__(**kwargs)
        self.multiple = check_number("InputSizeCheck", "multiple", multiple, minimum=1, integer=True)
        self.owner = owner
        self.supports_masking = True

    def _message(self, size):
        return (f"{self.owner}: the input height and width must be multiples of {self.multiple} "
                f"(five halvings in the encoder); received an image of size {size} (H x W). "
                f"Resize or pad the image (kse.export_saved_model pads and crops automatically).")

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is not None and width is not None:
            if height % self.multiple or width % self.multiple:
                raise ValueError(self._message(f"{height}x{width}"))
            return inputs
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if not tf.executing_eagerly():
                size = tf.shape(inputs)[1:3]
                check = tf.debugging.Assert(
                    tf.reduce_all(tf.equal(size % self.multiple, 0)),
                    [self._message("H x W ="), size])
                with tf.control_dependencies([check]):
                    return tf.identity(inputs)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "owner": self.owner}


def _normalization(kind, filters, name):
    if kind == "batch":
        return layers.BatchNormalization(name=name)
    return layers.GroupNormalization(groups=math.gcd(filters, 32), name=name)


def _residual_block(x, filters, normalization, name):
    """Pre-activation residual block: x + conv(act(norm(conv(act(norm(x)))))), LeakyReLU(0.1)."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_shortcut")(x)
    y = x
    for i in (1, 2):
        y = _normalization(normalization, y.shape[-1], f"{name}_norm{i}")(y)
        y = layers.LeakyReLU(negative_slope=0.1, name=f"{name}_act{i}")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def _decoder_node(inputs, filters, normalization, dropout, name, residual_blocks=1):
    """The elementary block (the report's blue arrow) on the concatenation of its inputs:
    dropout -> 3x3 conv -> residual block(s) -> norm -> LeakyReLU(0.1)."""
    x = inputs[0] if len(inputs) == 1 else layers.Concatenate(name=f"{name}_concat")(inputs)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    for r in range(residual_blocks):
        x = _residual_block(x, filters, normalization, f"{name}_res{r + 1}")
    x = _normalization(normalization, filters, f"{name}_norm")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"{name}_act")(x)


def _up(x, filters, name):
    """Transposed 3x3 convolution with stride 2 (the report's "up convolution")."""
    return layers.Conv2DTranspose(filters, 3, strides=2, padding="same", name=name)(x)


def _simplified_decoder(skips, filters, normalization, dropout):
    """Paper 003, section 3.3 and Fig. 5 (after Siddhartha's Kaggle kernel).

    Strides 32 -> 16 -> 8 -> 4 -> 2 -> 1. At each decoder level the node sees the up-convolved
    output of the level below, the encoder skip, and the "hyper" paths: the up-convolution
    output of every deeper level, up-convolved again (only that up-convolution output, the
    report's blue activation, travels along those paths) until it reaches this level.
    """
    center = _decoder_node([skips[4]], 2 * filters[0], normalization, dropout, "center",
                           residual_blocks=2)
    x = center
    hyper = []  # per deeper level: its up-convolution output, carried to the current stride
    for level, stride in enumerate((16, 8, 4, 2)):
        up = _up(x, filters[level], f"decoder_s{stride}_up")
        hyper = [_up(h, filters[k], f"decoder_s{stride}_hyper_from_s{16 // 2 ** k}")
                 for k, h in enumerate(hyper)]
        x = _decoder_node([up, *hyper, skips[3 - level]], filters[level], normalization,
                          dropout, f"decoder_s{stride}")
        hyper.append(up)
    up = _up(x, filters[4], "decoder_s1_up")
    return _decoder_node([up], filters[4], normalization, dropout, "decoder_s1")


def _nested_decoder(skips, filters, normalization, dropout):
    """Zhou et al.'s UNet++: X^{i,j} = H([X^{i,0..j-1}, Up(X^{i+1,j-1})]).

    Level i = 0..4 sits at stride 2^(i+1); X^{i,0} are the encoder skips. Nodes of level i use
    ``filters[3 - i]``. Returns the final full-resolution features and the nodes X^{0,1..4}.
    """
    nodes = {(i, 0): skips[i] for i in range(5)}
    for j in range(1, 5):
        for i in range(0, 5 - j):
            name = f"decoder_x{i}{j}"
            up = _up(nodes[(i + 1, j - 1)], filters[3 - i], f"{name}_up")
            inputs = [nodes[(i, k)] for k in range(j)] + [up]
            nodes[(i, j)] = _decoder_node(inputs, filters[3 - i], normalization, dropout, name)
    top = [nodes[(0, j)] for j in range(1, 5)]
    up = _up(top[-1], filters[4], "decoder_s1_up")
    return _decoder_node([up], filters[4], normalization, dropout, "decoder_s1"), top


def _head(x, classes, activation, name, upsample=1):
    x = layers.Conv2D(classes, 1, name=f"{name}_conv")(x)
    if upsample > 1:
        x = layers.UpSampling2D(upsample, interpolation="bilinear", name=f"{name}_upsample")(x)
    return layers.Activation(activation or "linear", dtype="float32", name=name)(x)


def UNetPlusPlus(encoder="efficientnet_b4", input_shape=(None, None, 3), classes=1,
                 activation="sigmoid", decoder="simplified", encoder_weights=None,
                 decoder_filters=None, dropout=0.1, normalization="batch",
                 deep_supervision=False, name=None):
    """U-Net++ with a pretrained-family encoder (paper 003, section 3.3; Zhou et al. 2018).

    ``decoder="simplified"`` is the report's "Simpler U-net++" (Fig. 5): a U-Net decoder whose
    levels also receive the up-convolutions of every deeper level (only the deeper, semantically
    rich outputs are carried up; the dense same-level skips of UNet++ are dropped), with
    residual decoder blocks, BatchNorm (or GroupNorm) and LeakyReLU(0.1), dropout on every
    concatenation. ``decoder="nested"`` is the full UNet++: node
    ``X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, Up(X^{i+1,j-1})])`` with the same elementary block
    ``H``, and optional deep supervision.

    Input: RGB float images in [0, 255] (both encoder families normalise inside the model),
    height and width multiples of 32. A fixed ``input_shape`` that is not is rejected at
    construction; with ``None`` dimensions the size is checked when the model is called (a
    ``ValueError`` in eager calls and ``fit``/``predict``, a runtime assertion inside a
    TensorFlow graph whose size is dynamic).

    Args:
        encoder: a name of ``keras_seg_extras.models.encoders.ENCODERS``: "efficientnet_b0" to
            "efficientnet_b7" or "resnet50".
        input_shape: (H, W, channels); H and W None or multiples of 32.
        classes: output channels.
        activation: "sigmoid", "softmax" or None (logits). The output layer computes in float32.
        decoder: "simplified" (the report's) or "nested" (Zhou et al.).
        encoder_weights: None, a local weights file of the keras.applications encoder, or
            "imagenet" (keras' cached file in $KERAS_HOME/models; never downloaded).
        decoder_filters: five filter counts for the decoder outputs at strides 16, 8, 4, 2 and
            1; default (256, 128, 64, 32, 16). The simplified decoder's centre block (stride 32)
            uses twice the first.
        dropout: dropout rate on each decoder concatenation, in [0, 1).
        normalization: "batch", or "group" (GroupNorm with gcd(filters, 32) groups) for the
            small batches of high resolutions (paper 003, 4.1.3). The encoder keeps its own
            BatchNorm layers.
        deep_supervision: only with ``decoder="nested"``: the model returns a list of four
            outputs, the heads on X^{0,1}, X^{0,2}, X^{0,3} (1x1 convolution at stride 2,
            bilinear upsampling) and the main output last; train with one loss per output.
        name: model name (default "unet_plus_plus_<decoder>_<encoder>").

    Returns:
        A ``keras.Model`` mapping (B, H, W, channels) to (B, H, W, classes).

    Example:
        >>> model = UNetPlusPlus("efficientnet_b0", (64, 64, 3), decoder_filters=(32, 16, 8, 8, 8))
        >>> model.output_shape
        (None, 64, 64, 1)
    """
    check_choice(_OWNER, "encoder", encoder, tuple(ENCODERS))
    check_choice(_OWNER, "decoder", decoder, ("simplified", "nested"))
    check_choice(_OWNER, "activation", activation, ("sigmoid", "softmax", None))
    check_choice(_OWNER, "normalization", normalization, ("batch", "group"))
    check_number(_OWNER, "classes", classes, minimum=1, integer=True)
    dropout = check_number(_OWNER, "dropout", dropout, minimum=0.0, maximum=1.0,
                           max_inclusive=False)
    if not isinstance(deep_supervision, bool):
        fail(_OWNER, "deep_supervision", deep_supervision, "must be True or False")
    if deep_supervision and decoder != "nested":
        fail(_OWNER, "deep_supervision", deep_supervision,
             "is only available with decoder='nested'")
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        fail(_OWNER, "input_shape", input_shape, "must be a tuple (H, W, channels)")
    if len(input_shape) != 3:
        fail(_OWNER, "input_shape", input_shape, "must be a tuple (H, W, channels)")
    for size in input_shape[:2]:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or size <= 0 or size % _MULTIPLE):
            fail(_OWNER, "input_shape", input_shape,
                 f"must have H and W None or positive multiples of {_MULTIPLE} "
                 f"(received size {input_shape[0]}x{input_shape[1]})")
    filters = _DEFAULT_DECODER_FILTERS if decoder_filters is None else decoder_filters
    try:
        filters = tuple(filters)
    except TypeError:
        fail(_OWNER, "decoder_filters", decoder_filters, "must be five positive integers")
    if len(filters) != 5 or any(isinstance(f, bool) or not isinstance(f, int) or f <= 0
                                for f in filters):
        fail(_OWNER, "decoder_filters", decoder_filters, "must be five positive integers")

    inputs = keras.Input(input_shape, name="image")
    checked = InputSizeCheck(_MULTIPLE, _OWNER, name="input_size_check")(inputs)
    skips = build_encoder(encoder, checked, encoder_weights, owner=_OWNER)
    final_name = "probabilities" if activation else "logits"
    if decoder == "simplified":
        features = _simplified_decoder(skips, filters, normalization, dropout)
        outputs = _head(features, classes, activation, final_name)
    else:
        features, top = _nested_decoder(skips, filters, normalization, dropout)
        outputs = _head(features, classes, activation, final_name)
        if deep_supervision:
            outputs = [_head(top[j], classes, activation, f"deep_supervision_{j + 1}", upsample=2)
                       for j in range(3)] + [outputs]
    return keras.Model(inputs, outputs, name=name or f"unet_plus_plus_{decoder}_{encoder}")

