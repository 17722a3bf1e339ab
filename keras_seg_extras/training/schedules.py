"""Per-step learning-rate schedules: cosine annealing with warm-up, and the cyclic cosine of snapshot ensembles.

Both are registered ``keras.optimizers.schedules.LearningRateSchedule`` subclasses, so they
serialise with the optimizer inside a ``.keras`` file. They are functions of the optimizer
step (the number of applied updates); with gradient accumulation wrap them with
:class:`keras_seg_extras.training.AccumulatedSchedule` (``accumulating_optimizer`` does it)
so that they advance once per applied update and not once per micro-batch.
"""

import math

import keras
from keras import ops

from keras_seg_extras._common import check_number, fail, register


@register
class CosineAnnealingWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then cosine annealing to a final learning rate, per optimizer step.

    The schedule of the "SIIM-ACR Pneumothorax Segmentation" work report (2019; section
    4.1.7, Fig. 11: cosine annealing over 45 epochs from
    an initial learning rate of 5e-4), with an optional linear warm-up. For step ``s``
    (0-based count of applied updates), warm-up length ``W`` and total length ``T``::

        s < W:   lr(s) = lr_w + (lr_0 - lr_w) * s / W
        s >= W:  lr(s) = lr_T + (lr_0 - lr_T) * (1 + cos(pi * min(s - W, T - W) / (T - W))) / 2

    so ``lr(W) = lr_0`` and ``lr(s) = lr_T`` for every ``s >= T``.

    Args:
        learning_rate: peak learning rate ``lr_0`` (> 0), reached at the end of warm-up.
        total_steps: ``T``, the step at which annealing reaches ``final_learning_rate``
            (epochs x updates per epoch); must exceed ``warmup_steps``.
        warmup_steps: ``W`` >= 0 (0: no warm-up).
        final_learning_rate: ``lr_T`` >= 0, at most ``learning_rate``.
        warmup_initial_learning_rate: ``lr_w`` >= 0, the rate at step 0 of the warm-up.
        name: optional name.

    Example:
        >>> schedule = CosineAnnealingWithWarmup(5e-4, total_steps=45 * 100, warmup_steps=100)
        >>> optimizer = keras.optimizers.Adam(schedule)
    """

    def __init__(self, learning_rate, total_steps, warmup_steps=0, final_learning_rate=0.0,
                 warmup_initial_learning_rate=0.0, name=None):
        owner = type(self).__name__
        self.learning_rate = check_number(owner, "learning_rate", learning_rate, minimum=0,
                                          min_inclusive=False)
        self.total_steps = check_number(owner, "total_steps", total_steps, minimum=1, integer=True)
        self.warmup_steps = check_number(owner, "warmup_steps", warmup_steps, minimum=0,
                                         integer=True)
        if self.warmup_steps >= self.total_steps:
            fail(owner, "warmup_steps", warmup_steps,
                 f"must be smaller than total_steps={self.total_steps}")
        self.final_learning_rate = check_number(owner, "final_learning_rate", final_learning_rate,
                                                minimum=0, maximum=self.learning_rate)
        self.warmup_initial_learning_rate = check_number(
            owner, "warmup_initial_learning_rate", warmup_initial_learning_rate, minimum=0)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr0, final = self.learning_rate, self.final_learning_rate
        warm, total = float(self.warmup_steps), float(self.total_steps)
        progress = ops.clip((step - warm) / (total - warm), 0.0, 1.0)
        cosine = final + (lr0 - final) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        start = self.warmup_initial_learning_rate
        warmup = start + (lr0 - start) * step / warm
        return ops.where(step < warm, warmup, cosine)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_learning_rate": self.final_learning_rate,
            "warmup_initial_learning_rate": self.warmup_initial_learning_rate,
            "name": self.name,
        }


@register
class CyclicCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The cyclic cosine annealing of snapshot ensembles (Huang et al., ICLR 2017, eq. 2).

    With ``t`` the 1-based iteration, ``T`` the total number of iterations and ``M`` cycles::

        alpha(t) = alpha_0 / 2 * (cos(pi * mod(t - 1, ceil(T / M)) / ceil(T / M)) + 1)

    The optimizer step ``s`` (0-based applied updates) is ``t - 1``. Each cycle restarts at
    ``alpha_0`` and anneals towards 0; a snapshot is taken at the end of each cycle (see
    :class:`keras_seg_extras.callbacks.SnapshotEnsemble`). The schedule of Huang, Li, Pleiss,
    Liu, Hopcroft and Weinberger, "Snapshot Ensembles: Train 1, Get M for Free", ICLR 2017
    (eq. 2), a restart form of Loshchilov and Hutter's SGDR (ICLR 2017); Okazaki, Kong,
    Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020" (2020, section 2.4) use snapshot
    ensembles for the LADI models.

    Args:
        max_learning_rate: ``alpha_0`` > 0.
        total_steps: ``T`` >= 1, the total number of applied updates.
        cycles: ``M``, 1 <= M <= T.
        name: optional name.

    Example:
        >>> schedule = CyclicCosineSchedule(0.1, total_steps=300, cycles=3)  # cycles of 100 steps
    """

    def __init__(self, max_learning_rate, total_steps, cycles, name=None):
        owner = type(self).__name__
        self.max_learning_rate = check_number(owner, "max_learning_rate", max_learning_rate,
                                              minimum=0, min_inclusive=False)
        self.total_steps = check_number(owner, "total_steps", total_steps, minimum=1, integer=True)
        self.cycles = check_number(owner, "cycles", cycles, minimum=1, maximum=self.total_steps,
                                   integer=True)
        self.name = name

    @property
    def cycle_length(self):
        """``ceil(T / M)``: the number of updates in one cycle."""
        return -(-self.total_steps // self.cycles)

    def __call__(self, step):
        length = self.cycle_length
        position = ops.cast(ops.mod(ops.cast(step, "int64"), length), "float32")
        return self.max_learning_rate / 2.0 * (ops.cos(math.pi * position / length) + 1.0)

    def get_config(self):
        return {"max_learning_rate": self.max_learning_rate, "total_steps": self.total_steps,
                "cycles": self.cycles, "name": self.name}
