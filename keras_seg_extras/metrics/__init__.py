"""keras_seg_extras.metrics"""

from keras_seg_extras.metrics.confusion import ConfusionMatrixIoU  # noqa: F401
from keras_seg_extras.metrics.overlap import DiceCoefficient, IoUScore  # noqa: F401
from keras_seg_extras.metrics.ranking import (  # noqa: F401
    LabelRankingAveragePrecision,
    MeanAveragePrecision,
)
