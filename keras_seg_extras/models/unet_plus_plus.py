"""U-Net++ on a pretrained ``keras.applications`` encoder: the simplified decoder of the SIIM
report (Fig. 5) and the full nested decoder of Zhou et al., with an optional multi-label
classification head and rematerialisation.

- "SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition (2019),
  section 3.3 and Fig. 5 (described layer by layer in ``shared/papers/003_figure5.md``):
  "Unet++ Simplified with encoder EfficientNet B4 & Resnet decoder", LeakyReLU(0.1) in the
  decoder, inputs that are multiples of 32; section 4.1.3 for GroupNorm and checkpointing.
- Zhou, Rahman Siddiquee, Tajbakhsh and Liang, "UNet++: A Nested U-Net Architecture for
  Medical Image Segmentation" (DLMIA 2018): node X^{i,j} = H([X^{i,0}, ..., X^{i,j-1},
  Up(X^{i+1,j-1})]).
- "1st Place Solution for YouTubeVOS Challenge 2021: Video Instance Segmentation", technical
  report (2021), section 3.5.1: the multi-label classification sub-network.
"""

import copy
import inspect
import math
import numbers

import keras
from keras import layers

from keras_seg_extras._common import (check_choice, check_flag, check_number, fail, register,
                                      renamed_argument)
from keras_seg_extras.models.encoders import ENCODERS, build_encoder

_OWNER = "UNetPlusPlus"
_MULTIPLE = 32
_SLOPE = 0.1  # LeakyReLU negative slope everywhere in both decoders

#: Fig. 5: start width s = 8; outputs at strides 16, 8, 4, 2, 1 are 16s, 8s, 4s, 2s, s wide
#: and the centre (stride 32) 32s, twice the first.
_FIG5_DECODER_FILTERS = (128, 64, 32, 16, 8)
#: Fig. 5's dropout rate r (the author's notebook: 0.5), and the fixed rate of the shallow levels.
_FIG5_DROPOUT = 0.5
_SHALLOW_DROPOUT = 0.1
#: Where the simplified decoder's centre reads from: Fig. 5 pools the stride-16 features
#: (LeakyReLU, MaxPool 2, Dropout); "stride32" reads the encoder's stride-32 output instead.
_CENTER_INPUTS = ("pooled_stride16", "stride32")
#: The places of the simplified decoder's seven dropout rates, in the order a tuple gives them.
DROPOUT_PLACES = ("center", "s16", "s8", "s4", "s2", "s1", "head")

#: Dropout before the classification head's dense layer (keras.applications' EfficientNet-B0 top).
_CLASSIFICATION_DROPOUT = 0.2

_NESTED_DECODER_FILTERS = (256, 128, 64, 32, 16)
_NESTED_DROPOUT = 0.1


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

    Example:
        >>> import numpy as np
        >>> check = InputSizeCheck(32, owner="MyModel")
        >>> tuple(check(np.zeros((1, 64, 96, 3), "float32")).shape)
        (1, 64, 96, 3)
        >>> try:
        ...     check(np.zeros((1, 64, 80, 3), "float32"))
        ... except ValueError as error:
        ...     print("MyModel" in str(error), "multiples of 32" in str(error), "64x80" in str(error))
        True True True
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


def _leaky(name):
    return layers.LeakyReLU(negative_slope=_SLOPE, name=name)


def _conv3x3(filters, name, use_bias=False):
    return layers.Conv2D(filters, 3, padding="same", use_bias=use_bias, name=name)


def _up(x, filters, name):
    """Transposed 3x3 convolution with stride 2 (the report's "up convolution")."""
    return layers.Conv2DTranspose(filters, 3, strides=2, padding="same", name=name)(x)


def _concat(inputs, name):
    return inputs[0] if len(inputs) == 1 else layers.Concatenate(name=f"{name}_concat")(inputs)


# ----------------------------------------------------------------------------- Fig. 5 blocks


def _fig5_residual_block(x, normalization, name):
    """Fig. 5's residual block on x (f channels): norm(x) + [LeakyReLU -> norm -> conv + norm +
    LeakyReLU -> conv + norm](x). The convolutions feed a norm directly, so they carry no bias
    (the norm's offset replaces it exactly); the figure draws the join as a concatenation, the
    author's notebook adds."""
    filters = x.shape[-1]
    shortcut = _normalization(normalization, filters, f"{name}_shortcut_norm")(x)
    y = _leaky(f"{name}_act0")(x)
    y = _normalization(normalization, filters, f"{name}_norm0")(y)
    y = _conv3x3(filters, f"{name}_conv1")(y)
    y = _normalization(normalization, filters, f"{name}_norm1")(y)
    y = _leaky(f"{name}_act1")(y)
    y = _conv3x3(filters, f"{name}_conv2")(y)
    y = _normalization(normalization, filters, f"{name}_norm2")(y)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def _fig5_elementary_block(inputs, filters, normalization, dropout, name, residual_blocks=1):
    """Fig. 5's elementary block on the concatenation of ``inputs``: Dropout -> 3x3 conv (with
    bias: a LeakyReLU reads it before any norm) -> residual block(s) -> LeakyReLU(0.1)."""
    x = _concat(inputs, name)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = _conv3x3(filters, f"{name}_conv", use_bias=True)(x)
    for r in range(residual_blocks):
        x = _fig5_residual_block(x, normalization, f"{name}_res{r + 1}")
    return _leaky(f"{name}_act")(x)


def _simplified_decoder(skips, filters, center_input, rates, normalization):
    """The SIIM-ACR work report (2019), section 3.3 and Fig. 5 (after Siddhartha's Kaggle kernel).

    Centre at stride 32, then levels at strides 16, 8, 4, 2 and 1. A level's node sees the
    up-convolved output of the level below, the encoder skip, and the "hyper" paths: the
    up-convolution output of every deeper level, up-convolved again (only that output, the
    report's blue activation, travels along those paths) until it reaches this level.
    ``rates`` holds the seven dropout rates of ``DROPOUT_PLACES``.
    """
    rate = dict(zip(DROPOUT_PLACES, rates))
    stride16 = skips[3]
    if center_input == "pooled_stride16":  # Fig. 5's red arrow; the stride-32 encoder is unused
        stride16 = _leaky("center_input_act")(stride16)
        source = layers.MaxPooling2D(2, name="center_input_pool")(stride16)
    else:
        source = skips[4]
    x = _fig5_elementary_block([source], 2 * filters[0], normalization, rate["center"],
                               "center", residual_blocks=2)
    level_skips = (stride16, skips[2], skips[1], skips[0])
    hyper = []  # per deeper level: its up-convolution output, carried to the current stride
    for level, stride in enumerate((16, 8, 4, 2)):
        up = _up(x, filters[level], f"decoder_s{stride}_up")
        hyper = [_up(h, filters[k], f"decoder_s{stride}_hyper_from_s{16 // 2 ** k}")
                 for k, h in enumerate(hyper)]
        x = _fig5_elementary_block([up, *hyper, level_skips[level]], filters[level],
                                   normalization, rate[f"s{stride}"], f"decoder_s{stride}")
        hyper.append(up)
    up = _up(x, filters[4], "decoder_s1_up")
    x = _fig5_elementary_block([up], filters[4], normalization, rate["s1"], "decoder_s1")
    if rate["head"]:
        x = layers.Dropout(rate["head"], name="head_dropout")(x)
    return x


# ----------------------------------------------------------------------------- nested blocks


def _preactivation_residual_block(x, filters, normalization, name):
    """x + conv(act(norm(conv(act(norm(x)))))), LeakyReLU(0.1) (the nested decoder's block)."""
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_shortcut")(x)
    y = x
    for i in (1, 2):
        y = _normalization(normalization, y.shape[-1], f"{name}_norm{i}")(y)
        y = _leaky(f"{name}_act{i}")(y)
        y = _conv3x3(filters, f"{name}_conv{i}")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def _nested_node(inputs, filters, normalization, dropout, name):
    """Zhou et al.'s H: dropout -> 3x3 conv -> pre-activation residual block -> norm ->
    LeakyReLU(0.1), on the concatenation of ``inputs``."""
    x = _concat(inputs, name)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = _conv3x3(filters, f"{name}_conv")(x)
    x = _preactivation_residual_block(x, filters, normalization, f"{name}_res1")
    x = _normalization(normalization, filters, f"{name}_norm")(x)
    return _leaky(f"{name}_act")(x)


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
            nodes[(i, j)] = _nested_node(inputs, filters[3 - i], normalization, dropout, name)
    top = [nodes[(0, j)] for j in range(1, 5)]
    up = _up(top[-1], filters[4], "decoder_s1_up")
    return _nested_node([up], filters[4], normalization, dropout, "decoder_s1"), top


def _head(x, num_classes, activation, name, upsample=1):
    x = layers.Conv2D(num_classes, 1, name=f"{name}_conv")(x)
    if upsample > 1:
        x = layers.UpSampling2D(upsample, interpolation="bilinear", name=f"{name}_upsample")(x)
    return layers.Activation(activation or "linear", dtype="float32", name=name)(x)


def _classification_head(features, num_labels):
    """The multi-label classification sub-network (YouTubeVOS 2021 report, 3.5.1): global
    average pooling of the deepest encoder features -> Dropout -> Dense, K float32 logits."""
    x = layers.GlobalAveragePooling2D(name="classification_pool")(features)
    x = layers.Dropout(_CLASSIFICATION_DROPOUT, name="classification_dropout")(x)
    x = layers.Dense(num_labels, name="classification_logits")(x)
    return layers.Activation("linear", dtype="float32", name="classification")(x)


def _rematerialisable(model_layers):
    """Names of the layers that ``remat=True`` rematerialises: those whose call is a pure
    function of its inputs (no ``training`` argument, no non-trainable state), so that
    recomputing it in the backward pass gives the forward's values. Keras' ``RematScope``
    (3.15) would otherwise recompute Dropout with a new mask (wrong gradients), update
    BatchNorm statistics twice, and fail under JAX and in TensorFlow graphs on the
    ``training`` argument. Layers are chosen by name in a second build, so the few that
    keras names by a counter (EfficientNet's input ``rescaling``) are left out."""
    return [layer.name for layer in model_layers
            if not isinstance(layer, layers.InputLayer) and not layer.non_trainable_weights
            and "training" not in inspect.signature(layer.call).parameters]


@register
class _RematModel(keras.Model):
    """The functional model of ``UNetPlusPlus(remat=True)``: its pure layers rematerialise,
    and a loaded ``.keras`` file rebuilds them so (Keras saves no layer's remat mode)."""

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Built twice, as by UNetPlusPlus; from_config consumes its config, hence the copies.
        plain = keras.Model.from_config(copy.deepcopy(config), custom_objects=custom_objects)
        names = _rematerialisable(plain.layers)
        with keras.RematScope(mode="list_of_layers", layer_names=names):
            graph = keras.Model.from_config(copy.deepcopy(config),
                                            custom_objects=custom_objects)
        return cls(graph.input, graph.output, name=graph.name)


# ----------------------------------------------------------------------------- arguments


def fig5_dropout_rates(rate=_FIG5_DROPOUT):
    """Fig. 5's placement of a dropout rate r, in the order of :data:`DROPOUT_PLACES`.

    The SIIM report's Fig. 5 ("SIIM-ACR Pneumothorax Segmentation", work report, 2019) puts r
    on the centre and the stride-16 and stride-8 levels, 0.1 on the stride-4, 2 and 1 levels
    and r / 2 before the head; its author's notebook uses r = 0.5.

    Args:
        rate: r, in [0, 1).

    Returns:
        Seven rates for (centre, s16, s8, s4, s2, s1, head), the ``dropout`` argument of
        :func:`UNetPlusPlus`.

    Example:
        >>> fig5_dropout_rates(0.4)
        (0.4, 0.4, 0.4, 0.1, 0.1, 0.1, 0.2)
    """
    return (rate, rate, rate, _SHALLOW_DROPOUT, _SHALLOW_DROPOUT, _SHALLOW_DROPOUT, rate / 2)


def _check_rate(argument, value):
    return check_number(_OWNER, argument, value, minimum=0.0, maximum=1.0, max_inclusive=False)


def _dropout_rates(decoder, dropout):
    """The simplified decoder's seven rates, or the nested decoder's one rate."""
    if decoder == "nested":
        return _NESTED_DROPOUT if dropout is None else _check_rate("dropout", dropout)
    if dropout is None:
        return fig5_dropout_rates()
    if isinstance(dropout, numbers.Real) and not isinstance(dropout, bool):
        return fig5_dropout_rates(_check_rate("dropout", dropout))
    expectation = (f"must be a rate r in [0, 1) (Fig. 5's placement) or {len(DROPOUT_PLACES)} "
                   f"rates for {', '.join(DROPOUT_PLACES)}")
    if not isinstance(dropout, (tuple, list)) or len(dropout) != len(DROPOUT_PLACES):
        fail(_OWNER, "dropout", dropout, expectation)
    return tuple(_check_rate("dropout", rate) for rate in dropout)


def _decoder_filters(decoder, decoder_filters):
    if decoder_filters is None:
        return _FIG5_DECODER_FILTERS if decoder == "simplified" else _NESTED_DECODER_FILTERS
    try:
        filters = tuple(decoder_filters)
    except TypeError:
        fail(_OWNER, "decoder_filters", decoder_filters, "must be five positive integers")
    if len(filters) != 5 or any(isinstance(f, bool) or not isinstance(f, numbers.Integral)
                                or f <= 0 for f in filters):
        fail(_OWNER, "decoder_filters", decoder_filters, "must be five positive integers")
    return tuple(int(f) for f in filters)


def _input_shape(input_shape):
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
    return input_shape


def _graph(inputs, encoder, encoder_weights, decoder, filters, center_input, rates,
           normalization, num_classes, activation, deep_supervision, classification_head):
    """The layers of ``UNetPlusPlus`` on ``inputs``; returns its output or dict of outputs."""
    checked = InputSizeCheck(_MULTIPLE, _OWNER, name="input_size_check")(inputs)
    skips = build_encoder(encoder, checked, encoder_weights, owner=_OWNER)
    final_name = "probabilities" if activation else "logits"
    if decoder == "simplified":
        features = _simplified_decoder(skips, filters, center_input, rates, normalization)
        outputs = [_head(features, num_classes, activation, final_name)]
    else:
        features, top = _nested_decoder(skips, filters, normalization, rates)
        outputs = [_head(features, num_classes, activation, final_name)]
        if deep_supervision:
            outputs = [_head(top[j], num_classes, activation, f"deep_supervision_{j + 1}",
                             upsample=2) for j in range(3)] + outputs
    if classification_head is None:
        return outputs[0] if len(outputs) == 1 else outputs
    deepest = skips[3] if decoder == "simplified" and center_input == "pooled_stride16" \
        else skips[4]
    named = {f"deep_supervision_{j + 1}": out for j, out in enumerate(outputs[:-1])}
    return {**named, "mask": outputs[-1],
            "classification": _classification_head(deepest, classification_head)}


def UNetPlusPlus(encoder="efficientnet_b4", input_shape=(None, None, 3), num_classes=1,
                 activation="sigmoid", decoder="simplified", encoder_weights=None,
                 decoder_filters=None, dropout=None, normalization="batch",
                 deep_supervision=False, center_input=None, classification_head=None,
                 remat=False, name=None, classes=None):
    """U-Net++ on a ``keras.applications`` encoder: the simplified decoder of the SIIM report
    (Fig. 5) or the nested decoder of Zhou et al., optionally with a classification head.

    ``decoder="simplified"`` (default) is the "Simpler U-net++" of "SIIM-ACR Pneumothorax
    Segmentation", work report of SIIM's Kaggle competition (2019), section 3.3 and Fig. 5,
    layer by layer: the centre pools the stride-16 features (LeakyReLU(0.1), MaxPool 2,
    Dropout) into an elementary block with two residual blocks; levels at strides 16, 8, 4, 2
    concatenate the up-convolved level below, the up-convolutions of every deeper level
    carried up ("hyper" paths) and the encoder skip; a last level at stride 1, Dropout and a
    1x1 head. Elementary block: Dropout -> 3x3 conv -> residual block -> LeakyReLU(0.1);
    residual block: ``norm(x) + conv_norm(leaky(conv_norm(norm(leaky(x)))))``. The default
    widths (128, 64, 32, 16, 8, centre 256) and dropout (r = 0.5) are the author's; with
    EfficientNet-B4 the model has 11.5 M parameters and the encoder's stride-32 stages are not
    part of it. The earlier, wider variant (levels 256..16, centre 512 on the stride-32 top,
    dropout 0.1) is ``decoder_filters=(256, 128, 64, 32, 16), center_input="stride32",
    dropout=(0.1,) * 6 + (0.0,)``.

    ``decoder="nested"`` is the full UNet++ of Zhou, Rahman Siddiquee, Tajbakhsh and Liang,
    "UNet++: A Nested U-Net Architecture for Medical Image Segmentation" (DLMIA 2018): node
    ``X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, Up(X^{i+1,j-1})])`` over all five encoder levels,
    ``H`` = Dropout -> 3x3 conv -> pre-activation residual block -> norm -> LeakyReLU(0.1),
    default widths (256, 128, 64, 32, 16), dropout 0.1 on every node, optional deep
    supervision.

    ``classification_head=K`` adds the multi-label classification sub-network of "1st Place
    Solution for YouTubeVOS Challenge 2021: Video Instance Segmentation", technical report
    (2021), section 3.5.1: the deepest encoder features the model holds feed
    ``GlobalAveragePooling -> Dropout(0.2) -> Dense(K)``, a second output of K logits trained
    with binary cross-entropy next to the segmentation. The model then returns a dict
    ``{"mask": (B, H, W, num_classes), "classification": (B, K)}`` (plus the deep-supervision
    heads ``"deep_supervision_1"`` ... ``"_3"``), so ``compile(loss={"mask": ...,
    "classification": keras.losses.BinaryCrossentropy(from_logits=True)})`` takes one loss per
    output. The deepest features are the stride-16 ones (``block6a_expand_activation``) for
    the default Fig. 5 model, whose encoder stops there, and the stride-32 ones (C5,
    ``top_activation``) with ``center_input="stride32"`` or the nested decoder.

    Input: RGB float images in [0, 255] (both encoder families normalise inside the model),
    height and width multiples of 32. A fixed ``input_shape`` that is not is rejected at
    construction; with ``None`` dimensions the size is checked when the model is called (a
    ``ValueError`` in eager calls and ``fit``/``predict``, a runtime assertion inside a
    TensorFlow graph whose size is dynamic).

    Args:
        encoder: a name of :data:`~keras_seg_extras.models.ENCODERS`: "efficientnet_b0" to
            "efficientnet_b7" or "resnet50".
        input_shape: (H, W, channels); H and W None or multiples of 32.
        num_classes: output channels of the mask.
        activation: "sigmoid", "softmax" or None (logits) of the mask. The output layers
            compute in float32.
        decoder: "simplified" (the report's Fig. 5) or "nested" (Zhou et al.).
        encoder_weights: None, a local weights file of the keras.applications encoder, or
            "imagenet" (keras' cached file in $KERAS_HOME/models; never downloaded).
        decoder_filters: five widths of the decoder outputs at strides 16, 8, 4, 2 and 1; the
            simplified decoder's centre (stride 32) is twice the first. None: (128, 64, 32, 16,
            8) for "simplified" (Fig. 5, start width 8), (256, 128, 64, 32, 16) for "nested".
        dropout: "simplified": a rate r in [0, 1) placed as Fig. 5 does (r on the centre and
            the stride-16 and stride-8 levels, 0.1 on the stride-4, 2 and 1 levels, r / 2
            before the head; :func:`fig5_dropout_rates`), or seven rates for
            :data:`DROPOUT_PLACES` (centre, s16, s8, s4, s2, s1, head); None: r = 0.5.
            "nested": one rate for every node; None: 0.1.
        normalization: "batch", or "group" (GroupNorm of Wu and He, "Group Normalization",
            ECCV 2018, with gcd(filters, 32) groups) for the small batches of high
            resolutions (SIIM report, 4.1.3). The encoder keeps its own BatchNorm layers.
        deep_supervision: only with ``decoder="nested"``: the model returns a list of four
            outputs, the heads on X^{0,1}, X^{0,2}, X^{0,3} (1x1 convolution at stride 2,
            bilinear upsampling) and the main output last; train with one loss per output.
        center_input: only with ``decoder="simplified"``: "pooled_stride16" (None, Fig. 5:
            LeakyReLU(0.1) and MaxPool 2 on the stride-16 features, whose LeakyReLU output is
            also the stride-16 skip) or "stride32" (the encoder's stride-32 output, raw skips).
        classification_head: None (one output), or the number K of labels of the
            classification head (see above).
        remat: True: every encoder and decoder layer is built inside
            ``keras.RematScope(mode="full")`` (gradient checkpointing of Chen, Xu, Zhang and
            Guestrin, "Training Deep Nets with Sublinear Memory Cost", arXiv 2016): training
            recomputes each layer's internal activations in the backward pass instead of
            keeping them. Same outputs and gradients; what it saves and costs:
            docs/benchmarks.md. Kept by ``.keras`` save and load.
        name: model name (default "unet_plus_plus_<decoder>_<encoder>").
        classes: the former name of ``num_classes`` (deprecated).

    Returns:
        A ``keras.Model`` mapping (B, H, W, channels) to (B, H, W, num_classes), or to the dict
        of outputs described above.

    Example:
        >>> model = UNetPlusPlus("efficientnet_b0", (64, 64, 3), classification_head=4)
        >>> {key: tuple(value.shape) for key, value in model.output.items()}
        {'mask': (None, 64, 64, 1), 'classification': (None, 4)}
        >>> model.get_layer("center_conv").filters, model.get_layer("decoder_s1_conv").filters
        (256, 8)
        >>> model.compile(optimizer="adam", loss={
        ...     "mask": "binary_crossentropy",
        ...     "classification": keras.losses.BinaryCrossentropy(from_logits=True)})

        Without ``classification_head`` the model has the single mask output, (None, 64, 64, 1).
    """
    num_classes = renamed_argument(_OWNER, "num_classes", num_classes, "classes", classes, 1)
    check_choice(_OWNER, "encoder", encoder, tuple(ENCODERS))
    check_choice(_OWNER, "decoder", decoder, ("simplified", "nested"))
    check_choice(_OWNER, "activation", activation, ("sigmoid", "softmax", None))
    check_choice(_OWNER, "normalization", normalization, ("batch", "group"))
    check_number(_OWNER, "num_classes", num_classes, minimum=1, integer=True)
    if classification_head is not None:
        check_number(_OWNER, "classification_head", classification_head, minimum=1,
                     integer=True)
    check_flag(_OWNER, "remat", remat)
    check_flag(_OWNER, "deep_supervision", deep_supervision)
    if deep_supervision and decoder != "nested":
        fail(_OWNER, "deep_supervision", deep_supervision,
             "is only available with decoder='nested'")
    if decoder == "nested" and center_input is not None:
        fail(_OWNER, "center_input", center_input, "is only available with decoder='simplified'")
    center_input = check_choice(_OWNER, "center_input", center_input or _CENTER_INPUTS[0],
                                _CENTER_INPUTS)
    input_shape = _input_shape(input_shape)
    filters = _decoder_filters(decoder, decoder_filters)
    rates = _dropout_rates(decoder, dropout)

    def graph(remat_scope):
        inputs = keras.Input(input_shape, name="image")
        with remat_scope:
            return inputs, _graph(inputs, encoder, encoder_weights, decoder, filters, center_input,
                                  rates, normalization, num_classes, activation, deep_supervision,
                                  classification_head)

    inputs, outputs = graph(keras.RematScope(mode=None))
    if remat:  # built again, knowing which of its layers are safe to rematerialise
        names = _rematerialisable(keras.Model(inputs, outputs).layers)
        inputs, outputs = graph(keras.RematScope(mode="list_of_layers", layer_names=names))
    model_class = _RematModel if remat else keras.Model
    return model_class(inputs, outputs, name=name or f"unet_plus_plus_{decoder}_{encoder}")
