"""Pretrained encoders from ``keras.applications`` and the layers that feed a U-Net decoder.

The one table of the package: for each encoder name, the ``keras.applications`` constructor
and the names of the layers whose outputs are the skip features at strides 2, 4, 8, 16 and 32.
The names were read off the built models (keras 3.15): ``tests/models/test_encoders.py`` builds
EfficientNet-B0 and ResNet50 and checks every skip's stride, the slow test of
``test_unet_plus_plus.py`` EfficientNet-B4, and ``tools/bench/unetpp.py --encoder-table``
builds every entry (its table, with channels, is in docs/models.md).

For EfficientNet (the SIIM report's encoder: "SIIM-ACR Pneumothorax Segmentation", work report
of SIIM's Kaggle competition (2019), section 3.3 and Fig. 5, EfficientNet-B4) the skips are the
expand activations of the first block of each stage that halves the resolution (block2a,
block3a, block4a, block6a: the widest activation at each stride, the same names in B0-B7) and
the final ``top_activation``. For ResNet50 they are the stem ReLU and the last block output of
stages 2 to 5. The default (Fig. 5) decoder of ``UNetPlusPlus`` uses the first four and pools
its centre from the stride-16 one, so the stride-32 stages (EfficientNet from
``block6a_dwconv`` on, ResNet50's ``conv5_*``) are not part of that model; the stride-32 skip
serves the nested decoder and ``center_input="stride32"``.

Input convention: every encoder built here takes RGB images with values in [0, 255]
(float). EfficientNet normalises inside the model (keras' own Rescaling + Normalization
layers); ResNet50 gets a :class:`CaffePreprocessing` layer (RGB -> BGR, ImageNet mean
subtracted) so that both families share one convention.
"""

import os

import keras
from keras import layers, ops

from keras_seg_extras._common import check_choice, fail, register

_EFFICIENTNET_SKIPS = ("block2a_expand_activation", "block3a_expand_activation",
                       "block4a_expand_activation", "block6a_expand_activation",
                       "top_activation")

#: encoder name -> (keras.applications constructor name, skip layer names at strides 2..32,
#: preprocessing needed before the encoder: None or "caffe").
ENCODERS = {
    **{f"efficientnet_b{i}": (f"EfficientNetB{i}", _EFFICIENTNET_SKIPS, None) for i in range(8)},
    "resnet50": ("ResNet50", ("conv1_relu", "conv2_block3_out", "conv3_block4_out",
                              "conv4_block6_out", "conv5_block3_out"), "caffe"),
}

#: The strides of the five skips, shallow to deep.
SKIP_STRIDES = (2, 4, 8, 16, 32)

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@register
class CaffePreprocessing(layers.Layer):
    """ImageNet "caffe" preprocessing inside the model: RGB [0, 255] -> BGR minus the mean.

    ``y[..., c] = x[..., 2 - c] - mean_bgr[c]`` with ``mean_bgr = (103.939, 116.779, 123.68)``:
    the arithmetic of ``keras.applications.resnet.preprocess_input`` (the ImageNet preprocessing
    of He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016), as a
    layer so that it is saved and exported with the model.

    Example:
        >>> import numpy as np
        >>> pixel = np.array([[[[255.0, 0.0, 0.0]]]], "float32")  # pure red, RGB
        >>> [round(float(v), 3) for v in np.asarray(CaffePreprocessing()(pixel)).ravel()]
        [-103.939, -116.779, 131.32]
    """

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        bgr = ops.flip(x, axis=-1)
        return bgr - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)


def encoder_names():
    """The encoder names accepted by :func:`build_encoder` and ``UNetPlusPlus``.

    Returns:
        A tuple of names: "efficientnet_b0" ... "efficientnet_b7", "resnet50".

    Example:
        >>> encoder_names()[:2], encoder_names()[-1]
        (('efficientnet_b0', 'efficientnet_b1'), 'resnet50')
    """
    return tuple(ENCODERS)


def imagenet_cache_path(name):
    """Where keras keeps the ImageNet no-top weights of encoder ``name`` once downloaded.

    ``$KERAS_HOME/models/<file>`` (``~/.keras/models`` by default), with keras' own file name
    (``efficientnetb4_notop.h5``, ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``);
    ``encoder_weights="imagenet"`` reads that file and never downloads it.

    Args:
        name: one of :func:`encoder_names`.

    Returns:
        The path, whether or not the file exists.

    Example:
        >>> os.path.basename(imagenet_cache_path("efficientnet_b4"))
        'efficientnetb4_notop.h5'
    """
    constructor_name = ENCODERS[name][0]
    if constructor_name.startswith("EfficientNet"):
        file_name = f"{constructor_name.lower()}_notop.h5"
    else:
        file_name = f"{constructor_name.lower()}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "models", file_name)


def _resolve_weights(owner, name, encoder_weights):
    if encoder_weights is None:
        return None
    if isinstance(encoder_weights, str) and encoder_weights == "imagenet":
        path = imagenet_cache_path(name)
        if not os.path.isfile(path):
            raise ValueError(
                f"{owner}: `encoder_weights`='imagenet' reads keras' cached weights file "
                f"{path}, which does not exist; keras-seg-extras never downloads weights. "
                f"Fetch that file on a connected machine (it is what "
                f"keras.applications.{ENCODERS[name][0]}(include_top=False, weights='imagenet') "
                f"saves there) and either copy it to that path or pass its local path: "
                f"encoder_weights='/path/to/{os.path.basename(path)}'.")
        return path
    if not isinstance(encoder_weights, (str, os.PathLike)):
        fail(owner, "encoder_weights", encoder_weights,
             "must be None, 'imagenet' or the path of a local weights file")
    path = os.fspath(encoder_weights)
    if not os.path.isfile(path):
        fail(owner, "encoder_weights", encoder_weights,
             "names no existing file (give None, 'imagenet' or a local weights file)")
    return path


def build_encoder(name, inputs, encoder_weights=None, owner="build_encoder"):
    """Build the encoder ``name`` on the tensor ``inputs`` and return its five skip tensors.

    The encoder's layers become part of the caller's functional graph (no nested model), so a
    model built on them lists the encoder's layers by their keras.applications names (useful
    for freezing: ``layer.trainable = False`` for every layer up to ``top_activation``).

    Args:
        name: one of :func:`encoder_names` (``"efficientnet_b0"`` ... ``"efficientnet_b7"``,
            ``"resnet50"``).
        inputs: a symbolic ``keras.Input``-derived tensor (B, H, W, 3), RGB in [0, 255].
        encoder_weights: None (random initialisation), a local weights file (the
            ``*_notop.h5`` / ``.weights.h5`` file of the keras.applications model), or
            ``"imagenet"``: the file keras caches in ``$KERAS_HOME/models`` (see
            :func:`imagenet_cache_path`). Nothing is ever downloaded; a missing file raises a
            ``ValueError`` naming the file to fetch.
        owner: the object named in error messages.

    Returns:
        A list of five tensors at strides 2, 4, 8, 16 and 32.

    Example:
        >>> inputs = keras.Input((64, 64, 3))
        >>> skips = build_encoder("efficientnet_b0", inputs)
        >>> [tuple(s.shape[1:3]) for s in skips]
        [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    """
    check_choice(owner, "encoder", name, tuple(ENCODERS))
    weights = _resolve_weights(owner, name, encoder_weights)
    constructor_name, skip_names, preprocessing = ENCODERS[name]
    constructor = getattr(keras.applications, constructor_name)
    x = inputs
    if preprocessing == "caffe":
        x = CaffePreprocessing(name="caffe_preprocessing")(x)
    base = constructor(include_top=False, weights=weights, input_tensor=x)
    return [base.get_layer(skip).output for skip in skip_names]
