"""Multi-label ranking scores of the validation set, once per epoch, into the training logs."""

import keras
import numpy as np

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.metrics import LabelRankingAveragePrecision, MeanAveragePrecision


def ranking_scores(y_true, scores, threshold=0.5):
    """Label ranking average precision and mean average precision of ``scores``, at once.

    One evaluation of :class:`keras_seg_extras.metrics.LabelRankingAveragePrecision` and
    :class:`keras_seg_extras.metrics.MeanAveragePrecision` (capacity: the N rows given), the
    pair of scores of Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020"
    (2020), tables 2 and 3. Used each epoch by :class:`ValidationRankingScores`, and alone to
    score a baseline such as ``kse.data.constant_prior_scores``.

    Args:
        y_true: (N, C) targets in [0, 1]; ``>= threshold`` is relevant.
        scores: (N, C) predictions (logits or probabilities: only their order matters).
        threshold: binarisation threshold of the targets.

    Returns:
        ``(lrap, map)`` as floats.

    Example:
        >>> y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
        >>> scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1]])
        >>> [round(value, 4) for value in ranking_scores(y, scores)]
        [0.9167, 0.8333]
    """
    y_true = np.asarray(y_true, "float32")
    if y_true.ndim != 2 or not len(y_true):
        fail("ranking_scores", "y_true", f"shape {y_true.shape}",
             "must be a non-empty (N, C) matrix")
    lrap = LabelRankingAveragePrecision(threshold=threshold)
    mean_ap = MeanAveragePrecision(y_true.shape[1], threshold=threshold, capacity=len(y_true))
    for metric in (lrap, mean_ap):
        metric.update_state(y_true, np.asarray(scores, "float32"))
    return float(lrap.result()), float(mean_ap.result())


class ValidationRankingScores(keras.callbacks.Callback):
    """Add the validation LRAP and mAP to the logs at the end of every epoch.

    After each epoch the model predicts ``x`` and the two ranking scores of its outputs
    against ``y`` are written into the epoch's logs as ``val_lrap`` and ``val_map`` (so
    ``History``, ``CSVLogger``, ``ModelCheckpoint(monitor="val_map")`` and callbacks listed
    after this one see them), and printed when ``label`` is given. Label ranking average
    precision and mean average precision are the scores of Okazaki, Kong, Klinkigt and
    Yoshinaga, "Hitachi at TRECVID DSDI 2020" (2020), tables 2 and 3; see
    :class:`keras_seg_extras.metrics.LabelRankingAveragePrecision` and
    :class:`keras_seg_extras.metrics.MeanAveragePrecision` for their definitions.

    Why a callback rather than compiled metrics: ``fit`` evaluates every compiled metric's
    ``result()`` after each training batch, and mean average precision sorts its whole
    buffer there; here it is computed once per epoch, on the validation predictions only.

    Args:
        x: validation inputs (anything ``model.predict`` takes).
        y: validation targets (N, C) in [0, 1] (soft targets are binarised at ``threshold``).
        batch_size: prediction batch size.
        threshold: targets ``>= threshold`` are relevant.
        label: optional prefix of a printed line per epoch (``[label] epoch 3: ...``).

    Example:
        >>> x = np.eye(3, dtype="float32")
        >>> inputs = keras.Input((3,))
        >>> outputs = keras.layers.Dense(3, kernel_initializer="identity")(inputs)
        >>> model = keras.Model(inputs, outputs)
        >>> model.compile(loss="mse")
        >>> history = model.fit(x, x, epochs=1, verbose=0,
        ...                     callbacks=[ValidationRankingScores(x, x)])
        >>> history.history["val_lrap"], history.history["val_map"]
        ([1.0], [1.0])
    """

    def __init__(self, x, y, batch_size=32, threshold=0.5, label=None):
        super().__init__()
        owner = type(self).__name__
        self.y = np.asarray(y, "float32")
        if self.y.ndim != 2 or not len(self.y):
            fail(owner, "y", f"shape {self.y.shape}", "must be a non-empty (N, C) matrix")
        self.x = x
        self.batch_size = check_number(owner, "batch_size", batch_size, minimum=1,
                                       integer=True)
        self.threshold = check_number(owner, "threshold", threshold)
        self.label = label

    def scores(self):
        """``(lrap, map)`` of the model's current predictions on the validation set."""
        predictions = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        return ranking_scores(self.y, predictions, self.threshold)

    def on_epoch_end(self, epoch, logs=None):
        lrap, mean_ap = self.scores()
        if logs is not None:
            logs["val_lrap"], logs["val_map"] = lrap, mean_ap
        if self.label is not None:
            print(f"[{self.label}] epoch {epoch + 1}: val LRAP {lrap:.4f}  val mAP {mean_ap:.4f}",
                  flush=True)
