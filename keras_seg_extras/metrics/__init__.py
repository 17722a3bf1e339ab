"""keras_seg_extras.metrics: overlap, confusion-matrix, fairness and ranking metrics."""

from keras_seg_extras.metrics.confusion import ConfusionMatrixIoU  # noqa: F401
from keras_seg_extras.metrics.fairness import (  # noqa: F401
    FairnessIoU,
    class_iou_from_confusion,
    fairness_from_class_iou,
    fairness_metrics,
    fairness_report,
    format_fairness_table,
)
from keras_seg_extras.metrics.overlap import DiceCoefficient, IoUScore  # noqa: F401
from keras_seg_extras.metrics.ranking import (  # noqa: F401
    LabelRankingAveragePrecision,
    MeanAveragePrecision,
)
