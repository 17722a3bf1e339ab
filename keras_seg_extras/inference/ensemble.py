"""Weighted ensembles of segmentation models as one Keras model.

"SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition (2019),
section 3.4.2 and Fig. 8.

The report averages a 512x512 model and a 768x768 model: each member sees the image at its own
resolution and its prediction is resized back to the input size before averaging:

    p(x) = sum_m w_m * R_{s_m -> x}( f_m( R_{x -> s_m}(x) ) ) / sum_m w_m

with R bilinear resizing. The ensemble is a registered layer holding its members, so the
whole ensemble saves to ``.keras`` and exports as one SavedModel.
"""

import numbers

import keras
from keras import layers, ops

from keras_seg_extras._common import check_vector, fail, register
from keras_seg_extras.inference._resize import image_size, resize_images, scaled_size

_OWNER = "WeightedEnsemble"


def _check_resolution(resolution):
    """None (as given), a positive scale, or a fixed (height, width) in multiples of 32."""
    if resolution is None:
        return None
    if isinstance(resolution, numbers.Real) and not isinstance(resolution, bool):
        if not resolution > 0:
            fail(_OWNER, "resolutions", resolution, "entries must be None, a scale > 0 or (H, W)")
        return float(resolution)
    try:
        height, width = resolution
    except (TypeError, ValueError):
        fail(_OWNER, "resolutions", resolution, "entries must be None, a scale > 0 or (H, W)")
    for value in (height, width):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0 \
                or value % 32:
            fail(_OWNER, "resolutions", resolution,
                 "fixed sizes must be (H, W) with positive multiples of 32")
    return (int(height), int(width))


@register
class WeightedEnsemble(layers.Layer):
    """Weighted average of several single-output segmentation models, each at its resolution.

    ``p(x) = sum_m w_m R_{s_m -> x}(f_m(R_{x -> s_m}(x))) / sum_m w_m`` with R bilinear
    resizing: the report's average of a 512 px and a 768 px model ("SIIM-ACR Pneumothorax
    Segmentation", work report of SIIM's Kaggle competition, 2019, section 3.4.2).

    Args:
        models: the member models (same number of output channels).
        weights: one non-negative weight per model (normalised to sum 1); default equal.
        resolutions: one entry per model: None (the input as given), a scale (the input is
            resized to ``floor(H * s / 32 + 1/2) * 32``), or a fixed (H, W) such as (768, 768). Each
            member's output is resized back (bilinear) to the input size. Default all None.

    Outputs are averaged in float32. Average probabilities (members with sigmoid/softmax
    outputs), as the report does.

    Example:
        >>> import numpy as np
        >>> def constant(value):
        ...     inputs = keras.Input((None, None, 3))
        ...     outputs = keras.layers.Lambda(lambda x: x[..., :1] * 0 + value)(inputs)
        ...     return keras.Model(inputs, outputs)
        >>> layer = WeightedEnsemble([constant(0.2), constant(0.8)], weights=[3, 1],
        ...                          resolutions=[None, (32, 32)])
        >>> out = keras.ops.convert_to_numpy(layer(np.zeros((1, 48, 48, 3), "float32")))
        >>> out.shape, round(float(out.mean()), 4)   # (3 * 0.2 + 0.8) / 4
        ((1, 48, 48, 1), 0.35)
    """

    def __init__(self, models, weights=None, resolutions=None, **kwargs):
        super().__init__(**kwargs)
        try:
            models = list(models)
        except TypeError:
            fail(_OWNER, "models", models, "must be a list of Keras models")
        if not models or any(not isinstance(m, keras.Model) for m in models):
            fail(_OWNER, "models", models, "must be a non-empty list of Keras models")
        for m in models:
            if len(m.outputs or ()) > 1:
                fail(_OWNER, "models", m.name,
                     "members must have a single output (for UNetPlusPlus(classification_head="
                     "K) ensemble keras.Model(m.inputs, m.output['mask']))")
        channels = {m.output_shape[-1] for m in models}
        if len(channels) > 1:
            fail(_OWNER, "models", [m.name for m in models],
                 f"must all output the same number of channels; found {sorted(channels)}")
        self.models = models
        if weights is None:
            weights = [1.0] * len(models)
        weights = check_vector(_OWNER, "weights", weights, length=len(models), non_negative=True)
        if weights.sum() <= 0:
            fail(_OWNER, "weights", list(weights), "must have a positive sum")
        self.weights_list = [float(w) for w in weights]
        if resolutions is None:
            resolutions = [None] * len(models)
        try:
            resolutions = list(resolutions)
        except TypeError:
            fail(_OWNER, "resolutions", resolutions, "must be a list with one entry per model")
        if len(resolutions) != len(models):
            fail(_OWNER, "resolutions", resolutions, f"must have {len(models)} entries")
        self.resolutions = [_check_resolution(r) for r in resolutions]

    def build(self, input_shape):
        for model, resolution in zip(self.models, self.resolutions):
            if not model.built:
                shape = tuple(input_shape)
                if isinstance(resolution, tuple):
                    shape = (shape[0], *resolution, shape[3])
                model.build(shape)
        self.built = True

    def call(self, inputs, training=False):
        size = image_size(inputs)
        total_weight = sum(self.weights_list)
        total = None
        for model, weight, resolution in zip(self.models, self.weights_list, self.resolutions):
            if weight == 0:
                continue
            if resolution is None:
                target = None
            elif isinstance(resolution, tuple):
                target = resolution
            else:
                target = (scaled_size(size[0], resolution), scaled_size(size[1], resolution))
            x = inputs if target is None else resize_images(inputs, target)
            y = ops.cast(model(x, training=training), "float32")
            if target is not None:
                y = resize_images(y, size)
            y = y * (weight / total_weight)
            total = y if total is None else total + y
        return total

    def compute_output_spec(self, inputs, training=False):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.models[0].output_shape[-1],)

    def get_config(self):
        return {**super().get_config(),
                "models": [keras.saving.serialize_keras_object(m) for m in self.models],
                "weights": list(self.weights_list),
                "resolutions": [list(r) if isinstance(r, tuple) else r for r in self.resolutions]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["models"] = [keras.saving.deserialize_keras_object(m) for m in config["models"]]
        return cls(**config)


def ensemble(models, weights=None, resolutions=None, input_shape=(None, None, 3), name="ensemble"):
    """One ``keras.Model`` averaging ``models`` (see :class:`WeightedEnsemble`).

    Args:
        models: single-output Keras models.
        weights: one weight per model; default equal.
        resolutions: per model None, a scale, or a fixed (H, W); see :class:`WeightedEnsemble`.
        input_shape: the ensemble's input shape (H, W, channels); None dimensions allowed.
        name: model name.

    Returns:
        A ``keras.Model`` (B, H, W, C) -> (B, H, W, K) float32 that saves and exports as one.

    Example:
        >>> import numpy as np
        >>> def net(name):
        ...     return keras.Sequential([keras.Input((None, None, 3)),
        ...                              keras.layers.Conv2D(1, 1, activation="sigmoid")],
        ...                             name=name)
        >>> model = ensemble([net("a"), net("b")], resolutions=[(32, 32), (64, 64)])
        >>> model.predict(np.zeros((1, 40, 56, 3)), verbose=0).shape
        (1, 40, 56, 1)
    """
    inputs = keras.Input(tuple(input_shape), name="image")
    outputs = WeightedEnsemble(models, weights, resolutions, name="weighted_ensemble")(inputs)
    return keras.Model(inputs, outputs, name=name)
