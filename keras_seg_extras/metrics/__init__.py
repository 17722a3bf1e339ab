"""keras_seg_extras.metrics: overlap, confusion-matrix, fairness and ranking metrics."""

from keras_seg_extras.metrics.confusion import ConfusionMatrixIoU
from keras_seg_extras.metrics.fairness import (
    FairnessIoU,
    class_iou_from_confusion,
    fairness_from_class_iou,
    fairness_metrics,
    fairness_report,
    format_fairness_table,
)
from keras_seg_extras.metrics.overlap import DiceCoefficient, IoUScore
from keras_seg_extras.metrics.ranking import (
    LabelRankingAveragePrecision,
    MeanAveragePrecision,
)

__all__ = [
    "ConfusionMatrixIoU", "DiceCoefficient", "FairnessIoU", "IoUScore",
    "LabelRankingAveragePrecision", "MeanAveragePrecision", "class_iou_from_confusion",
    "fairness_from_class_iou", "fairness_metrics", "fairness_report", "format_fairness_table",
]
