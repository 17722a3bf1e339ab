"""Loss wrappers: losses built around another loss.

``DropWorst``: automatic outlier removal of Okazaki et al., "Hitachi at TRECVID DSDI 2020" (2020),
section 2.4: in each minibatch, the
k samples with the largest loss are left out of the reduction.
"""

import keras
from keras import ops

from keras_seg_extras._common import call_member, check_choice, check_number, fail, nan_if_any_nan, register


def _inner_per_sample(inner, y_true, y_pred):
    """Per-sample values of ``inner``: unreduced, then averaged over any non-batch axes."""
    if isinstance(inner, keras.losses.Loss):
        values = call_member("DropWorst", "loss", inner.call, ops.convert_to_tensor(y_true),
                             ops.convert_to_tensor(y_pred))
    else:
        values = call_member("DropWorst", "loss", inner, y_true, y_pred)
    values = ops.cast(ops.convert_to_tensor(values), "float32")
    if len(values.shape) == 0:
        fail("DropWorst", "loss", inner,
             "must yield one value per sample (an unreduced loss), not a scalar")
    if len(values.shape) > 1:
        values = ops.mean(values, axis=tuple(range(1, len(values.shape))))
    return values


@register
class DropWorst(keras.losses.Loss):
    """Drop the k largest per-sample losses of each minibatch.

    Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020", TRECVID 2020
    notebook paper (2020), section 2.4.

    The paper's automatic outlier removal: images whose labels are wrong (outliers) keep a
    high loss once the model has learnt the classes, so the largest loss of each minibatch
    is left out of the sum. With per-sample values ``l_1..l_n`` sorted so that the dropped
    ones are the k largest, the default reduction gives::

        DropWorst = (1 / (n - k)) Σ_{kept i} l_i

    How: the inner loss is called unreduced (``Loss.call``, i.e. reduction="none"
    semantics, or the plain function); values with more than one axis are averaged over the
    non-batch axes to one value per sample. ``call`` returns the per-sample vector with the
    dropped samples set to 0 and the kept ones multiplied by n / (n - k), so Keras's
    ``"sum_over_batch_size"`` reduction yields the mean over the kept samples; with
    ``reduction="none"`` you see those per-sample values. Exactly k samples are dropped even
    when several share the k-th largest value (which of the equal ones does not change the
    result). Inside a compiled graph with an unknown batch size, a batch of k samples or fewer
    (a last partial batch) contributes 0 instead of raising. The samples to drop are chosen on the unweighted loss; Keras applies
    ``sample_weight`` afterwards.

    Under ``tf.distribute.MirroredStrategy`` (and any data-parallel strategy) each replica
    calls the loss on its own share of the global batch, so the k largest are dropped **per
    replica**: with R replicas, R·k samples leave each global step, and the k-limit applies
    to the per-replica batch (global batch / R). Keras's reduction divides each replica's
    value by R and the replicas' values are summed, so the step's loss is the mean of the
    replicas' kept-sample means (the mean over all kept samples when the replicas hold equal
    batches), not the mean after dropping the k largest of the global batch.

    Args:
        loss: the loss to wrap: a ``keras.losses.Loss`` instance (its reduction is not
            used), a registered loss name such as ``"binary_crossentropy"``, a serialised
            loss dict, or a function ``f(y_true, y_pred)`` returning per-sample values.
        k: number of samples to drop per minibatch (>= 1); must be smaller than the batch
            size, checked when the batch size is known (static shape or eager call).
        reduction: ``"sum_over_batch_size"`` (mean over the kept samples) or ``"none"``.
        name, dtype: as for any Keras loss.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.losses import SoftFocalLoss
        >>> loss = DropWorst(SoftFocalLoss(gamma=0.0, from_logits=True), k=1)
        >>> y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> x = np.array([[3.0, -3.0], [3.0, -3.0], [2.0, 2.0]])   # sample 1 looks mislabelled
        >>> round(float(loss(y, x)), 4)                          # the mean of samples 0 and 2
        0.1755
    """

    def __init__(self, loss, k=1, reduction="sum_over_batch_size", name="drop_worst",
                 dtype=None):
        check_choice("DropWorst", "reduction", reduction, ("sum_over_batch_size", "none"))
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.k = check_number("DropWorst", "k", k, minimum=1, integer=True)
        if isinstance(loss, dict):
            loss = keras.losses.deserialize(loss)
        elif isinstance(loss, str):
            try:
                loss = keras.losses.get(loss)
            except ValueError:
                fail("DropWorst", "loss", loss, "must name a registered Keras loss")
        if not callable(loss):
            fail("DropWorst", "loss", loss, "must be a Keras loss, a loss name or a function")
        self.loss = loss

    def call(self, y_true, y_pred):
        values = _inner_per_sample(self.loss, y_true, y_pred)
        n_static = values.shape[0]
        if n_static is not None and self.k >= n_static:
            fail("DropWorst", "k", self.k,
                 f"must be smaller than the batch size ({n_static} samples in this batch)")
        n = ops.shape(values)[0]
        kept = n - self.k
        # Rank of each sample in descending order (ties by position): drop ranks < k.
        order = ops.argsort(-values)
        ranks = ops.argsort(order)
        keep = ops.cast(ops.greater_equal(ranks, self.k), "float32")
        scale = ops.cast(n, "float32") / ops.cast(ops.maximum(kept, 1), "float32")
        return nan_if_any_nan(values * keep * scale, values)  # a NaN sample is not "dropped"

    def get_config(self):
        config = super().get_config()
        config.update(loss=keras.losses.serialize(self.loss), k=self.k)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)
