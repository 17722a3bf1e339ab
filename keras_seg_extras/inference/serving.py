"""Served models (TTA and each member's size inside the graph) and streamed prediction.

The SIIM work report ("SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle
competition, 2019, sections 3.4.1-3.4.2) predicts with horizontal-flip TTA and averages a
512 px and a 768 px model. :func:`served_model` builds that as one Keras model for images of
any size: each member wrapped in :class:`~keras_seg_extras.inference.TestTimeAugmentation`,
the input resized to the member's training size and its output resized back
(:class:`~keras_seg_extras.inference.WeightedEnsemble`), so what is scored on validation is
what is saved and exported; :func:`served_classifier` does the same for the image-level
"has a mask" head of ``UNetPlusPlus(classification_head=1)``. :func:`predict_stream` feeds images one batch at a time and
yields each image's probabilities, so nothing holds a whole validation or test set.
"""

import keras
import numpy as np

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.inference.ensemble import ensemble
from keras_seg_extras.inference.tta import with_tta


def _output(owner, model, output):
    """``model`` cut to its output ``output`` (a dict key), or as it is for ``output=None``."""
    if output is None:
        return model
    try:
        outputs = model.output
    except AttributeError:  # a Sequential model never called: one output
        outputs = None
    if not isinstance(outputs, dict) or output not in outputs:
        fail(owner, "output", output, f"must name an output of {model.name!r}; its outputs "
             f"are {sorted(outputs) if isinstance(outputs, dict) else 'one tensor'}")
    return keras.Model(model.inputs, model.output[output], name=f"{model.name}_{output}")


def served_model(models, sizes, transforms="hflip", weights=None, name=None, output=None):
    """One model for any input size: each of ``models`` with TTA at its size, averaged.

    ``p(x) = sum_m w_m R_{s_m -> x}(TTA(f_m)(R_{x -> s_m}(x))) / sum_m w_m``, with R bilinear
    resizing to the member's size ``s_m`` x ``s_m`` and back.

    Args:
        models: a single-output Keras model, or a list of them.
        sizes: the side each model was trained at (an int, or one per model; multiples of 32).
        transforms: TTA preset or names (see :class:`TestTimeAugmentation`); "none" for none.
        weights: one weight per model (default equal).
        name: model name (default ``"<model>_served"`` for one model, ``"ensemble"``
            otherwise).
        output: for models with a dict of outputs (``UNetPlusPlus(classification_head=K)``),
            the segmentation output to serve, e.g. ``"mask"``.

    Returns:
        A ``keras.Model`` (B, H, W, C) -> (B, H, W, K), float32, that saves to ``.keras`` and
        exports as one graph.

    Example:
        >>> import keras
        >>> net = keras.Sequential([keras.Input((None, None, 3)),
        ...                         keras.layers.Conv2D(1, 1, activation="sigmoid")],
        ...                        name="net")
        >>> served = served_model(net, 32)
        >>> served.name, served.predict(np.zeros((1, 50, 70, 3)), verbose=0).shape
        ('net_served', (1, 50, 70, 1))
    """
    single = not isinstance(models, (list, tuple))
    models, sizes = _members("served_model", models, sizes)
    if name is None:
        name = f"{models[0].name}_served" if single else "ensemble"
    members = [with_tta(_output("served_model", m, output), transforms) for m in models]
    return ensemble(members, weights=weights, resolutions=[(s, s) for s in sizes], name=name)


def _members(owner, models, sizes):
    models = [models] if not isinstance(models, (list, tuple)) else list(models)
    sizes = [sizes] * len(models) if isinstance(sizes, int) else list(sizes)
    if len(sizes) != len(models):
        fail(owner, "sizes", sizes, f"must hold one size per model ({len(models)})")
    return models, [int(s) for s in sizes]


def served_classifier(models, sizes, output="classification", transforms="hflip", name=None):
    """The image-level probabilities of ``models``' classification output, averaged.

    Each member sees the image resized (bilinear) to its size ``s_m``, its ``output`` logits
    are averaged over the TTA transforms (image-level outputs do not move under a flip), and

        p(x) = mean_m sigmoid(mean_t z_m(t(R_{x -> s_m}(x)))),

    one probability per label: the "has a mask" probability that
    :func:`~keras_seg_extras.inference.apply_image_gate` compares with a gate. The head is the
    image-level sub-network of "1st Place Solution for YouTubeVOS Challenge 2021: Video
    Instance Segmentation", technical report (2021), section 3.5.1
    (``UNetPlusPlus(classification_head=K)``).

    Args:
        models: a Keras model with a dict output holding ``output`` (logits), or a list.
        sizes: the side each model was trained at (an int, or one per model).
        output: the name of the image-level logits output.
        transforms: TTA preset or names (see :class:`TestTimeAugmentation`).
        name: model name (default ``"classifier"``).

    Returns:
        A ``keras.Model`` (B, H, W, C) -> (B, K) of probabilities (not meant for export: the
        serving artifacts carry the mask only).

    Example:
        >>> import keras
        >>> inputs = keras.Input((None, None, 3))
        >>> logits = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inputs))
        >>> net = keras.Model(inputs, {"mask": keras.layers.Conv2D(1, 1)(inputs),
        ...                            "classification": logits})
        >>> head = served_classifier(net, 32)
        >>> head.predict(np.zeros((2, 50, 40, 3)), verbose=0).round(2).tolist()
        [[0.5], [0.5]]
    """
    models, sizes = _members("served_classifier", models, sizes)
    inputs = keras.Input((None, None, models[0].input_shape[-1]), name="image")
    probabilities = []
    for index, (model, size) in enumerate(zip(models, sizes)):
        member = with_tta(_output("served_classifier", model, output), transforms,
                          name=f"member{index}_tta")  # members may share one name
        resized = keras.layers.Resizing(size, size, interpolation="bilinear")(inputs)
        probabilities.append(keras.layers.Activation("sigmoid")(member(resized)))
    mean = probabilities[0] if len(probabilities) == 1 else \
        keras.layers.Average()(probabilities)
    return keras.Model(inputs, mean, name=name or "classifier")


def _as_batch(images, channels):
    batch = np.stack(images).astype("float32")
    if batch.ndim == 3:
        batch = np.repeat(batch[..., None], channels, axis=-1)
    return batch


def predict_stream(models, images, batch_size=4, channels=3):
    """Yield ``{name: probabilities}`` for each image, predicting a batch at a time.

    Consecutive images of the same shape are predicted together, at most ``batch_size`` at
    once; a grey (H, W) image is repeated to ``channels`` channels. Images are read from the
    iterable only as the batches need them, so a generator of file reads streams a data set.

    Args:
        models: ``{name: keras.Model}``; every model sees every batch.
        images: an iterable of (H, W) or (H, W, C) arrays.
        batch_size: images per prediction batch (>= 1).
        channels: channels of a grey image once repeated (the models' input channels).

    Yields:
        For each image in order, ``{name: array}``: the model's output for that image,
        its single channel dropped ((H, W) for a one-channel segmentation output).

    Example:
        >>> import keras
        >>> mean = keras.Sequential([keras.Input((None, None, 3)),
        ...                          keras.layers.Lambda(lambda x: keras.ops.mean(
        ...                              x, axis=-1, keepdims=True))])
        >>> images = [np.full((2, 2), 1.0), np.full((2, 2), 3.0), np.full((1, 3), 5.0)]
        >>> [out["mean"].tolist() for out in predict_stream({"mean": mean}, images)]
        [[[1.0, 1.0], [1.0, 1.0]], [[3.0, 3.0], [3.0, 3.0]], [[5.0, 5.0, 5.0]]]
    """
    batch_size = check_number("predict_stream", "batch_size", batch_size, minimum=1,
                              integer=True)
    if not isinstance(models, dict) or not models:
        fail("predict_stream", "models", models, "must be a non-empty {name: model} dict")
    pending = []

    def flush():
        inputs = _as_batch(pending, channels)
        outputs = {name: np.asarray(model.predict_on_batch(inputs))
                   for name, model in models.items()}
        for i in range(len(pending)):
            yield {name: out[i][..., 0] if out.shape[-1] == 1 else out[i]
                   for name, out in outputs.items()}

    for image in images:
        image = np.asarray(image)
        if pending and (image.shape != pending[0].shape or len(pending) == batch_size):
            yield from flush()
            pending = []
        pending.append(image)
    if pending:
        yield from flush()
