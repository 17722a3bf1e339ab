"""Per-class IoU and Dice logged by class name every epoch, from one confusion matrix.

Keras 3 logs a metric whose ``result()`` returns a dict by putting each of the dict's keys at
the top level of the logs (``Trainer.get_metrics_result`` and ``pythonify_logs`` flatten one
level; the metric's own name is not prepended), on every backend, in ``fit``, ``evaluate``
(``return_dict=True``) and ``train_on_batch``. ``fit`` then prefixes validation keys with
``val_``. So :class:`PerClassIoU` named ``"iou"`` with classes ``("road", "car")`` logs
``iou``, ``iou/road``, ``iou/car`` and ``val_iou``, ``val_iou/road``, ``val_iou/car``: one
History key, one CSVLogger column and one TensorBoard tag (``epoch_iou/road``, its
"validation" run for ``val_``) each.
"""

from keras import ops

from keras_seg_extras._common import fail, register
from keras_seg_extras.metrics.confusion import ConfusionMatrixIoU, _dice, _iou


def _check_class_names(owner, class_names, num_classes):
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    if isinstance(class_names, str) or not all(isinstance(n, str) and n for n in class_names):
        fail(owner, "class_names", class_names, "must be a list of non-empty strings")
    names = list(class_names)
    if len(names) != num_classes:
        fail(owner, "class_names", class_names,
             f"must name each of the num_classes={num_classes} classes once")
    if len(set(names)) != len(names):
        fail(owner, "class_names", class_names, "must not repeat a name")
    return names


class _PerClassScores(ConfusionMatrixIoU):
    """A confusion-matrix metric whose result is ``{name: mean, name/<class>: score}``.

    Subclasses set ``_score(TP, TP + FP + FN)`` and the default name ``_default_name``.
    """

    _score = None
    _default_name = None

    def __init__(self, num_classes, class_names=None, ignore_index=None, from_logits=False,
                 name=None, dtype=None):
        super().__init__(num_classes, ignore_index=ignore_index, from_logits=from_logits,
                         name=name or self._default_name, dtype=dtype)
        self.class_names = _check_class_names(type(self).__name__, class_names,
                                              self.num_classes)

    def result(self):
        """``{name: mean over the classes seen, f"{name}/{class}": score or NaN}``."""
        scores = ops.cast(self._per_class(self._score, float("nan")), self.dtype)
        values = {self.name: self._mean_over_seen(self._score)}
        for index, class_name in enumerate(self.class_names):
            values[f"{self.name}/{class_name}"] = scores[index]
        return values

    def get_config(self):
        config = super().get_config()
        config.update(class_names=list(self.class_names))
        return config


@register
class PerClassIoU(_PerClassScores):
    """The IoU of every class, by name, in History, CSVLogger and TensorBoard each epoch.

    Accumulates the confusion matrix of :class:`ConfusionMatrixIoU` (same inputs, ignored
    pixels and sample weights) and returns a dict: the mean IoU over the classes seen under
    the metric's name, and for each class ``c`` named ``n``::

        logs[f"{name}/{n}"] = IoU_c = TP_c / (TP_c + FP_c + FN_c)

    (``val_`` in front for the validation data). The mean is ``ConfusionMatrixIoU``'s
    mIoU, so ``EarlyStopping(monitor="val_iou")`` and ``ModelCheckpoint`` work as usual.

    **A class absent from the data** (no pixel of it in the truth and none predicted since
    the last reset) logs **NaN**: its IoU is 0/0, undefined, and the model made no mistake on
    it, so 0 (a total failure) would be wrong and would drag any average of the log down.
    The mean leaves such classes out (as ``class_iou()`` does); it is finite, so a NaN per
    class never triggers ``TerminateOnNaN`` (which watches the loss). A NaN prediction or a
    faulty label in a compiled step makes every value NaN, the mean included.

    With several outputs, Keras prefixes the dict's keys with nothing: give each output's
    metric its own ``name`` (``"mask_iou"``). Class names appear as given in the keys; the
    values are exact under ``tf.distribute`` (the matrix is summed over replicas).
    Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in
    Semantic Segmentation", CVPR Workshops (2021), table 1, reports exactly this breakdown.

    Args:
        num_classes: number of classes C (>= 2).
        class_names: C distinct strings, in class-index order; None names them "0" ... "C-1".
        ignore_index: integer label value whose pixels are not counted, or None.
        from_logits: single-channel binary scores are logits (threshold 0) rather than
            probabilities (threshold 0.5, the default); no effect on multi-channel scores.
        name: metric name, the prefix of every key (None: ``"iou"``).
        dtype: dtype of the values.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> labels = np.array([[[0, 1], [1, 1]]])                 # no pixel of "car"
        >>> scores = np.eye(3, dtype="float32")[[[[0, 1], [0, 1]]]]
        >>> metric = kse.metrics.PerClassIoU(3, class_names=["sky", "road", "car"])
        >>> metric.update_state(labels, scores)
        >>> {key: round(float(value), 4) for key, value in metric.result().items()}
        {'iou': 0.5833, 'iou/sky': 0.5, 'iou/road': 0.6667, 'iou/car': nan}
    """

    _score = staticmethod(_iou)
    _default_name = "iou"


@register
class PerClassDice(_PerClassScores):
    """The Dice coefficient of every class, by name, in the logs each epoch.

    As :class:`PerClassIoU` (same inputs, keys, NaN for absent classes) with, for each class::

        logs[f"{name}/{n}"] = Dice_c = 2 TP_c / (2 TP_c + FP_c + FN_c)

    pooled over every pixel since the last reset, and under the metric's name the mean Dice
    over the classes seen. For the SIIM-ACR per-image mean Dice of one binary mask use
    :class:`DiceCoefficient`.

    Args:
        num_classes, class_names, ignore_index, from_logits, dtype: as :class:`PerClassIoU`.
        name: metric name, the prefix of every key (None: ``"dice"``).

    Example:
        A binary model with one sigmoid channel (probabilities, threshold 0.5):

        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> masks = np.array([[[0, 1], [1, 1]]])
        >>> probabilities = np.array([[[[0.2], [0.9]], [[0.4], [0.7]]]], "float32")
        >>> dice = kse.metrics.PerClassDice(2, class_names=["background", "lesion"])
        >>> dice.update_state(masks, probabilities)
        >>> {key: round(float(value), 4) for key, value in dice.result().items()}
        {'dice': 0.7333, 'dice/background': 0.6667, 'dice/lesion': 0.8}
    """

    _score = staticmethod(_dice)
    _default_name = "dice"
