"""keras_seg_extras.training

Backend-agnostic parts are imported here; ``distribute`` (tf.distribute) imports TensorFlow
only inside its functions.
"""

from keras_seg_extras.training.accumulation import (  # noqa: F401
    AccumulatedSchedule,
    GradientAccumulationOptimizer,
    accumulating_optimizer,
    effective_batch_size,
    set_batchnorm_momentum_for_accumulation,
)
from keras_seg_extras.training.schedules import (  # noqa: F401
    CosineAnnealingWithWarmup,
    CyclicCosineSchedule,
)
from keras_seg_extras.training.progressive import ProgressiveTrainer, Stage  # noqa: F401
from keras_seg_extras.training.distribute import strategy  # noqa: F401
