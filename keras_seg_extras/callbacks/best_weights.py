"""Checkpoints of a model's own weights, at its best epoch or at the end of training.

The SIIM work report ("SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle
competition, 2019, section 4.1.8) keeps the weights of each training run at its best
validation loss, IoU and Dice. Keras's weights-only ``ModelCheckpoint`` saves the compiled
model's whole state: with gradient accumulation and stochastic weight averaging that is the
Adam moments, the accumulation buffers and the SWA averages as well, 232 MB a file instead of
27 MB for an EfficientNet-B0 U-Net++. :class:`WeightsCheckpoint` writes
``model.get_weights()`` alone, as an ``.npz`` that :func:`load_weights_npz` reads back into
a freshly built model of the same architecture.
"""

import os
import warnings

import keras
import numpy as np

from keras_seg_extras._common import check_choice, fail

_OWNER = "WeightsCheckpoint"


def save_weights_npz(model, path):
    """Write ``model.get_weights()`` (the model's own variables, in order) to ``path``.

    Written under a temporary name and renamed, so a killed run never leaves half a file.

    Args:
        model: a built Keras model.
        path: the ``.npz`` file (its folder is created).

    Returns:
        ``path``.

    Example:
        >>> import tempfile
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> path = save_weights_npz(model, os.path.join(tempfile.mkdtemp(), "w.npz"))
        >>> [a.shape for a in np.load(path).values()]
        [(2, 1), (1,)]
    """
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    partial = path + ".partial.npz"
    np.savez(partial, **{f"w{i:04d}": w for i, w in enumerate(model.get_weights())})
    os.replace(partial, path)
    return path


def load_weights_npz(model, path):
    """Set ``model``'s weights from a file written by :func:`save_weights_npz`.

    Raises:
        ValueError: naming the file when its arrays do not match the model's weights in
            number or shape (another architecture).

    Example:
        >>> import tempfile
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> path = save_weights_npz(model, os.path.join(tempfile.mkdtemp(), "w.npz"))
        >>> twin = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> _ = load_weights_npz(twin, path)
        >>> all(np.array_equal(a, b) for a, b in zip(model.get_weights(), twin.get_weights()))
        True
    """
    path = os.fspath(path)
    with np.load(path) as saved:
        arrays = [saved[key] for key in sorted(saved.files)]
    expected = [tuple(w.shape) for w in model.weights]
    if [a.shape for a in arrays] != expected:
        fail("load_weights_npz", "path", path, f"must hold {len(expected)} arrays of the "
             f"shapes of {model.name}'s weights; it holds {len(arrays)} that do not match")
    model.set_weights(arrays)
    return model


class WeightsCheckpoint(keras.callbacks.Callback):
    """Save the model's own weights when ``monitor`` reaches its best, or at the end.

    With ``monitor`` a log name (``"val_loss"``, ``"val_dice"``...), the weights are saved at
    every epoch whose value beats the best so far (lower for ``mode="min"``, higher for
    ``"max"``); a monitor that never appears in the logs warns once and saves nothing. With
    ``monitor=None`` they are saved once, at the end of training, after the callbacks listed
    before it (a stochastic weight averaging callback swapping its averages in, for example).
    Files hold ``model.get_weights()`` only (:func:`save_weights_npz`), not the optimizer.

    Args:
        path: the ``.npz`` file.
        monitor: a log name, or None to save at the end of training.
        mode: "min" or "max" (ignored without ``monitor``).

    Attributes:
        best: the best value seen so far (inf or -inf before the first).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "best.npz")
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> checkpoint = WeightsCheckpoint(path, monitor="val_loss", mode="min")
        >>> checkpoint.set_model(model)
        >>> for epoch, loss in enumerate([0.5, 0.3, 0.4]):
        ...     checkpoint.on_epoch_end(epoch, {"val_loss": loss})
        >>> checkpoint.best, os.path.exists(path)
        (0.3, True)
    """

    def __init__(self, path, monitor="val_loss", mode="min"):
        super().__init__()
        if not isinstance(path, (str, os.PathLike)):
            fail(_OWNER, "path", path, "must be a file path")
        if monitor is not None and not isinstance(monitor, str):
            fail(_OWNER, "monitor", monitor, "must be a log name or None")
        self.path = os.fspath(path)
        self.monitor = monitor
        self.mode = check_choice(_OWNER, "mode", mode, ("min", "max"))
        self.best = float("inf") if mode == "min" else -float("inf")
        self._warned = False

    def _improves(self, value):
        return value < self.best if self.mode == "min" else value > self.best

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is None:
            return
        value = (logs or {}).get(self.monitor)
        if value is None:
            if not self._warned:
                warnings.warn(f"{_OWNER} {self.path}: `{self.monitor}` is not in the logs, "
                              "so nothing is saved", stacklevel=2)
                self._warned = True
            return
        if self._improves(float(value)):
            self.best = float(value)
            save_weights_npz(self.model, self.path)

    def on_train_end(self, logs=None):
        if self.monitor is None:
            save_weights_npz(self.model, self.path)
