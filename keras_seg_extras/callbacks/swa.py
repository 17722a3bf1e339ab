"""Stochastic Weight Averaging with BatchNorm re-estimation, resumable from checkpoints.

The "SIIM-ACR Pneumothorax Segmentation" work report (2019), section 4.1.7: SWA (Izmailov,
Podoprikhin, Garipov, Vetrov and Wilson, "Averaging Weights Leads to Wider Optima and Better
Generalization", UAI 2018) over the last epochs of training gives
flatter solutions that generalise better; the report averaged the last 3 epochs. The anchor
is PyTorch's ``torch.optim.swa_utils`` (``AveragedModel`` with equal weights and ``update_bn``).

The average is the plain arithmetic mean of the snapshots ``w_1 ... w_n`` of the trainable
weights, kept as a running mean ``mean_n = mean_{n-1} + (w_n - mean_{n-1}) / n``. The
averaged weights were never used in a forward pass, so the BatchNorm moving statistics of
the last raw weights do not fit them: :func:`recompute_batchnorm_statistics` runs one pass
over data in training mode (every BN layer normalises with its batch statistics, as
``update_bn`` does) and sets each trainable BN layer's moving mean and variance to the exact
pooled mean and variance of its inputs over all those batches.

The running mean and the snapshot count are ``keras.Variable`` s attached to the model (as
a saveable attribute, not as model weights), so ``model.save_weights`` /
``BackupAndRestore`` / ``ModelCheckpoint`` (both kinds) and ``model.save`` store them. Keras
restores them only into a model that already has them, which a fresh model does not: resume
with ``resume_from=<the .keras or .weights.h5 file>`` (or call ``swa.set_model(model)``
before ``model.load_weights``). A run that starts after ``start_epoch`` with an empty
average warns instead of restarting the average silently.
"""

import os
import warnings

import keras
import numpy as np
from keras import ops

from keras_seg_extras._common import check_number, fail, register
from keras_seg_extras.callbacks._checkpoint import read_saved_entries
from keras_seg_extras.training.batchnorm import recompute_batchnorm_statistics

_OWNER = "StochasticWeightAveraging"


def _strategy_scope(model):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
        return strategy.scope()
    import contextlib

    return contextlib.nullcontext()


class _SWAState(keras.layers.Layer):
    """Running mean of a model's trainable weights and the snapshot count, in variables.

    A layer that is never called: attached to the model as a plain (untracked) attribute
    ``model._kse_swa_<name>``, it adds no model variable and no layer, but Keras's weight
    saving visits every ``Layer`` attribute and calls its ``save_own_variables`` /
    ``load_own_variables`` (the same mechanism as the TCE sampler's state).
    """

    def __init__(self, model, name):
        super().__init__(name=f"kse_swa_{name}", trainable=False)
        self.built = True
        with _strategy_scope(model):
            self.count = keras.Variable(0, dtype="int32", trainable=False,
                                        name=f"{self.name}_count")
            self.last_step = keras.Variable(-1, dtype="int64", trainable=False,
                                            name=f"{self.name}_last_step")
            # the last epoch whose weights entered the average (-1: none, or unknown)
            self.last_epoch = keras.Variable(-1, dtype="int64", trainable=False,
                                             name=f"{self.name}_last_epoch")
            self.means = [keras.Variable(ops.zeros(w.shape, "float32"), trainable=False,
                                         name=f"{self.name}_mean_{i}")
                          for i, w in enumerate(model.trainable_weights)]

    def matches(self, model):
        weights = model.trainable_weights
        return len(weights) == len(self.means) and all(
            tuple(w.shape) == tuple(m.shape) for w, m in zip(weights, self.means))

    def save_own_variables(self, store):
        store["count"] = np.asarray(self.count.numpy())
        store["last_step"] = np.asarray(self.last_step.numpy())
        store["last_epoch"] = np.asarray(self.last_epoch.numpy())
        for i, mean in enumerate(self.means):
            store[f"mean_{i}"] = mean.numpy()

    def load_own_variables(self, store):
        keys = list(store.keys())
        if not keys:  # saved before SWA existed: keep the fresh state
            return
        extra = 3 if "last_epoch" in keys else 2  # files saved before last_epoch existed: 2
        if len(keys) != len(self.means) + extra:
            raise ValueError(f"{_OWNER}: the saved state holds {len(keys) - extra} averaged "
                             f"weights but the model has {len(self.means)}.")
        self.count.assign(np.asarray(store["count"]))
        self.last_step.assign(np.asarray(store["last_step"]))
        self.last_epoch.assign(np.asarray(store["last_epoch"]) if extra == 3 else -1)
        for i, mean in enumerate(self.means):
            mean.assign(np.asarray(store[f"mean_{i}"]))


@register
class StochasticWeightAveraging(keras.callbacks.Callback):
    """Equal-weight running average of the trainable weights from ``start_epoch`` on.

    From epoch ``start_epoch`` (0-based, as Keras's ``initial_epoch``; with 10 epochs,
    ``start_epoch=7`` averages the weights after the last 3 epochs, the report's choice) the
    trainable weights are added to the average at the end of every epoch
    (``update_every="epoch"``) or every ``n`` applied optimizer updates
    (``update_every=n``; counted with ``optimizer.iterations``, so gradient accumulation
    counts updates, not micro-batches)::

        mean_n = mean_{n-1} + (w_n - mean_{n-1}) / n      (= (w_1 + ... + w_n) / n)

    At the end of training the averaged weights are swapped into the model and, when
    ``bn_data`` is given, the BatchNorm statistics are re-estimated with one pass over it
    (:func:`recompute_batchnorm_statistics`). ``swap_in_average()`` does the same on demand.

    State (mean, count, last averaged epoch) lives in variables saved with the model's
    weights, so a run resumed with ``keras.callbacks.BackupAndRestore`` continues the same
    average; a fresh model resumes from a ``.keras`` or weights checkpoint with
    ``resume_from=path``. A checkpoint written before this callback's epoch end (listed
    first) is caught up from the restored weights; a resumed run whose average lacks older
    epochs warns. Works with ``LossScaleOptimizer`` (weights stay float32 under mixed
    precision) and ``MirroredStrategy`` (the state is created in the model's strategy).
    For a model that is not built when ``fit`` starts, list this callback before
    ``BackupAndRestore`` so its state exists when the backup is restored.

    Args:
        start_epoch: first epoch (0-based) whose weights enter the average.
        update_every: ``"epoch"`` or a positive number of applied updates.
        bn_data: optional batches (``tf.data.Dataset``, NumPy array, or iterable of arrays
            or ``(x, y)`` tuples) for the BatchNorm re-estimation at the end.
        keep_raw_weights: if True, the last raw weights are kept in ``self.raw_weights``
            (NumPy arrays, ``model.trainable_weights`` order) when the average is swapped in;
            ``restore_raw_weights()`` puts them back.
        bn_steps: optional number of batches of ``bn_data`` to use (required for an
            infinite dataset).
        name: names the state attached to the model; use distinct names for two SWA
            callbacks on one model (e.g. one per training stage).
        resume_from: optional ``.keras`` or ``.weights.h5`` file (a checkpoint of the run
            being resumed): the average and count are read from it when the state is
            created, for a model loaded or built fresh. A file without this callback's
            state raises ``ValueError``.

    Example:
        >>> x = np.linspace(-1, 1, 16, dtype="float32").reshape(8, 2)
        >>> inputs = keras.Input((2,))
        >>> model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> swa = StochasticWeightAveraging(start_epoch=1)   # epochs 1 and 2 of 0..2
        >>> _ = model.fit(x, x[:, :1], epochs=3, batch_size=4, verbose=0, callbacks=[swa])
        >>> swa.count   # the model now holds the mean of those two snapshots
        2
    """

    def __init__(self, start_epoch, update_every="epoch", bn_data=None, keep_raw_weights=False,
                 bn_steps=None, name="swa", resume_from=None):
        super().__init__()
        self.start_epoch = check_number(_OWNER, "start_epoch", start_epoch, minimum=0,
                                        integer=True)
        if update_every != "epoch":
            update_every = check_number(_OWNER, "update_every", update_every, minimum=1,
                                        integer=True)
        self.update_every = update_every
        self.bn_data = bn_data
        self.bn_steps = None if bn_steps is None else check_number(
            _OWNER, "bn_steps", bn_steps, minimum=1, integer=True)
        self.keep_raw_weights = bool(keep_raw_weights)
        if not isinstance(name, str) or not name.isidentifier():
            fail(_OWNER, "name", name, "must be a Python identifier")
        self.name = name
        self.resume_from = None if resume_from is None else os.fspath(resume_from)
        self.raw_weights = None
        self._epoch = 0
        self._first_epoch = True

    # ------------------------------------------------------------------ state

    @property
    def _attribute(self):
        return f"_kse_swa_{self.name}"

    def set_model(self, model):
        super().set_model(model)
        if getattr(model, "built", False) and model.trainable_weights:
            self._state()

    def _state(self):
        model = self.model
        state = getattr(model, self._attribute, None)
        if state is None or not state.matches(model):
            state = _SWAState(model, self.name)
            if self.resume_from is not None:
                state.load_own_variables(read_saved_entries(
                    _OWNER, self.resume_from, self._attribute,
                    f"SWA state named {self.name!r}"))
            object.__setattr__(model, self._attribute, state)  # untracked: no model weight
        return state

    @property
    def count(self):
        """Number of snapshots in the average."""
        return int(self._state().count.numpy())

    def averaged_weights(self):
        """The averaged trainable weights as NumPy arrays (``model.trainable_weights`` order)."""
        return [m.numpy() for m in self._state().means]

    # ------------------------------------------------------------------ updates

    def _add_snapshot(self, epoch=None):
        state = self._state()
        if epoch is not None:
            state.last_epoch.assign(epoch)
        n = float(state.count.numpy())
        for mean, weight in zip(state.means, self.model.trainable_weights):
            value = ops.cast(weight.value, "float32")
            mean.assign(mean.value + (value - mean.value) / (n + 1.0))
        state.count.assign(state.count.value + 1)

    def on_train_begin(self, logs=None):
        self._state()
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._first_epoch:
            self._first_epoch = False
            self._catch_up(epoch)

    def _catch_up(self, epoch):
        """On resuming at ``epoch``: add epoch ``epoch - 1`` if the checkpoint missed it.

        A checkpoint written at the end of an epoch by a callback that runs before this
        one (``BackupAndRestore`` or ``ModelCheckpoint`` listed first) holds that epoch's
        weights but not its snapshot. The weights at the start of the resumed epoch are
        exactly those weights, so the snapshot is added now. Anything missing before that
        cannot be recovered and is reported loudly.
        """
        state = self._state()
        count = int(state.count.numpy())
        last = int(state.last_epoch.numpy()) if count else self.start_epoch - 1
        if epoch <= self.start_epoch or (count and last < 0):
            return  # nothing due yet, or a state saved before last_epoch was recorded
        if self.update_every == "epoch" and last == epoch - 2:
            self._add_snapshot(epoch - 1)
        elif (self.update_every == "epoch" and last < epoch - 2) or count == 0:
            warnings.warn(
                f"{_OWNER}: training starts at epoch {epoch}, after start_epoch="
                f"{self.start_epoch}, with an average that lacks epochs "
                f"{max(last + 1, self.start_epoch)}..{epoch - 1} (it holds {count} snapshot(s))."
                " To resume a run, pass resume_from=<its checkpoint> or call "
                "swa.set_model(model) before model.load_weights(...).", UserWarning,
                stacklevel=3)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_every == "epoch" and epoch >= self.start_epoch:
            self._add_snapshot(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self.update_every == "epoch" or self._epoch < self.start_epoch:
            return
        state = self._state()
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        if step > 0 and step % self.update_every == 0 and step != int(state.last_step.numpy()):
            self._add_snapshot()
            state.last_step.assign(step)

    def on_train_end(self, logs=None):
        if self.count == 0:
            warnings.warn(f"{_OWNER}: no snapshot was averaged (start_epoch={self.start_epoch} "
                          "was never reached); the model keeps its raw weights.", stacklevel=2)
            return
        self.swap_in_average(self.bn_data, self.bn_steps)

    def swap_in_average(self, bn_data=None, bn_steps=None):
        """Put the averaged weights into the model; re-estimate BatchNorm if data is given.

        Keeps the raw weights in ``self.raw_weights`` when ``keep_raw_weights`` is set.
        """
        state = self._state()
        if int(state.count.numpy()) == 0:
            fail(_OWNER, "count", 0, "must be positive before the average is swapped in")
        weights = self.model.trainable_weights
        if self.keep_raw_weights:
            self.raw_weights = [w.numpy() for w in weights]
        for weight, mean in zip(weights, state.means):
            weight.assign(ops.cast(mean.value, weight.dtype))
        if bn_data is not None:
            recompute_batchnorm_statistics(self.model, bn_data, steps=bn_steps)

    def restore_raw_weights(self):
        """Put back the raw weights kept by ``keep_raw_weights=True``."""
        if self.raw_weights is None:
            fail(_OWNER, "raw_weights", None,
                 "are only kept with keep_raw_weights=True after the average was swapped in")
        for weight, value in zip(self.model.trainable_weights, self.raw_weights):
            weight.assign(value)

    def get_config(self):
        return {"start_epoch": self.start_epoch, "update_every": self.update_every,
                "keep_raw_weights": self.keep_raw_weights, "bn_steps": self.bn_steps,
                "name": self.name, "resume_from": self.resume_from}
