"""Stochastic TCE as a Keras callback driving a tf.data class sampler.

Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in Semantic
Segmentation", CVPR Workshops (2021), Algorithm 1.

TensorFlow backend only (it steers a ``tf.data`` pipeline, ``kse.data.class_sampled_dataset``).
TensorFlow is imported inside the functions that need it, never at module import.
"""

import re
import warnings

import keras
import numpy as np

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.callbacks._checkpoint import read_saved_entries

_CLASS_KEY = "tce_class"  # the input-dict key the class-sampled dataset uses
_CLASS_LOG = "_kse_tce_batch_class"
_LOSS_LOG = "_kse_tce_batch_loss"
_STATE_ATTRIBUTE = "_kse_stochastic_tce_state"


class _SamplerState(keras.layers.Layer):
    """Carries the sampler's state inside ``model.save_weights`` / ``load_weights``.

    Attached to the model as a plain (untracked) attribute, it adds no model variable and no
    layer, but Keras' weight saving visits it, so ``BackupAndRestore`` and
    ``ModelCheckpoint(save_weights_only=True)`` save and restore the sampler together with
    the model. A weights file without this entry (saved before the sampler was attached)
    loads and leaves the sampler as it is.
    """

    def __init__(self, sampler, **kwargs):
        super().__init__(name="stochastic_tce_sampler_state", **kwargs)
        self._sampler_ref = [sampler]  # a list keeps Keras from walking into the callback

    def save_own_variables(self, store):
        state = self._sampler_ref[0].get_state()
        log_tilted = state["log_tilted_losses"]
        store["0"] = (np.full(state["num_classes"], np.nan) if log_tilted is None
                      else np.asarray(log_tilted, np.float64))
        store["1"] = np.array([state["updates"], state["skipped"]], np.int64)

    def load_own_variables(self, store):
        if len(store.keys()) == 0:
            return
        log_tilted = np.asarray(store["0"], np.float64)
        counters = np.asarray(store["1"], np.int64)
        self._sampler_ref[0].set_state({
            "log_tilted_losses": None if np.all(np.isnan(log_tilted)) else log_tilted,
            "updates": int(counters[0]), "skipped": int(counters[1]),
            "num_classes": log_tilted.shape[0]})


def _log_name(name):
    return "tce_weight_" + re.sub(r"[^0-9A-Za-z_.\-]+", "_", str(name))


class StochasticTCESampler(keras.callbacks.Callback):
    """Stochastic tilted cross-entropy for ``model.fit``.

    Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in
    Semantic Segmentation", CVPR Workshops (2021), Algorithm 1.

    Pair it with ``kse.data.class_sampled_dataset``: the dataset draws a class ``c`` from
    the weights ``w`` held in its ``tf.Variable`` and a minibatch of images containing ``c``
    (lines 3-4); the model is trained with its compiled, *untilted* loss (line 9); after each
    batch this callback takes that batch's loss ``L_B`` and class ``c`` and updates (lines 6-8)::

        Lt_c <- (1 - gamma) Lt_c + gamma exp(t L_B)
        w    <- Lt / sum(Lt)

    and writes ``w`` into the dataset's variable, so the next draws follow it.

    Numerics: ``Lt`` is kept as ``log Lt`` in float64 and updated with log-sum-exp
    (``logaddexp(log(1 - gamma) + log Lt_c, log gamma + t L_B)``); ``w`` is a softmax of
    ``log Lt``. Nothing overflows for any ``t * L``.

    Start: the paper initialises ``w = Lt = 0``, which makes line 3 undefined (a categorical
    with all-zero probabilities) and line 8 a 0/0. Here ``w`` starts uniform, and at the first
    update every ``Lt_c`` is set to ``exp(t L_B)`` of that first batch (a uniform start on the
    scale of the loss, so that unvisited classes neither dominate nor starve); from then on
    line 7 applies. ``t = 0`` keeps ``w`` uniform; ``t < 0`` favours the easy classes.

    Which loss: ``L_B`` is the value Keras reports for the batch (the compiled loss plus any
    regularisation losses, before loss scaling). Under ``tf.distribute.MirroredStrategy``
    it is the mean over replicas of each replica's loss on its share of the global batch
    (the global batch loss when the shares are equal); the whole global batch is one class
    draw. How ``c`` is known: the dataset puts the batch's class into the input dict
    (``"tce_class"``); this callback wraps the model's ``train_step`` while fitting, strips
    the class before the model sees the batch and returns it, with the batch loss, through
    the step's outputs. The class is thus exactly the one of the batch just trained,
    regardless of prefetching; prefetching only delays when new weights reach the draws
    (see ``class_sampled_dataset``). ``steps_per_execution`` must be 1 (each step's pair
    is needed).

    Logging: at each epoch end ``w`` is added to the logs as ``tce_weight_<class>`` scalars,
    so ``History`` records them and a ``keras.callbacks.TensorBoard`` placed *after* this
    callback in the list writes them as scalars.

    Checkpoints: the state (``log Lt``, counters) is saved with ``model.save_weights``
    (hence by ``BackupAndRestore`` and weight-only ``ModelCheckpoint``) and restored by
    ``model.load_weights``, which also writes the restored ``w`` into the dataset's variable;
    ``get_state``/``set_state`` give it as a dict. A run resumed with ``BackupAndRestore``
    continues with the weights of the last backup. Keras restores the state only into a
    model this sampler is attached to: for a model loaded or built fresh, pass
    ``resume_from=<the .keras or .weights.h5 checkpoint>`` (or call
    ``sampler.set_model(model)`` before ``model.load_weights``); a fit that starts after
    epoch 0 with a sampler that has never updated warns.

    Args:
        t: tilt (finite real).
        gamma: rate of the linear dynamic of line 7, in (0, 1].
        sampling_weights: the dataset's weight variable (``dataset.sampling_weights``), or
            the dataset itself.
        class_names: optional names of the K classes for the log keys (default 0..K-1).
        resume_from: optional ``.keras`` or ``.weights.h5`` checkpoint whose sampler state
            is restored when the sampler is attached to a model (``ValueError`` if the file
            holds none).

    Example:
        >>> from keras_seg_extras.data import class_sampled_dataset
        >>> labels = np.zeros((6, 8, 8), "uint8")
        >>> labels[:3, :4], labels[3:, 4:] = 1, 2
        >>> ds = class_sampled_dataset(np.zeros((6, 8, 8, 1), "uint8"), labels, num_classes=3,
        ...                            batch_size=2, seed=0)
        >>> inputs = keras.Input((8, 8, 1), name="image")   # the dataset's image_key
        >>> model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
        >>> model.compile(optimizer="sgd",
        ...               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> sampler = StochasticTCESampler(1.0, 0.1, ds.sampling_weights)
        >>> _ = model.fit(ds, steps_per_epoch=4, epochs=1, verbose=0, callbacks=[sampler])
        >>> sampler.get_state()["updates"], round(float(sampler.weights().sum()), 6)
        (4, 1.0)
    """

    def __init__(self, t, gamma, sampling_weights, class_names=None, resume_from=None):
        super().__init__()
        owner = type(self).__name__
        self.t = check_number(owner, "t", t)
        self.gamma = check_number(owner, "gamma", gamma, minimum=0.0, maximum=1.0,
                                  min_inclusive=False)
        variable = getattr(sampling_weights, "sampling_weights", sampling_weights)
        if not hasattr(variable, "assign") or len(getattr(variable, "shape", ())) != 1:
            fail(owner, "sampling_weights", sampling_weights,
                 "must be the (K,) weight variable of kse.data.class_sampled_dataset "
                 "(dataset.sampling_weights) or that dataset")
        self.sampling_weights = variable
        self.num_classes = int(variable.shape[0])
        if class_names is None:
            class_names = [str(c) for c in range(self.num_classes)]
        class_names = [str(n) for n in class_names]
        if len(class_names) != self.num_classes:
            fail(owner, "class_names", class_names, f"must name {self.num_classes} classes")
        self.class_names = class_names
        self._log_tilted = None
        self._updates = 0
        self._skipped = 0
        self._installed = None
        self.resume_from = resume_from
        self._first_epoch = True

    # ------------------------------------------------------------------ state

    def weights(self):
        """Current sampling weights ``w`` (K,), float64, summing to 1."""
        if self._log_tilted is None:
            return np.full(self.num_classes, 1.0 / self.num_classes)
        shifted = self._log_tilted - np.max(self._log_tilted)
        w = np.exp(shifted)
        return w / w.sum()

    def get_state(self):
        """The sampler's state as a dict (``log_tilted_losses`` is None before any update)."""
        return {"log_tilted_losses": None if self._log_tilted is None
                else self._log_tilted.copy(),
                "updates": self._updates, "skipped": self._skipped,
                "num_classes": self.num_classes}

    def set_state(self, state):
        """Restore a ``get_state`` dict and write its weights into the dataset's variable."""
        owner = type(self).__name__
        log_tilted = state.get("log_tilted_losses")
        if log_tilted is not None:
            log_tilted = np.asarray(log_tilted, np.float64)
            if log_tilted.shape != (self.num_classes,):
                fail(owner, "state", f"log_tilted_losses of shape {log_tilted.shape}",
                     f"must have shape ({self.num_classes},)")
            log_tilted = log_tilted.copy()
        self._log_tilted = log_tilted
        self._updates = int(state.get("updates", 0))
        self._skipped = int(state.get("skipped", 0))
        self._write_weights()

    def _write_weights(self):
        self.sampling_weights.assign(self.weights().astype(np.float32))

    def update(self, class_id, batch_loss):
        """Algorithm 1, lines 6-8, for one batch of class ``class_id`` with loss ``batch_loss``."""
        c = int(class_id)
        if not 0 <= c < self.num_classes:
            fail(type(self).__name__, "class_id", class_id, f"must lie in [0, {self.num_classes})")
        if not np.isfinite(batch_loss):
            self._skipped += 1
            warnings.warn(f"{type(self).__name__}: batch loss {batch_loss!r} is not finite; "
                          "the sampling weights were not updated for this batch.")
            return
        tilted = self.t * float(batch_loss)  # log of exp(t L_B)
        if self._log_tilted is None:
            self._log_tilted = np.full(self.num_classes, tilted, np.float64)
        elif self.gamma == 1.0:
            self._log_tilted[c] = tilted
        else:
            self._log_tilted[c] = np.logaddexp(np.log1p(-self.gamma) + self._log_tilted[c],
                                               np.log(self.gamma) + tilted)
        self._updates += 1
        self._write_weights()

    # ------------------------------------------------------------------ Keras hooks

    def set_model(self, model):
        super().set_model(model)
        holder = getattr(model, _STATE_ATTRIBUTE, None)
        if holder is None or holder._sampler_ref[0] is not self:
            holder = _SamplerState(self)
            object.__setattr__(model, _STATE_ATTRIBUTE, holder)
            if self.resume_from is not None:
                holder.load_own_variables(read_saved_entries(
                    type(self).__name__, self.resume_from, _STATE_ATTRIBUTE, "sampler state"))
                self.resume_from = None  # read once; later set_model calls keep the state
        self._install(model)

    def on_train_begin(self, logs=None):
        if getattr(self.model, "steps_per_execution", 1) != 1:
            fail(type(self).__name__, "model.steps_per_execution",
                 self.model.steps_per_execution,
                 "must be 1 (each step's class and loss are needed)")
        self._install(self.model)
        self._write_weights()
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch and epoch > 0 and self._updates == 0:
            warnings.warn(
                f"{type(self).__name__}: training starts at epoch {epoch} with a sampler that "
                "has never updated (uniform weights). To resume a run, pass resume_from=<its "
                "checkpoint> or call sampler.set_model(model) before model.load_weights(...).",
                UserWarning, stacklevel=2)
        self._first_epoch = False

    def on_train_batch_end(self, batch, logs=None):
        if logs is None or _CLASS_LOG not in logs:
            raise ValueError(
                f"{type(self).__name__}: the training batch carried no '{_CLASS_KEY}' entry; "
                "train on kse.data.class_sampled_dataset(...) with this callback.")
        class_id = float(logs.pop(_CLASS_LOG))
        batch_loss = float(logs.pop(_LOSS_LOG))
        self.update(int(round(class_id)), batch_loss)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # Keras hands the last step's outputs to the epoch end too: drop the private pair.
            logs.pop(_CLASS_LOG, None)
            logs.pop(_LOSS_LOG, None)
            for name, value in zip(self.class_names, self.weights()):
                logs[_log_name(name)] = float(value)

    def on_train_end(self, logs=None):
        self._uninstall()

    # ------------------------------------------------------------------ train-step wrapper

    def _install(self, model):
        if self._installed is model:
            return
        self._uninstall()
        if keras.backend.backend() != "tensorflow":
            fail(type(self).__name__, "keras backend", keras.backend.backend(),
                 "must be 'tensorflow' (the sampler drives a tf.data pipeline)")
        had_own = "train_step" in model.__dict__
        original = model.train_step
        owner = type(self).__name__

        def train_step(data):
            import tensorflow as tf

            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            if not (isinstance(x, dict) and _CLASS_KEY in x):
                raise ValueError(
                    f"{owner}: the training batch carried no '{_CLASS_KEY}' entry; train on "
                    "kse.data.class_sampled_dataset(...) with this callback.")
            x = dict(x)
            class_ids = x.pop(_CLASS_KEY)
            if len(x) == 1:
                x = next(iter(x.values()))
            recorded = []
            inner = model.compute_loss
            had_compute_loss = "compute_loss" in model.__dict__

            def compute_loss(*args, **kwargs):
                value = inner(*args, **kwargs)
                recorded.append(value)
                return value

            object.__setattr__(model, "compute_loss", compute_loss)
            try:
                logs = original(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))
            finally:
                if had_compute_loss:
                    object.__setattr__(model, "compute_loss", inner)
                else:
                    object.__delattr__(model, "compute_loss")
            # Keras divides each replica's loss by the replica count; undo it so that the
            # cross-replica "mean" of the logs gives the mean of the replicas' losses.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = tf.cast(recorded[0], tf.float32) * float(replicas)
            logs = dict(logs)
            logs[_CLASS_LOG] = tf.cast(tf.reshape(class_ids, [-1])[0], tf.float32)
            logs[_LOSS_LOG] = loss
            return logs

        object.__setattr__(model, "train_step", train_step)
        model.train_function = None
        self._installed = model
        self._restore = (model, had_own, original)

    def _uninstall(self):
        if self._installed is None:
            return
        model, had_own, original = self._restore
        if had_own:
            object.__setattr__(model, "train_step", original)
        else:
            object.__delattr__(model, "train_step")
        model.train_function = None
        self._installed = None
