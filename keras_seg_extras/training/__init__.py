"""keras_seg_extras.training

Backend-agnostic parts are imported here; ``distribute`` (tf.distribute) imports TensorFlow
only inside its functions.
"""

from keras_seg_extras.training.accumulation import (
    AccumulatedSchedule,
    GradientAccumulationOptimizer,
    accumulating_optimizer,
    effective_batch_size,
    set_batchnorm_momentum_for_accumulation,
)
from keras_seg_extras.training.schedules import (
    CosineAnnealingWithWarmup,
    CyclicCosineSchedule,
)
from keras_seg_extras.training.progressive import ProgressiveTrainer, Stage
from keras_seg_extras.training.distribute import strategy

__all__ = [
    "AccumulatedSchedule", "CosineAnnealingWithWarmup", "CyclicCosineSchedule",
    "GradientAccumulationOptimizer", "ProgressiveTrainer", "Stage", "accumulating_optimizer",
    "effective_batch_size", "set_batchnorm_momentum_for_accumulation", "strategy",
]
