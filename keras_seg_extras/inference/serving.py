"""Served models (TTA and each member's size inside the graph) and streamed prediction.

The SIIM work report ("SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle
competition, 2019, sections 3.4.1-3.4.2) predicts with horizontal-flip TTA and averages a
512 px and a 768 px model. :func:`served_model` builds that as one Keras model for images of
any size: each member wrapped in :class:`~keras_seg_extras.inference.TestTimeAugmentation`,
the input resized to the member's training size and its output resized back
(:class:`~keras_seg_extras.inference.WeightedEnsemble`), so what is scored on validation is
what is saved and exported. :func:`predict_stream` feeds images one batch at a time and
yields each image's probabilities, so nothing holds a whole validation or test set.
"""

import numpy as np

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.inference.ensemble import ensemble
from keras_seg_extras.inference.tta import with_tta


def served_model(models, sizes, transforms="hflip", weights=None, name=None):
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
    models = [models] if single else list(models)
    sizes = [sizes] * len(models) if isinstance(sizes, int) else list(sizes)
    if len(sizes) != len(models):
        fail("served_model", "sizes", sizes, f"must hold one size per model ({len(models)})")
    if name is None:
        name = f"{models[0].name}_served" if single else "ensemble"
    return ensemble([with_tta(model, transforms) for model in models], weights=weights,
                    resolutions=[(int(s), int(s)) for s in sizes], name=name)


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
