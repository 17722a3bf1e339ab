"""Snapshot ensembles (Huang et al., "Snapshot Ensembles: Train 1, get M for free", ICLR 2017).

One training run with the cyclic cosine learning rate (eq. 2 of Huang et al.)::

    alpha(t) = alpha_0 / 2 * (cos(pi * mod(t - 1, ceil(T / M)) / ceil(T / M)) + 1)

restarts the rate M times; at the end of each cycle the model sits in a local minimum and
is saved. Averaging the outputs of the last m snapshots gives an ensemble at the cost of one
run. Huang, Li, Pleiss, Liu, Hopcroft and Weinberger, "Snapshot Ensembles: Train 1, Get M for
Free", ICLR 2017. Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020"
(2020; table 2, model C10) use a snapshot ensemble of their ResNeSt model.
"""

import glob
import math
import os
import re

import keras

from keras_seg_extras._common import check_number, fail, register
from keras_seg_extras.training.schedules import CyclicCosineSchedule

_OWNER = "SnapshotEnsemble"


def _accumulation_steps(optimizer):
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer
    for opt in (optimizer, inner, getattr(inner, "inner_optimizer", None)):
        if opt is None:
            continue
        steps = getattr(opt, "accumulation_steps", None) or getattr(
            opt, "gradient_accumulation_steps", None)
        if steps:
            return int(steps)
    return 1


@register
class SnapshotEnsemble(keras.callbacks.Callback):
    """Cyclic cosine learning rate with a snapshot saved at the end of each cycle.

    ``t - 1`` is the optimizer's ``iterations`` (applied updates, so gradient accumulation
    and resumed runs are counted right) and ``T`` the total number of updates of the
    ``fit`` call (``epochs x steps per epoch / accumulation steps``, or ``total_steps``).
    Before every batch the optimizer's learning rate is set to ``alpha(t)``; when an update
    completes a cycle (``iterations`` a multiple of ``ceil(T / M)``, or the last update) the
    model is saved to ``directory/snapshot_XX.keras`` (XX = cycle, from 01).

    The optimizer must have a float learning rate (the callback sets it), not a schedule.

    Args:
        cycles: M >= 1 snapshots.
        max_lr: ``alpha_0`` > 0, the rate at the start of each cycle.
        directory: where the snapshots are written (created if missing).
        total_steps: optional T; by default derived from ``fit``'s epochs and steps.
        save_weights_only: save ``snapshot_XX.weights.h5`` instead of full models.

    Example:
        >>> import os, tempfile, numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> x = np.linspace(-1, 1, 16, dtype="float32").reshape(8, 2)
        >>> inputs = keras.Input((2,))
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> callback = SnapshotEnsemble(cycles=2, max_lr=0.1, directory=folder)
        >>> _ = model.fit(x, x[:, :1], epochs=4, batch_size=4, verbose=0, callbacks=[callback])
        >>> sorted(os.listdir(folder))
        ['snapshot_01.keras', 'snapshot_02.keras']
    """

    def __init__(self, cycles, max_lr, directory, total_steps=None, save_weights_only=False):
        super().__init__()
        self.cycles = check_number(_OWNER, "cycles", cycles, minimum=1, integer=True)
        self.max_lr = check_number(_OWNER, "max_lr", max_lr, minimum=0, min_inclusive=False)
        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            fail(_OWNER, "directory", directory, "must be a path")
        self.directory = str(directory)
        self.total_steps = None if total_steps is None else check_number(
            _OWNER, "total_steps", total_steps, minimum=1, integer=True)
        self.save_weights_only = bool(save_weights_only)
        self.schedule = None
        self.saved = []

    def _total_steps(self):
        if self.total_steps is not None:
            return self.total_steps
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        if not epochs or not steps:
            fail(_OWNER, "total_steps", None,
                 "must be given when fit() does not know its steps per epoch")
        return math.ceil(epochs * steps / _accumulation_steps(self.model.optimizer))

    def on_train_begin(self, logs=None):
        total = self._total_steps()
        if self.cycles > total:
            fail(_OWNER, "cycles", self.cycles, f"must not exceed the {total} training updates")
        self.schedule = CyclicCosineSchedule(self.max_lr, total, self.cycles)
        try:
            self.model.optimizer.learning_rate = self.max_lr
        except TypeError as error:
            fail(_OWNER, "model.optimizer", self.model.optimizer,
                 f"must have a float learning rate, not a schedule ({error})")
        os.makedirs(self.directory, exist_ok=True)

    def _iterations(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = float(self.schedule(self._iterations()))

    def on_train_batch_end(self, batch, logs=None):
        step = self._iterations()
        length = self.schedule.cycle_length
        if step > 0 and step % length == 0:
            self._save(step // length)

    def on_train_end(self, logs=None):
        step = self._iterations()
        if self.schedule is not None and step % self.schedule.cycle_length:
            self._save(step // self.schedule.cycle_length + 1)

    def _save(self, cycle):
        suffix = ".weights.h5" if self.save_weights_only else ".keras"
        path = os.path.join(self.directory, f"snapshot_{cycle:02d}{suffix}")
        if path in self.saved:
            return
        if self.save_weights_only:
            self.model.save_weights(path, overwrite=True)
        else:
            self.model.save(path, overwrite=True)
        self.saved.append(path)

    def get_config(self):
        return {"cycles": self.cycles, "max_lr": self.max_lr, "directory": self.directory,
                "total_steps": self.total_steps, "save_weights_only": self.save_weights_only}


def _snapshot_paths(paths_or_dir):
    owner = "load_snapshot_ensemble"
    if isinstance(paths_or_dir, (str, os.PathLike)):
        directory = str(paths_or_dir)
        if not os.path.isdir(directory):
            fail(owner, "paths_or_dir", directory, "must be a directory or a list of .keras files")
        pattern = re.compile(r"snapshot_(\d+)\.keras$")
        found = [(int(pattern.search(p).group(1)), p)
                 for p in glob.glob(os.path.join(directory, "snapshot_*.keras"))
                 if pattern.search(p)]
        paths = [p for _, p in sorted(found)]
    else:
        paths = [str(p) for p in paths_or_dir]
    if not paths:
        fail(owner, "paths_or_dir", paths_or_dir, "holds no snapshot_XX.keras files")
    for path in paths:
        if not os.path.isfile(path):
            fail(owner, "paths_or_dir", path, "is not a file")
    return paths


def load_snapshot_ensemble(paths_or_dir, m=None, name="snapshot_ensemble"):
    """Load the last ``m`` snapshots as one Keras model that averages their outputs.

    Args:
        paths_or_dir: a directory written by :class:`SnapshotEnsemble` (its
            ``snapshot_XX.keras`` files, ordered by cycle) or a list of ``.keras`` paths in
            training order.
        m: how many of the last snapshots to use (default: all).
        name: the ensemble model's name.

    Returns:
        A ``keras.Model`` with the first snapshot's inputs whose output is the mean of the
        snapshots' outputs (per output for multi-output models). It saves as ``.keras``.

    Example:
        >>> import os, tempfile, numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> for i, bias in enumerate((0.0, 1.0)):
        ...     inputs = keras.Input((2,))
        ...     layer = keras.layers.Dense(1, kernel_initializer="zeros",
        ...                                bias_initializer=keras.initializers.Constant(bias))
        ...     path = os.path.join(folder, f"snapshot_{i + 1:02d}.keras")
        ...     keras.Model(inputs, layer(inputs)).save(path)
        >>> ensemble = load_snapshot_ensemble(folder)
        >>> ensemble.predict(np.zeros((1, 2)), verbose=0).tolist()   # the mean of 0 and 1
        [[0.5]]
    """
    paths = _snapshot_paths(paths_or_dir)
    if m is not None:
        m = check_number("load_snapshot_ensemble", "m", m, minimum=1, maximum=len(paths),
                         integer=True)
        paths = paths[-m:]
    members = []
    for i, path in enumerate(paths):
        model = keras.saving.load_model(path, compile=False)
        members.append(keras.Model(model.inputs, model.outputs, name=f"snapshot_{i}"))
    first = members[0]
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0])
              for t in first.inputs]
    feed = inputs[0] if len(inputs) == 1 else inputs
    outputs = [member(feed) for member in members]
    if len(members) == 1:
        return keras.Model(inputs, outputs[0], name=name)
    if isinstance(outputs[0], (list, tuple)):
        averaged = [keras.layers.Average(name=f"average_{k}")(list(group))
                    for k, group in enumerate(zip(*outputs))]
    else:
        averaged = keras.layers.Average(name="average")(outputs)
    return keras.Model(inputs, averaged, name=name)
