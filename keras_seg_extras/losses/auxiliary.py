"""Dataset fusion with auxiliary classes.

"1st Place Solution for YouTubeVOS Challenge 2021: Video Instance Segmentation", technical
report (2021), section 3.2, Algorithm 1.

When a data set with the target classes (YouTube-VIS) is fused with another one (COCO) whose
remaining classes are not targets, those samples are not dropped and not learned under their
own names: the model gets K extra "auxiliary" outputs and learns to group the foreign classes
into them by itself. For a sample whose label is not a target class, the training label
becomes the model's predicted index when that index is one of the K auxiliary indices, and
otherwise an auxiliary index drawn uniformly at random; target-class samples are untouched.
"""

import keras
from keras import ops

from keras_seg_extras._common import check_number, check_same_shape, fail, per_sample_weight, register


def _index_list(owner, argument, value, start=0):
    """An int n (meaning ``range(start, start + n)``) or a sequence of distinct ints >= 0."""
    if isinstance(value, bool):
        fail(owner, argument, value, "must be a positive int or a list of class indices")
    if isinstance(value, int):
        count = check_number(owner, argument, value, minimum=1, integer=True)
        return list(range(start, start + count))
    try:
        indices = [int(v) for v in value]
    except (TypeError, ValueError):
        fail(owner, argument, value, "must be a positive int or a list of class indices")
    if any(int(v) != v for v in value):
        fail(owner, argument, value, "must hold integer class indices")
    if not indices:
        fail(owner, argument, value, "must not be empty")
    if min(indices) < 0:
        fail(owner, argument, value, "must hold class indices >= 0")
    if len(set(indices)) != len(indices):
        fail(owner, argument, value, "must not repeat an index")
    return indices


def _resolve_class_indices(owner, target_classes, auxiliary_classes):
    """Validate and expand the two index sets.

    ``target_classes`` as an int C means ``[0, C)``; ``auxiliary_classes`` as an int K means
    the K indices right after the largest target index.
    """
    targets = _index_list(owner, "target_classes", target_classes)
    auxiliary = _index_list(owner, "auxiliary_classes", auxiliary_classes,
                            start=max(targets) + 1)
    shared = sorted(set(targets) & set(auxiliary))
    if shared:
        fail(owner, "auxiliary_classes", auxiliary_classes,
             f"must not share indices with target_classes (both contain {shared})")
    return targets, auxiliary


def auxiliary_class_labels(y_true, y_pred, target_classes, auxiliary_classes, seed=None):
    """Relabel samples of non-target classes by Algorithm 1 of the YouTubeVOS 2021 report.

    For each sample (or pixel) with integer label y and predicted index
    p = argmax(y_pred):

        y' = y                        if y is a target class
        y' = p                        if y is not a target class and p is auxiliary
        y' = a_r, r ~ U{0, ..., K-1}  otherwise (a the list of the K auxiliary indices)

    Any label value that is not a target class counts as "from the other data set"
    (a foreign class id, or a marker such as -1).

    Args:
        y_true: integer labels, shape ``y_pred.shape[:-1]`` or that with a trailing 1.
        y_pred: scores over all outputs (logits or probabilities), channels last.
        target_classes: int C (``[0, C)``) or a list of target indices.
        auxiliary_classes: int K (the K indices after the largest target) or a list.
        seed: None, an int (the same draws on every call) or a
            ``keras.random.SeedGenerator`` (new draws on every call, reproducible).

    Returns:
        int32 labels with the shape of ``y_pred.shape[:-1]``.

    Example:
        >>> labels = auxiliary_class_labels(
        ...     [0, 7, 7], [[5., 0, 0, 1], [0, 0, 0, 9], [9., 0, 0, 0]],
        ...     target_classes=2, auxiliary_classes=2, seed=1)
        >>> [int(v) for v in keras.ops.convert_to_numpy(labels)[:2]]  # kept; predicted aux 3
        [0, 3]
        >>> int(keras.ops.convert_to_numpy(labels)[2]) in (2, 3)     # a random auxiliary index
        True
    """
    owner = "auxiliary_class_labels"
    targets, auxiliary = _resolve_class_indices(owner, target_classes, auxiliary_classes)
    return _relabel(owner, y_true, y_pred, targets, auxiliary, seed)


def _relabel(owner, y_true, y_pred, targets, auxiliary, seed):
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    channels = y_pred.shape[-1]
    highest = max(max(targets), max(auxiliary))
    if channels is not None and channels <= highest:
        fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
             f"must have more than {highest} channels (the largest class index)")
    if len(y_true.shape) == len(y_pred.shape):
        if y_true.shape[-1] not in (1, None):
            fail(owner, "y_true", f"tensor of shape {tuple(y_true.shape)}",
                 "must hold integer labels (shape of y_pred without its last axis, or with "
                 "a trailing 1), not one-hot vectors")
        y_true = ops.squeeze(y_true, -1)
    elif len(y_true.shape) != len(y_pred.shape) - 1:
        fail(owner, "y_true", f"tensor of shape {tuple(y_true.shape)}",
             f"must have rank {len(y_pred.shape) - 1} or {len(y_pred.shape)} to match "
             f"y_pred of shape {tuple(y_pred.shape)}")
    check_same_shape(owner, y_true, y_pred, axes=tuple(range(len(y_true.shape))))
    labels = ops.cast(y_true, "int32")
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    target_set = ops.convert_to_tensor(targets, dtype="int32")
    auxiliary_set = ops.convert_to_tensor(auxiliary, dtype="int32")
    is_target = ops.any(ops.equal(ops.expand_dims(labels, -1), target_set), axis=-1)
    predicted_auxiliary = ops.any(ops.equal(ops.expand_dims(predicted, -1), auxiliary_set),
                                  axis=-1)
    draws = keras.random.randint(ops.shape(labels), 0, len(auxiliary), dtype="int32",
                                 seed=seed)
    random_auxiliary = ops.take(auxiliary_set, draws)
    foreign = ops.where(predicted_auxiliary, predicted, random_auxiliary)
    return ops.where(is_target, labels, foreign)


@register
class AuxiliaryClassLoss(keras.losses.Loss):
    """Wrap a sparse classification loss with the auxiliary-class relabelling.

    "1st Place Solution for YouTubeVOS Challenge 2021: Video Instance Segmentation",
    technical report (2021), section 3.2, Algorithm 1. The model has outputs for the target
    classes and
    K auxiliary classes. Each call relabels the non-target samples with
    :func:`auxiliary_class_labels` (the predicted auxiliary index, or a uniformly random
    auxiliary index when the prediction is not auxiliary) and evaluates ``base_loss`` on
    the new integer labels. The relabelling has no gradient (it is an index choice); the
    gradient flows through ``base_loss`` only.

    The base loss must accept integer labels of shape ``y_pred.shape[:-1]`` (for example
    ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``). Its unreduced
    values (its ``call``) are used, and this object's ``reduction`` and sample weights
    apply, so set the reduction here, not on the base loss. A sample weight multiplies the
    base loss of its sample (per-sample weights (B,) every pixel of the sample, for maps) and
    the default reduction divides by the number of values, weight-0 samples included.

    Randomness: a ``keras.random.SeedGenerator(seed)`` owned by the loss draws new random
    auxiliary indices on every call; two losses built with the same integer ``seed`` draw
    the same sequence (and ``seed=None`` is random). The generator's state is a Keras
    variable updated in place, which works inside ``model.fit`` with the TensorFlow
    backend (tested); the serialised config stores the seed, not the generator's position.

    Args:
        base_loss: a Keras loss instance, a registered loss name or a loss function
            ``f(y_true, y_pred)`` returning per-sample values.
        target_classes: int C (targets ``[0, C)``) or a list of target indices.
        auxiliary_classes: int K (the K indices after the largest target) or a list.
        seed: None or an int.
        reduction, name, dtype: as for every Keras loss.

    Example:
        >>> loss = AuxiliaryClassLoss(
        ...     keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ...     target_classes=40, auxiliary_classes=5, seed=0)
        >>> logits = keras.ops.one_hot([0, 41, 3], 45) * 5.0   # label 50: a foreign class
        >>> round(float(loss([0, 50, 1], logits)), 4)             # 50 -> predicted aux 41
        1.9263
    """

    def __init__(self, base_loss, target_classes, auxiliary_classes, seed=None,
                 reduction="sum_over_batch_size", name="auxiliary_class_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = "AuxiliaryClassLoss"
        if isinstance(base_loss, (str, dict)):
            base_loss = keras.losses.get(base_loss)
        if not callable(base_loss):
            fail(owner, "base_loss", base_loss, "must be a Keras loss or a callable")
        if seed is not None:
            seed = check_number(owner, "seed", seed, minimum=0, integer=True)
        self.base_loss = base_loss
        self.target_classes, self.auxiliary_classes = _resolve_class_indices(
            owner, target_classes, auxiliary_classes)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="auxiliary_class_seed")

    def relabel(self, y_true, y_pred):
        """The training labels after Algorithm 1 (advances the seed generator)."""
        return _relabel("AuxiliaryClassLoss", y_true, y_pred, self.target_classes,
                        self.auxiliary_classes, self.seed_generator)

    def __call__(self, y_true, y_pred, sample_weight=None):
        rank = len(ops.convert_to_tensor(y_pred).shape) - 1  # one value per label
        return super().__call__(y_true, y_pred, per_sample_weight(sample_weight, rank))

    def call(self, y_true, y_pred):
        labels = ops.stop_gradient(self.relabel(y_true, y_pred))
        if isinstance(self.base_loss, keras.losses.Loss):
            return self.base_loss.call(labels, y_pred)
        return self.base_loss(labels, y_pred)

    def get_config(self):
        config = super().get_config()
        config.update({
            "base_loss": keras.saving.serialize_keras_object(self.base_loss),
            "target_classes": list(self.target_classes),
            "auxiliary_classes": list(self.auxiliary_classes),
            "seed": self.seed,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["base_loss"] = keras.saving.deserialize_keras_object(config["base_loss"])
        return cls(**config)
