"""Test-time augmentation (TTA) as a Keras layer that is saved and exported with the model.

"SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition (2019), section
3.4.1 and Fig. 7: predict on the image and on its horizontal flip, flip the second prediction
back and average the probabilities. Generalised here to the dihedral group D4 (flips, rotations
by 90 degrees, transposes) and to several scales:

    p(x) = 1 / (|T| |S|) * sum_{s in S} sum_{t in T} R_{s -> 1}( t^{-1}( f( t( R_{1 -> s}(x) ) ) ) )

with f the wrapped model, t a transform of T and t^{-1} its inverse, R the bilinear resizing
to scale s (rounded half up to a multiple of 32) and back to the input size.
"""

import keras
from keras import layers, ops

from keras_seg_extras._common import check_vector, fail, register
from keras_seg_extras.inference._resize import image_size, resize_images, scaled_size

_OWNER = "TestTimeAugmentation"

# name -> (forward, inverse) on channels-last batches (B, H, W, C).
_TRANSFORMS = {
    "identity": (lambda x: x, lambda x: x),
    "hflip": (lambda x: ops.flip(x, axis=2), lambda x: ops.flip(x, axis=2)),
    "vflip": (lambda x: ops.flip(x, axis=1), lambda x: ops.flip(x, axis=1)),
    "rot180": (lambda x: ops.flip(ops.flip(x, axis=1), axis=2),
               lambda x: ops.flip(ops.flip(x, axis=1), axis=2)),
    "rot90": (lambda x: ops.rot90(x, k=1, axes=(1, 2)), lambda x: ops.rot90(x, k=3, axes=(1, 2))),
    "rot270": (lambda x: ops.rot90(x, k=3, axes=(1, 2)), lambda x: ops.rot90(x, k=1, axes=(1, 2))),
    "transpose": (lambda x: ops.transpose(x, (0, 2, 1, 3)),
                  lambda x: ops.transpose(x, (0, 2, 1, 3))),
    "antitranspose": (lambda x: ops.flip(ops.flip(ops.transpose(x, (0, 2, 1, 3)), 1), 2),
                      lambda x: ops.flip(ops.flip(ops.transpose(x, (0, 2, 1, 3)), 1), 2)),
}

#: Named sets of transforms: the report's horizontal flip, the four flips, the whole group D4.
_PRESETS = {
    "none": ("identity",),
    "hflip": ("identity", "hflip"),
    "flips": ("identity", "hflip", "vflip", "rot180"),
    "d4": ("identity", "hflip", "vflip", "rot180", "rot90", "rot270", "transpose",
           "antitranspose"),
}


def _check_transforms(transforms):
    if isinstance(transforms, str):
        if transforms not in _PRESETS:
            fail(_OWNER, "transforms", transforms,
                 f"must be a preset ({', '.join(map(repr, _PRESETS))}) or a tuple of names from "
                 f"{', '.join(map(repr, _TRANSFORMS))}")
        return _PRESETS[transforms]
    try:
        names = tuple(transforms)
    except TypeError:
        fail(_OWNER, "transforms", transforms, "must be a preset name or a tuple of names")
    if not names or any(name not in _TRANSFORMS for name in names):
        fail(_OWNER, "transforms", transforms,
             f"must be a non-empty tuple of names from {', '.join(map(repr, _TRANSFORMS))}")
    if len(set(names)) != len(names):
        fail(_OWNER, "transforms", transforms, "must not repeat a transform")
    return names


def _maps_and_image_level(model):
    """Whether ``model`` returns a dict of (B, H, W, K) maps and (B, K) image-level outputs."""
    return isinstance(model.output, dict) and all(len(t.shape) in (2, 4) for t in model.outputs)


@register
class TestTimeAugmentation(layers.Layer):
    """Average a segmentation model's outputs over flips/rotations and scales.

    The report's test-time augmentation ("SIIM-ACR Pneumothorax Segmentation", work report of
    SIIM's Kaggle competition, 2019, section 3.4.1 and Fig. 7) averages the prediction on the
    image and the flipped-back prediction on its horizontal flip; generalised here (see the
    module docstring) to

        p(x) = 1 / (|T| |S|) sum_s sum_t R_s^-1( t^-1( f( t( R_s(x) ) ) ) ).

    The layer wraps a model (any Keras model or layer mapping (B, H, W, C) to (B, H, W, K));
    it is serialised with it, so a model built with :func:`with_tta` saves to ``.keras`` and
    exports to a SavedModel with the augmentation inside. Outputs are averaged in float32: wrap
    a model that outputs probabilities (sigmoid/softmax) to average probabilities, as the report
    does (a logits model gets its logits averaged).

    Rotations by 90 degrees and transposes swap height and width: the wrapped model must accept
    both orders (fully convolutional with ``None`` spatial dimensions, or square inputs).

    Args:
        model: the model to wrap: one output, or a dict of (B, H, W, K) maps, transformed
            back, and (B, K) image-level outputs, averaged as they are
            (``UNetPlusPlus(classification_head=K)``'s ``"mask"`` and ``"classification"``).
        transforms: a preset, "hflip" (identity + horizontal flip: the report's), "flips"
            (identity, horizontal, vertical, both), "d4" (all 8 symmetries of the square),
            "none", or a tuple of names from "identity", "hflip", "vflip", "rot180", "rot90",
            "rot270", "transpose", "antitranspose".
        scales: image scales; each input is resized to ``floor(H * s / 32 + 1/2) * 32`` by
            ``floor(W * s / 32 + 1/2) * 32`` (bilinear), predicted under every transform, and the
            prediction resized back. Default (1.0,).

    Example:
        >>> import numpy as np
        >>> left_edge = keras.Sequential([keras.Input((None, None, 1)),
        ...                               keras.layers.Lambda(lambda x: x[:, :, :1] + 0 * x)])
        >>> image = np.arange(4, dtype="float32").reshape(1, 1, 4, 1)
        >>> tta = TestTimeAugmentation(left_edge, transforms="hflip")
        >>> keras.ops.convert_to_numpy(tta(image))[0, :, :, 0]  # mean of 0 and 3
        array([[1.5, 1.5, 1.5, 1.5]], dtype=float32)
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, model, transforms="hflip", scales=(1.0,), **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, layers.Layer):
            fail(_OWNER, "model", model, "must be a Keras model or layer")
        if isinstance(model, keras.Model) and len(model.outputs or ()) > 1 \
                and not _maps_and_image_level(model):
            fail(_OWNER, "model", model.name,
                 f"must have a single output; it has {len(model.outputs)} (for deep supervision "
                 "wrap keras.Model(model.inputs, model.outputs[-1]); a dict of (B, H, W, K) "
                 "maps and (B, K) image-level outputs, as UNetPlusPlus(classification_head=K) "
                 "returns, is accepted)")
        self.model = model
        self.transforms = _check_transforms(transforms)
        self._transforms_argument = transforms if isinstance(transforms, str) else list(transforms)
        self.scales = tuple(float(s) for s in check_vector(_OWNER, "scales", scales,
                                                           positive=True))
        if not self.scales:
            fail(_OWNER, "scales", scales, "must hold at least one scale")

    def build(self, input_shape):
        if not self.model.built:
            self.model.build(input_shape)
        self.built = True

    def call(self, inputs, training=False):
        size = image_size(inputs)
        total = None
        for scale in self.scales:
            x = inputs
            if scale != 1.0:
                x = resize_images(inputs, (scaled_size(size[0], scale),
                                           scaled_size(size[1], scale)))
            for name in self.transforms:
                forward, inverse = _TRANSFORMS[name]

                def back(y, inverse=inverse, scale=scale):
                    # Maps are transformed back; image-level outputs (B, K) do not move.
                    y = ops.cast(y, "float32")
                    if len(y.shape) != 4:
                        return y
                    y = inverse(y)
                    return resize_images(y, size) if scale != 1.0 else y

                y = keras.tree.map_structure(back, self.model(forward(x), training=training))
                total = y if total is None else keras.tree.map_structure(ops.add, total, y)
        count = float(len(self.scales) * len(self.transforms))
        return keras.tree.map_structure(lambda t: t / count, total)

    def compute_output_shape(self, input_shape):
        def resized(shape):
            shape = tuple(shape)
            return shape if len(shape) != 4 else (shape[0], input_shape[1], input_shape[2],
                                                  shape[3])

        return keras.tree.map_shape_structure(resized,
                                              self.model.compute_output_shape(input_shape))

    def compute_output_spec(self, inputs, training=False):
        def resized(spec):
            shape = tuple(spec.shape)
            if len(shape) == 4:
                shape = (inputs.shape[0], inputs.shape[1], inputs.shape[2], shape[3])
            return keras.KerasTensor(shape, dtype="float32")

        return keras.tree.map_structure(resized, self.model.compute_output_spec(inputs))

    def get_config(self):
        return {**super().get_config(),
                "model": keras.saving.serialize_keras_object(self.model),
                "transforms": self._transforms_argument,
                "scales": list(self.scales)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def with_tta(model, transforms="hflip", scales=(1.0,), name=None):
    """A ``keras.Model`` that applies :class:`TestTimeAugmentation` around ``model``.

    Args:
        model: a single-output Keras model (its input shape is reused).
        transforms: see :class:`TestTimeAugmentation`.
        scales: see :class:`TestTimeAugmentation`.
        name: model name (default ``"<model name>_tta"``).

    Returns:
        A ``keras.Model`` with the same input and output shapes as ``model``, float32 output.

    Example:
        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((None, None, 3)),
        ...                           keras.layers.Conv2D(1, 3, padding="same",
        ...                                               activation="sigmoid")], name="net")
        >>> tta_model = with_tta(model, "flips")
        >>> tta_model.name, tta_model.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape
        ('net_tta', (1, 32, 32, 1))
    """
    if not isinstance(model, keras.Model):
        fail("with_tta", "model", model, "must be a keras.Model")
    inputs = keras.Input(model.input_shape[1:], name="image")
    outputs = TestTimeAugmentation(model, transforms, scales, name="tta")(inputs)
    return keras.Model(inputs, outputs, name=name or f"{model.name}_tta")
