"""keras_seg_extras.metrics"""

from keras_seg_extras.metrics.ranking import (  # noqa: F401
    LabelRankingAveragePrecision,
    MeanAveragePrecision,
)
