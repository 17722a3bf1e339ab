"""keras_seg_extras.metrics: overlap, confusion-matrix, per-class, fairness and ranking metrics.

Every metric takes probabilities by default (``from_logits=False``), as Keras's own metrics
do; see docs/metrics.md.
"""

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
from keras_seg_extras.metrics.per_class import PerClassDice, PerClassIoU
from keras_seg_extras.metrics.ranking import (
    LabelRankingAveragePrecision,
    MeanAveragePrecision,
    average_precision_per_class,
    label_ranking_average_precision_per_sample,
)

__all__ = [
    "ConfusionMatrixIoU",
    "DiceCoefficient",
    "FairnessIoU",
    "IoUScore",
    "LabelRankingAveragePrecision",
    "MeanAveragePrecision",
    "PerClassDice",
    "PerClassIoU",
    "average_precision_per_class",
    "class_iou_from_confusion",
    "fairness_from_class_iou",
    "fairness_metrics",
    "fairness_report",
    "format_fairness_table",
    "label_ranking_average_precision_per_sample",
]
