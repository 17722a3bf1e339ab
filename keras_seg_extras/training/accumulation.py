"""Gradient accumulation that is exact, distributes, and advances schedules per applied update.

The "SIIM-ACR Pneumothorax Segmentation" work report (2019), section 4.1.3: with batches of
4 images at 512 px, the gradients of 8 micro-batches are accumulated before one update, simulating a batch of 32.

Keras 3 (3.15) offers ``gradient_accumulation_steps=N`` on every optimizer. What it does
right: the mean ``(g_1 + ... + g_N) / N`` of N micro-batch gradients is applied once, which
for equal micro-batches of a mean loss is exactly the gradient of the batch of N*b samples.
What is not right:

1. **Learning-rate schedules advance per micro-batch.** Keras evaluates the schedule on the
   micro-step counter, so the k-th applied update uses ``schedule(k*N - 1)`` instead of
   ``schedule(k - 1)``: a cosine over "45 epochs" ends N times too early.
2. **It fails under ``tf.distribute.MirroredStrategy``**: the switch between "update" and
   "accumulate" is a ``cond`` in the replica context whose update branch all-reduces
   ("merge_call called while defining a new graph or a tf.function").

:class:`GradientAccumulationOptimizer` (what :func:`accumulating_optimizer` returns on the
TensorFlow and torch backends) wraps any optimizer: it keeps per-variable accumulators and a
micro-step counter of its own, makes the switch in the cross-replica context (as Keras's
``LossScaleOptimizer`` does), and lets the inner optimizer apply the mean gradient, so the
inner optimizer's ``iterations`` count applied updates and its schedule is exact: the k-th
update uses ``schedule(k - 1)`` and after N updates ``learning_rate == schedule(N)``. On JAX
(no tf.distribute) Keras's own mechanism is used with the schedule wrapped in
:class:`AccumulatedSchedule` (``schedule(floor(micro_step / N))``, equally exact).

3. **BatchNorm sees micro-batches.** Accumulation only enlarges the batch of the backward
   pass; each forward pass normalises with the statistics of its b samples and updates the
   moving averages once per micro-batch. Nothing short of synchronising statistics across
   micro-batches fixes the former (use GroupNorm for tiny batches); for the latter,
   :func:`set_batchnorm_momentum_for_accumulation` sets every BatchNorm momentum to
   ``m ** (1 / N)``, so that N micro-batch updates decay the old average by ``m`` exactly
   as one update with the large batch would.
4. **The effective batch is implicit.** :func:`effective_batch_size` states it:
   ``micro_batch x accumulation_steps x replicas``.

Limits: a ``LossScaleOptimizer`` step whose gradients are not finite is skipped entirely (as
without accumulation), so that window holds one micro-batch more. Under MirroredStrategy the
accumulators are per replica and only the first replica's values are written into
checkpoints: resume from checkpoints taken at accumulation boundaries (make
``steps_per_epoch`` a multiple of N when checkpointing per epoch).
"""

import keras

from keras_seg_extras._common import check_number, fail, register

_OWNER = "accumulating_optimizer"


@register
class AccumulatedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Evaluate a schedule at the number of applied updates under gradient accumulation.

    ``lr(micro_step) = schedule(floor(micro_step / accumulation_steps))``.

    Keras calls a schedule with the micro-step counter; at the micro-step that applies the
    k-th update (1-based) that counter is ``k * N - 1``, so the wrapped schedule sees
    ``k - 1``: the same rate that update would use without accumulation.

    Args:
        schedule: a ``LearningRateSchedule`` (or serialised config of one).
        accumulation_steps: N >= 1.

    Example:
        >>> inner = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=1000)
        >>> schedule = AccumulatedSchedule(inner, accumulation_steps=8)
    """

    def __init__(self, schedule, accumulation_steps):
        owner = type(self).__name__
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            fail(owner, "schedule", schedule, "must be a keras LearningRateSchedule")
        self.schedule = schedule
        self.accumulation_steps = check_number(owner, "accumulation_steps", accumulation_steps,
                                               minimum=1, integer=True)

    def __call__(self, step):
        applied = keras.ops.floor_divide(step, self.accumulation_steps)
        return self.schedule(applied)

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "accumulation_steps": self.accumulation_steps}


@register
class GradientAccumulationOptimizer(keras.optimizers.Optimizer):
    """Accumulate the gradients of N batches, then let the inner optimizer apply their mean once.

    ``update = inner.apply((g_1 + ... + g_N) / N)`` every N-th call of ``apply``; the other
    calls only add their gradient to per-variable accumulators. For N micro-batches of equal
    size and a mean loss this is exactly the gradient of one batch of N x b samples.

    Why not Keras's own ``gradient_accumulation_steps`` on TensorFlow: Keras 3.15 switches
    between "update" and "accumulate" with a ``cond`` in the replica context whose update
    branch all-reduces, which ``tf.distribute.MirroredStrategy`` rejects ("merge_call called
    while defining a new graph"); and it evaluates learning-rate schedules on the micro-step
    counter. Here the switch happens in the cross-replica context (as Keras's own
    ``LossScaleOptimizer`` does) and the inner optimizer counts only applied updates, so its
    ``iterations`` and its learning-rate schedule advance once per update: after N updates
    ``learning_rate == schedule(N)``.

    Wrap it in a ``LossScaleOptimizer`` for mixed precision (gradients are unscaled before
    they are accumulated); :func:`accumulating_optimizer` does that for you.

    Args:
        inner_optimizer: the optimizer that applies the updates (unbuilt, without
            ``gradient_accumulation_steps``).
        accumulation_steps: N >= 2 micro-batches per update.
        name: optional name.

    Example:
        >>> optimizer = GradientAccumulationOptimizer(keras.optimizers.Adam(1e-3), 8)
    """

    def __init__(self, inner_optimizer, accumulation_steps, name=None, **kwargs):
        owner = type(self).__name__
        if kwargs:
            fail(owner, "kwargs", sorted(kwargs), "are not supported; set them on inner_optimizer")
        inner_optimizer = keras.optimizers.get(inner_optimizer)
        if getattr(inner_optimizer, "gradient_accumulation_steps", None):
            fail(owner, "inner_optimizer", inner_optimizer,
                 "already has gradient_accumulation_steps="
                 f"{inner_optimizer.gradient_accumulation_steps}; pass the optimizer without it")
        if isinstance(inner_optimizer, keras.optimizers.LossScaleOptimizer):
            fail(owner, "inner_optimizer", inner_optimizer,
                 "must not be a LossScaleOptimizer; wrap this optimizer in one instead")
        steps = check_number(owner, "accumulation_steps", accumulation_steps, minimum=2,
                             integer=True)
        super().__init__(learning_rate=0.0, name=name)
        self.accumulation_steps = steps
        self.inner_optimizer = inner_optimizer

    def build(self, var_list):
        if self.built:
            return
        self.micro_step = self.add_variable(shape=(), dtype="int", initializer="zeros",
                                            aggregation="only_first_replica", name="micro_step")
        self.accumulators = [self.add_variable_from_reference(v, name="accumulator")
                             for v in var_list]
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        """Applied updates (the inner optimizer's counter)."""
        return self.inner_optimizer.iterations

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def _accumulators_for(self, variables):
        return [self.accumulators[self._get_variable_index(v)] for v in variables]

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        pairs = [(g, v) for g, v in zip(grads, trainable_variables) if g is not None]
        if not pairs:
            return
        grads = [keras.ops.convert_to_tensor(g) for g, _ in pairs]
        variables = [v for _, v in pairs]
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.distribute.get_replica_context().merge_call(
                self._tf_cross_replica_apply, args=(grads, variables))
        else:
            self._common_apply(grads, variables)

    def _is_update_step(self):
        return keras.ops.equal((self.micro_step + 1) % self.accumulation_steps, 0)

    def _mean_gradients(self, grads, variables):
        return [(g + keras.ops.cast(a, g.dtype)) / self.accumulation_steps
                for g, a in zip(grads, self._accumulators_for(variables))]

    def _reset(self, variables):
        for a in self._accumulators_for(variables):
            a.assign(keras.ops.zeros(a.shape, a.dtype))

    def _common_apply(self, grads, variables):
        def update():
            self.inner_optimizer.apply(self._mean_gradients(grads, variables), variables)
            self._reset(variables)

        def accumulate():
            for g, a in zip(grads, self._accumulators_for(variables)):
                a.assign_add(keras.ops.cast(g, a.dtype))

        keras.ops.cond(self._is_update_step(), update, accumulate)
        self.micro_step.assign_add(1)

    def _tf_cross_replica_apply(self, distribution, grads, variables):
        accumulators = [a.value for a in self._accumulators_for(variables)]

        def replica_update(grads):
            self.inner_optimizer.apply(self._mean_gradients(grads, variables), variables)

        def update():
            distribution.extended.call_for_each_replica(replica_update, args=(grads,))
            self._reset(variables)

        def accumulate():
            for g, a in zip(grads, accumulators):
                distribution.extended.update(
                    a, lambda var, grad: var.assign_add(keras.ops.cast(grad, var.dtype)),
                    args=(g,), group=False)

        keras.ops.cond(self._is_update_step(), update, accumulate)
        self.micro_step.assign_add(1)

    def get_config(self):
        return {"name": self.name,
                "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
                "accumulation_steps": self.accumulation_steps}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"),
                                                      custom_objects=custom_objects)
        return cls(inner, **config)


def accumulating_optimizer(optimizer, accumulation_steps):
    """An optimizer that accumulates gradients over ``accumulation_steps`` batches.

    On TensorFlow (and torch): a :class:`GradientAccumulationOptimizer` around ``optimizer``
    (inside the ``LossScaleOptimizer`` when one is given), which works under
    ``MirroredStrategy`` and advances schedules per applied update. On JAX, where Keras's
    own mechanism runs statelessly and has no distribution problem: a copy with Keras's
    ``gradient_accumulation_steps`` and the schedule wrapped in :class:`AccumulatedSchedule`.
    With ``accumulation_steps=1`` the optimizer is returned unchanged.

    Args:
        optimizer: an unbuilt optimizer (or its string name) without
            ``gradient_accumulation_steps``; may be a ``LossScaleOptimizer``.
        accumulation_steps: N >= 1 micro-batches per applied update.

    Returns:
        An unbuilt optimizer whose ``iterations`` counts applied updates.

    Example:
        >>> from keras_seg_extras.training import CosineAnnealingWithWarmup
        >>> schedule = CosineAnnealingWithWarmup(1e-3, total_steps=500)
        >>> optimizer = accumulating_optimizer(keras.optimizers.Adam(schedule), 8)
        >>> type(optimizer).__name__, optimizer.accumulation_steps   # TensorFlow backend
        ('GradientAccumulationOptimizer', 8)
    """
    steps = check_number(_OWNER, "accumulation_steps", accumulation_steps, minimum=1, integer=True)
    optimizer = keras.optimizers.get(optimizer)
    if getattr(optimizer, "built", False):
        fail(_OWNER, "optimizer", optimizer, "must not be built yet (pass a fresh optimizer)")
    if isinstance(optimizer, GradientAccumulationOptimizer):
        fail(_OWNER, "optimizer", optimizer, "already accumulates gradients")
    if getattr(optimizer, "gradient_accumulation_steps", None):
        fail(_OWNER, "optimizer", optimizer,
             f"already has gradient_accumulation_steps={optimizer.gradient_accumulation_steps}; "
             "pass the optimizer without it")
    if steps == 1:
        return optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        inner = accumulating_optimizer(optimizer.inner_optimizer, steps)
        return keras.optimizers.LossScaleOptimizer(
            inner, initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps)
    if keras.backend.backend() != "jax":
        return GradientAccumulationOptimizer(optimizer, steps)
    return _keras_native_accumulation(optimizer, steps)


def _keras_native_accumulation(optimizer, steps):
    """Keras's ``gradient_accumulation_steps`` with the schedule evaluated per applied update."""
    config = optimizer.get_config()
    learning_rate = optimizer._learning_rate
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        config["learning_rate"] = AccumulatedSchedule(learning_rate, steps)
    elif callable(learning_rate) and not isinstance(learning_rate, keras.Variable):
        fail(_OWNER, "optimizer", optimizer,
             "has a plain callable learning rate; use a float or a LearningRateSchedule")
    config["gradient_accumulation_steps"] = steps
    return type(optimizer).from_config(config)


def effective_batch_size(batch_size, accumulation_steps=1, replicas=1):
    """The number of samples behind one applied update: ``batch_size x accumulation_steps x replicas``.

    Args:
        batch_size: micro-batch per replica (the ``fit`` batch divided by ``replicas``).
        accumulation_steps: N micro-batches per update.
        replicas: ``strategy.num_replicas_in_sync``.

    Example:
        >>> effective_batch_size(4, 8)   # the report's 512 px stage
        32
    """
    owner = "effective_batch_size"
    return (check_number(owner, "batch_size", batch_size, minimum=1, integer=True)
            * check_number(owner, "accumulation_steps", accumulation_steps, minimum=1, integer=True)
            * check_number(owner, "replicas", replicas, minimum=1, integer=True))
