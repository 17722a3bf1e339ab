"""Float64 NumPy references of every public loss, written from the papers' formulas.

Used by the gradient tests (finite differences of these functions) and the sample-weight
tests. Each takes raw predictions (logits unless said otherwise) and returns the value the
Keras loss object returns, reduction included. Nothing here calls keras_seg_extras.

Sample weights ``w`` follow the semantics documented in docs/losses_overlap.md: per-sample
losses give ``sum_b w_b l_b / B`` (Keras's "sum_over_batch_size"); batch-global losses weight
every image (or pixel) inside their sums, as if an image of weight n appeared n times.
"""

import numpy as np


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, "float64")))


def log_sigmoid(x):
    return -np.logaddexp(0.0, -np.asarray(x, "float64"))


def log_softmax(z):
    z = np.asarray(z, "float64")
    top = z.max(-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def keras_mean(per_sample, weights=None):
    """Keras's "sum_over_batch_size": sum of (weighted) values over their count."""
    per_sample = np.asarray(per_sample, "float64")
    if weights is not None:
        per_sample = per_sample * np.reshape(weights, per_sample.shape[:1] + (1,) * (per_sample.ndim - 1))
    return per_sample.sum() / per_sample.size


def pixel_weights(weights, shape):
    """(B,) per-image or (B, H, W) per-pixel weights -> broadcastable to (B, H, W, C)."""
    if weights is None:
        return np.ones(shape[:3] + (1,))
    weights = np.asarray(weights, "float64")
    if weights.ndim == 1:
        return weights[:, None, None, None]
    return weights.reshape(shape[:3] + (1,))


# ----------------------------------------------------------------------------- overlap


def one_hot(labels, classes, ignore=None):
    """Integer labels (B, H, W) -> one-hot (B, H, W, C) and validity (B, H, W, 1)."""
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    return np.eye(classes)[np.where(valid, labels, 0)] * valid[..., None], valid[..., None]


def overlap(kind, targets, probabilities, valid, smooth=1.0, per_image=False, weights=None):
    """Soft Dice/Jaccard, classes averaged; 0 for a class without mass.

    ``valid`` and ``weights`` multiply every pixel inside the sums (batch-global mode); with
    ``per_image`` the result is (B,) and weights are left to the caller (Keras's mean).
    """
    w = pixel_weights(None if per_image else weights, targets.shape) * valid
    groups = [slice(b, b + 1) for b in range(len(targets))] if per_image else [slice(None)]
    values = []
    for group in groups:
        per_class = []
        for c in range(targets.shape[-1]):
            y = targets[group, ..., c]
            p = probabilities[group, ..., c]
            wc = np.broadcast_to(w, targets.shape)[group, ..., c]
            intersection = (wc * y * p).sum()
            cardinality = (wc * p).sum() + (wc * y).sum()
            if cardinality == 0:
                per_class.append(0.0)
            elif kind == "dice":
                per_class.append(1 - (2 * intersection + smooth) / (cardinality + smooth))
            else:
                per_class.append(1 - (intersection + smooth)
                                 / (cardinality - intersection + smooth))
        values.append(np.mean(per_class))
    return np.array(values) if per_image else values[0]


def lovasz_extension(errors, labels, weights=None):
    """Lovász extension of the (pixel-weighted) Jaccard loss; 1-D arrays of one group.

    A pixel of weight n counts like n copies of it (Berman et al. 2018, eq. 8 with the
    Jaccard set function over weighted pixels).
    """
    weights = np.ones_like(errors) if weights is None else weights
    order = np.argsort(-errors, kind="stable")
    e, y, w = errors[order], labels[order], weights[order]
    total = (w * y).sum()
    intersection = total - np.cumsum(w * y)
    union = total + np.cumsum(w * (1.0 - y))
    jaccard = np.where(union > 0, 1.0 - intersection / np.where(union > 0, union, 1.0), 0.0)
    steps = np.diff(np.concatenate([[0.0], jaccard]))
    return float(np.dot(np.maximum(e, 0.0), steps))


def _groups(per_image, batch):
    return [[b] for b in range(batch)] if per_image else [list(range(batch))]


def lovasz_hinge(labels, logits, per_image=True, ignore=None, weights=None, symmetric=False):
    """labels (B, H, W) in {0, 1} (or ``ignore``), logits (B, H, W, 1); Keras-reduced value."""
    logits = np.asarray(logits, "float64")[..., 0]
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    y = np.where(valid, labels, 0).astype("float64")
    w = np.broadcast_to(pixel_weights(None if per_image else weights, logits.shape + (1,))[..., 0],
                        logits.shape)
    values = []
    for group in _groups(per_image, len(labels)):
        keep = valid[group]
        terms = [(logits[group][keep], y[group][keep])]
        if symmetric:
            terms.append((-logits[group][keep], 1.0 - y[group][keep]))
        parts = [lovasz_extension(1.0 - x * (2 * t - 1), t, w[group][keep]) for x, t in terms]
        values.append(np.mean(parts))
    return keras_mean(values, weights) if per_image else values[0]


def lovasz_softmax(labels, logits, classes="present", per_image=False, ignore=None,
                   weights=None):
    """labels (B, H, W) ints, logits (B, H, W, C); Keras-reduced value."""
    probabilities = softmax(logits)
    C = probabilities.shape[-1]
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    w = np.broadcast_to(pixel_weights(None if per_image else weights, probabilities.shape)[..., 0],
                        labels.shape)
    values = []
    for group in _groups(per_image, len(labels)):
        keep = valid[group]
        lab, prob, wg = labels[group][keep], probabilities[group][keep], w[group][keep]
        losses = []
        for c in (range(C) if classes in ("all", "present") else classes):
            fg = (lab == c).astype("float64")
            if classes == "present" and (wg * fg).sum() == 0:
                continue
            losses.append(lovasz_extension(np.abs(fg - prob[:, c]), fg, wg))
        values.append(np.mean(losses) if losses else 0.0)
    return keras_mean(values, weights) if per_image else values[0]


# ----------------------------------------------------------------------------- focal family


def p_hat_and_log(y, logits):
    """Paper 000, eq. 2: p̂ = 1 - |y - p|, and log p̂ (log-sigmoid at hard targets)."""
    z = np.asarray(logits, "float64")
    p = sigmoid(z)
    p_hat = 1.0 - np.abs(y - p)
    log_hard = np.where(y == 1, log_sigmoid(z), log_sigmoid(-z))
    hard = (y == 0) | (y == 1)
    return p_hat, np.where(hard, log_hard, np.log(np.where(hard, 1.0, p_hat)))


def soft_focal_terms(y, logits, gamma, class_weights=None):
    p_hat, log_p_hat = p_hat_and_log(y, logits)
    terms = -((1.0 - p_hat) ** gamma) * log_p_hat
    return (terms * (1.0 if class_weights is None else np.asarray(class_weights))).sum(-1)


def class_balanced(counts, beta, normalize=True):
    counts = np.asarray(counts, "float64")
    w = (1.0 - beta) / (1.0 - beta ** counts)
    return w / w.sum() * len(counts) if normalize else w


def reduced_focal_terms(y, logits, threshold, gamma, class_weights=None):
    p_hat, log_p_hat = p_hat_and_log(y, logits)
    factor = np.where(p_hat < threshold, 1.0, ((1.0 - p_hat) / threshold) ** gamma)
    terms = -factor * log_p_hat
    return (terms * (1.0 if class_weights is None else np.asarray(class_weights))).sum(-1)


# ----------------------------------------------------------------------------- others


def bce_dice(y, logits, bce_weight=1.0, dice_weight=1.0, smooth=1.0, weights=None):
    """BCE per image (Keras mean, weighted) + the weighted batch Dice of the sigmoid maps."""
    x = np.asarray(logits, "float64")
    bce = (np.logaddexp(0.0, x) - x * y).mean(axis=(1, 2, 3))
    dice = overlap("dice", y, sigmoid(x), np.ones_like(y), smooth, False, weights)
    return bce_weight * keras_mean(bce, weights) + dice_weight * dice


def image_cross_entropy(labels, logits, ignore=None):
    """Mean softmax CE over each image's valid pixels (B,), and whether it has any."""
    log_probs = log_softmax(logits)
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    safe = np.where(valid, labels, 0)
    ce = -np.take_along_axis(log_probs, safe[..., None], -1)[..., 0] * valid
    count = valid.sum(axis=(1, 2))
    return ce.sum(axis=(1, 2)) / np.maximum(count, 1), count > 0


def tilt(values, weights, t):
    """(1/t) log(sum w e^{t v} / sum w) with log-sum-exp; the weighted mean at t = 0."""
    values, weights = np.asarray(values, "float64"), np.asarray(weights, "float64")
    keep = weights > 0
    if not keep.any():
        return 0.0
    values, weights = values[keep], weights[keep]
    if t == 0:
        return float((weights * values).sum() / weights.sum())
    a = t * values
    top = a.max()
    return float((top + np.log((weights * np.exp(a - top)).sum() / weights.sum())) / t)


def tilted_cross_entropy(labels, logits, t, level="image", ignore=None, weights=None):
    """Paper 002, eq. 2 (image level) or eq. 3 (class level over each image's classes)."""
    batch = len(labels)
    weights = np.ones(batch) if weights is None else np.asarray(weights, "float64")
    if level == "image":
        loss_m, has_pixels = image_cross_entropy(labels, logits, ignore)
        return tilt(loss_m, weights * has_pixels, t)
    log_probs = log_softmax(logits)
    per_image, image_weights = [], []
    for m in range(batch):
        valid = np.ones(labels[m].shape, bool) if ignore is None else labels[m] != ignore
        class_losses = [-log_probs[m][..., c][valid & (labels[m] == c)].mean()
                        for c in range(logits.shape[-1]) if (valid & (labels[m] == c)).any()]
        if class_losses:
            per_image.append(tilt(class_losses, np.ones(len(class_losses)), t))
            image_weights.append(weights[m])
    total = np.sum(image_weights)
    return float(np.dot(per_image, image_weights) / total) if total > 0 else 0.0


def locally_adaptive(labels, logits, kernel_size=3, minkowski_k=3, ignore=None, stride=1,
                     normalize_by="count", eps=1e-6):
    """Paper 004, eqs. 2-5 as loops over images, centres and window offsets; (B,).

    Same-label neighbours pooled with the chessboard weights 2^(1-d), divided by xi (their
    count, or with ``normalize_by="weight"`` their summed weight), softmax cross-entropy of
    the pooled z-scores, Minkowski pooling with exponent ``minkowski_k`` per image (0 for an
    image without a valid centre).
    """
    labels = np.asarray(labels)
    z = np.asarray(logits, "float64")
    batch, height, width, _ = z.shape
    x = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps)
    r = kernel_size // 2
    result = []
    for b in range(batch):
        losses = []
        for i in range(0, height, stride):
            for j in range(0, width, stride):
                label = labels[b, i, j]
                if ignore is not None and label == ignore:
                    continue
                pooled, xi = np.zeros(z.shape[-1]), 0.0
                for u in range(-r, r + 1):
                    for v in range(-r, r + 1):
                        ii, jj = i + u, j + v
                        if not (0 <= ii < height and 0 <= jj < width):
                            continue
                        if labels[b, ii, jj] != label:  # also drops ignored neighbours
                            continue
                        weight = 2.0 ** (1 - max(abs(u), abs(v)))
                        pooled += weight * x[b, ii, jj]
                        xi += 1.0 if normalize_by == "count" else weight
                losses.append(-log_softmax(pooled / xi)[label])
        result.append(np.mean(np.asarray(losses) ** minkowski_k) ** (1.0 / minkowski_k)
                      if losses else 0.0)
    return np.asarray(result)


def drop_worst(per_sample, k, weights=None):
    """Paper 000, 2.4: the k largest (unweighted) values leave; weighted mean over n - k."""
    order = np.argsort(-per_sample, kind="stable")
    keep = np.ones_like(per_sample)
    keep[order[:k]] = 0
    weights = np.ones_like(per_sample) if weights is None else weights
    return float((per_sample * keep * weights).sum() / (len(per_sample) - k))


def sparse_cross_entropy(labels, logits):
    return -np.take_along_axis(log_softmax(logits), labels[..., None], -1)[..., 0]
