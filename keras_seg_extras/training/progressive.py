"""Multi-resolution ("progressive") training in stages, resumable mid-stage.

The "SIIM-ACR Pneumothorax Segmentation" work report (2019), section 4.1.2 and Fig. 9: train
at 256 px, then continue with the same weights at 512 px and 768 px, each stage with its own batch size, gradient accumulation, loss and
learning rate (4.1.3, 4.1.6, 4.1.7), SWA over the last epochs of the last stage. A fully
convolutional model (spatial input dims ``None``) keeps its weights from stage to stage.

Epochs are counted globally across stages (0-based, as Keras's ``initial_epoch``): stage k
covers epochs ``[sum(epochs of earlier stages), ... + stage.epochs)``, so TensorBoard curves
and checkpoints continue, and a per-stage ``StochasticWeightAveraging(start_epoch=...)``
uses the global number (``ProgressiveTrainer.epoch_range(k)`` gives it).
"""

import dataclasses
import json
import math
import os
from typing import Any, Callable, Optional, Sequence

import keras

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.training.accumulation import accumulating_optimizer
from keras_seg_extras.training.batchnorm import set_batchnorm_momentum_for_accumulation

_OWNER = "ProgressiveTrainer"


@dataclasses.dataclass
class Stage:
    """One resolution stage of a :class:`ProgressiveTrainer`.

    Attributes:
        image_size: side length in pixels, or ``(height, width)``; each a multiple of 32
            (the five stride-2 levels of the U-Net encoders; SIIM-ACR report, 4.1.2).
        epochs: number of epochs of this stage (>= 1).
        batch_size: micro-batch passed to the dataset factories (the global batch under a
            distribution strategy).
        loss: a Keras loss (object, function or name) for this stage.
        learning_rate: a float, a ``LearningRateSchedule`` (evaluated per applied update),
            or a callable ``f(total_updates) -> float | LearningRateSchedule`` that receives
            the stage's number of applied updates (epochs x ceil(steps / accumulation)),
            e.g. ``lambda total: CosineAnnealingWithWarmup(5e-4, total)``.
        accumulation_steps: micro-batches per update (SIIM-ACR report: 8 at 512 px, 12 at 768 px).
            The effective batch is ``batch_size x accumulation_steps``.
        optimizer: ``None`` (Adam, the report's), an optimizer name, or a callable
            ``f(learning_rate) -> optimizer``. Wrapped for accumulation by the trainer.
        callbacks: callbacks used in this stage only (e.g. SWA over its last epochs).
        steps_per_epoch: micro-batches per epoch; default: the dataset's cardinality.
        scale_batchnorm_momentum: set BatchNorm momentum to ``m ** (1 / accumulation_steps)``
            for this stage (see ``set_batchnorm_momentum_for_accumulation``).
        name: label used in logs (default ``"stage<k>_<size>px"``).

    Example:
        >>> stage = Stage(512, epochs=50, batch_size=4, loss="binary_crossentropy",
        ...               learning_rate=5e-4, accumulation_steps=8)
        >>> stage.batch_size * stage.accumulation_steps   # the effective batch
        32
    """

    image_size: Any
    epochs: int
    batch_size: int
    loss: Any
    learning_rate: Any = 1e-3
    accumulation_steps: int = 1
    optimizer: Any = None
    callbacks: Sequence[keras.callbacks.Callback] = ()
    steps_per_epoch: Optional[int] = None
    scale_batchnorm_momentum: bool = False
    name: Optional[str] = None

    def validate(self, index):
        owner = f"Stage {index}"
        size = self.image_size
        sizes = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
        if len(sizes) != 2:
            fail(owner, "image_size", size, "must be an int or (height, width)")
        for value in sizes:
            check_number(owner, "image_size", value, minimum=32, integer=True)
            if value % 32:
                fail(owner, "image_size", size, "must be a multiple of 32")
        self.image_size = size if not isinstance(size, list) else tuple(size)
        self.epochs = check_number(owner, "epochs", self.epochs, minimum=1, integer=True)
        self.batch_size = check_number(owner, "batch_size", self.batch_size, minimum=1,
                                       integer=True)
        self.accumulation_steps = check_number(owner, "accumulation_steps",
                                               self.accumulation_steps, minimum=1, integer=True)
        if self.steps_per_epoch is not None:
            self.steps_per_epoch = check_number(owner, "steps_per_epoch", self.steps_per_epoch,
                                                minimum=1, integer=True)
        if self.loss is None:
            fail(owner, "loss", None, "must be given")
        lr = self.learning_rate
        if not (isinstance(lr, (int, float, keras.optimizers.schedules.LearningRateSchedule))
                or callable(lr)) or isinstance(lr, bool):
            fail(owner, "learning_rate", lr,
                 "must be a float, a LearningRateSchedule or a callable of the update count")
        self.callbacks = list(self.callbacks or ())
        for callback in self.callbacks:
            if not isinstance(callback, keras.callbacks.Callback):
                fail(owner, "callbacks", callback, "must hold keras.callbacks.Callback objects")
        if self.name is None:
            self.name = f"stage{index}_{'x'.join(str(s) for s in sizes)}px"
        return sizes


class _StageCheckpoint(keras.callbacks.Callback):
    """Writes weights (model + optimizer) and the stage/epoch position after every epoch."""

    def __init__(self, trainer, stage_index):
        super().__init__()
        self.trainer, self.stage_index = trainer, stage_index

    def on_epoch_end(self, epoch, logs=None):
        self.trainer._save_checkpoint(self.stage_index, epoch + 1, complete=False)


class ProgressiveTrainer:
    """Train one model through resolution stages, carrying weights and callbacks.

    For each :class:`Stage` in order the trainer builds the datasets at the stage's image
    size (``train_data(image_size, batch_size)``, ``validation_data(image_size,
    batch_size)``, each returning a ``tf.data.Dataset`` or anything ``fit`` accepts),
    recompiles the model with the stage's loss and a fresh optimizer (Adam by default; with
    gradient accumulation through :func:`accumulating_optimizer`, so schedules advance per
    applied update), and calls ``fit`` for the stage's epochs. Weights carry over (the model
    must be fully convolutional: spatial input dims ``None``). ``callbacks`` are passed to
    every stage (a ``ModelCheckpoint`` keeps its best value across stages); each stage adds
    its own ``stage.callbacks``.

    With ``checkpoint_dir`` the trainer writes ``latest.weights.h5`` (model, optimizer and
    SWA state) and ``progress.json`` after every epoch and after every completed stage
    (after the stage's ``on_train_end``, so SWA weights are in it). A new trainer with the
    same arguments continues where the last one stopped, mid-stage included, ending with
    the same weights as an uninterrupted run as long as the data factories yield the same
    batches for a given epoch (no shuffling that depends on how many epochs were drawn
    before in the same process).

    Args:
        model: a Keras model with input shape ``(None, None, channels)``.
        stages: a list of :class:`Stage`.
        train_data: ``f(image_size, batch_size) -> dataset``; ``image_size`` is what the
            stage gave (int or (height, width)).
        validation_data: optional ``f(image_size, batch_size) -> dataset``.
        callbacks: callbacks for every stage.
        metrics: metrics passed to every ``compile``.
        checkpoint_dir: optional directory for resumable checkpoints.
        strategy: optional ``tf.distribute`` strategy; compile runs in its scope (default:
            the model's own strategy). Build the model in the same scope.
        compile_kwargs: extra ``compile`` arguments (e.g. ``{"jit_compile": False}``).
        verbose: ``fit`` verbosity.

    Example:
        >>> import numpy as np, tensorflow as tf
        >>> inputs = keras.Input((None, None, 1))   # fully convolutional: any size
        >>> model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
        >>> def make_train(size, batch_size):
        ...     x = np.ones((4, size, size, 1), "float32")
        ...     return tf.data.Dataset.from_tensor_slices((x, x)).batch(batch_size)
        >>> trainer = ProgressiveTrainer(model, stages=[
        ...     Stage(32, epochs=1, batch_size=2, loss="mse", learning_rate=1e-2),
        ...     Stage(64, epochs=2, batch_size=1, accumulation_steps=2, loss="mse",
        ...           learning_rate=1e-3)], train_data=make_train, verbose=0)
        >>> [len(history.history["loss"]) for history in trainer.fit()], trainer.epoch_range(1)
        ([1, 2], (1, 3))
    """

    def __init__(self, model, stages, train_data, validation_data=None, callbacks=(),
                 metrics=None, checkpoint_dir=None, strategy=None, compile_kwargs=None,
                 verbose=1):
        if not isinstance(model, keras.Model):
            fail(_OWNER, "model", model, "must be a keras.Model")
        self.model = model
        if not stages:
            fail(_OWNER, "stages", stages, "must hold at least one Stage")
        for index, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                fail(_OWNER, "stages", stage, "must hold Stage objects")
            stage.validate(index)
        self.stages = list(stages)
        self._check_fully_convolutional()
        if not callable(train_data):
            fail(_OWNER, "train_data", train_data,
                 "must be a callable (image_size, batch_size) -> dataset")
        if validation_data is not None and not callable(validation_data):
            fail(_OWNER, "validation_data", validation_data,
                 "must be a callable (image_size, batch_size) -> dataset")
        self.train_data, self.validation_data = train_data, validation_data
        self.callbacks = list(callbacks or ())
        self.metrics = metrics
        self.checkpoint_dir = None if checkpoint_dir is None else str(checkpoint_dir)
        self.strategy = strategy
        self.compile_kwargs = dict(compile_kwargs or {})
        self.verbose = verbose

    # ------------------------------------------------------------------ helpers

    def _check_fully_convolutional(self):
        for shape in [tuple(t.shape) for t in self.model.inputs]:
            if len(shape) != 4:
                fail(_OWNER, "model", f"input shape {shape}", "must take images (B, H, W, C)")
            for stage in self.stages:
                size = stage.image_size
                sizes = (size, size) if not isinstance(size, tuple) else size
                for have, want in zip(shape[1:3], sizes):
                    if have is not None and have != want:
                        fail(_OWNER, "model", f"input shape {shape}",
                             "must have undefined spatial dims (None, None) to change "
                             f"resolution (stage {stage.name} needs {sizes})")

    def epoch_range(self, stage_index):
        """``(first, end)`` global epochs of stage ``stage_index`` (end exclusive)."""
        first = sum(stage.epochs for stage in self.stages[:stage_index])
        return first, first + self.stages[stage_index].epochs

    def _scope(self):
        strategy = self.strategy or getattr(self.model, "distribute_strategy", None)
        if strategy is None:
            import contextlib

            return contextlib.nullcontext()
        return strategy.scope()

    @property
    def _weights_path(self):
        return os.path.join(self.checkpoint_dir, "latest.weights.h5")

    @property
    def _progress_path(self):
        return os.path.join(self.checkpoint_dir, "progress.json")

    def _save_checkpoint(self, stage_index, epochs_done, complete):
        if self.checkpoint_dir is None:
            return
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        tmp_weights = self._weights_path + ".tmp.weights.h5"
        self.model.save_weights(tmp_weights, overwrite=True)
        os.replace(tmp_weights, self._weights_path)
        tmp_progress = self._progress_path + ".tmp"
        with open(tmp_progress, "w") as handle:
            json.dump({"stage": stage_index, "epochs_done": epochs_done, "complete": complete,
                       "stage_name": self.stages[stage_index].name}, handle)
        os.replace(tmp_progress, self._progress_path)

    def progress(self):
        """The saved position ``{"stage", "epochs_done", "complete"}``, or None."""
        if self.checkpoint_dir is None or not os.path.exists(self._progress_path):
            return None
        with open(self._progress_path) as handle:
            return json.load(handle)

    @staticmethod
    def _steps(dataset, stage):
        if stage.steps_per_epoch is not None:
            return stage.steps_per_epoch
        try:
            import tensorflow as tf

            if isinstance(dataset, tf.data.Dataset):
                count = int(dataset.cardinality())
                return count if count > 0 else None
        except ImportError:
            pass
        try:
            return len(dataset)
        except TypeError:
            return None

    def _optimizer(self, stage, steps):
        learning_rate = stage.learning_rate
        if callable(learning_rate) and not isinstance(
                learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            if steps is None:
                fail(f"Stage {stage.name}", "steps_per_epoch", None,
                     "must be given when the dataset size is unknown and learning_rate "
                     "is a callable of the update count")
            total = stage.epochs * math.ceil(steps / stage.accumulation_steps)
            learning_rate = learning_rate(total)
        if isinstance(learning_rate, (int, float)):
            learning_rate = float(learning_rate)
        if stage.optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate)
        elif isinstance(stage.optimizer, str):
            try:
                template = keras.optimizers.get(stage.optimizer)
            except ValueError:
                fail(f"Stage {stage.name}", "optimizer", stage.optimizer,
                     "must name a Keras optimizer")
            config = template.get_config()
            config["learning_rate"] = learning_rate
            optimizer = type(template).from_config(config)
        elif callable(stage.optimizer):
            optimizer = stage.optimizer(learning_rate)
        else:
            fail(f"Stage {stage.name}", "optimizer", stage.optimizer,
                 "must be None, a name or a callable learning_rate -> optimizer")
        return accumulating_optimizer(optimizer, stage.accumulation_steps)

    # ------------------------------------------------------------------ training

    def fit(self):
        """Run (or resume) every stage; returns the list of ``History`` objects run now."""
        start_stage, initial_epoch, load = 0, None, False
        state = self.progress()
        if state is not None:
            if not 0 <= state["stage"] < len(self.stages):
                fail(_OWNER, "checkpoint_dir", self.checkpoint_dir,
                     f"holds progress for stage {state['stage']} but there are "
                     f"{len(self.stages)} stages")
            load = True
            if state["complete"]:
                start_stage = state["stage"] + 1
                # Weights only: the next stage starts with a fresh optimizer.
                self.model.load_weights(self._weights_path)
                load = False
            else:
                start_stage, initial_epoch = state["stage"], state["epochs_done"]
        histories = []
        for index in range(start_stage, len(self.stages)):
            histories.append(self._run_stage(index, initial_epoch if load else None))
            load = False
        return histories

    def _run_stage(self, index, resume_epoch):
        stage = self.stages[index]
        first, end = self.epoch_range(index)
        set_batchnorm_momentum_for_accumulation(
            self.model, stage.accumulation_steps if stage.scale_batchnorm_momentum else 1)
        train = self.train_data(stage.image_size, stage.batch_size)
        validation = (None if self.validation_data is None
                      else self.validation_data(stage.image_size, stage.batch_size))
        steps = self._steps(train, stage)
        with self._scope():
            optimizer = self._optimizer(stage, steps)
            self.model.compile(optimizer=optimizer, loss=stage.loss, metrics=self.metrics,
                               **self.compile_kwargs)
        callbacks = self.callbacks + stage.callbacks
        if self.checkpoint_dir is not None:
            callbacks = callbacks + [_StageCheckpoint(self, index)]
        initial = first
        if resume_epoch is not None:
            for callback in callbacks:  # e.g. SWA creates its state before it is restored
                callback.set_model(self.model)
            with self._scope():
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(self._weights_path)
            initial = resume_epoch
        if self.verbose:
            print(f"{_OWNER}: {stage.name} epochs {initial}..{end - 1}, batch {stage.batch_size}"
                  f" x accumulation {stage.accumulation_steps}")
        history = self.model.fit(train, validation_data=validation, epochs=end,
                                 initial_epoch=initial, steps_per_epoch=stage.steps_per_epoch,
                                 callbacks=callbacks, verbose=self.verbose)
        self._save_checkpoint(index, end, complete=True)
        return history
