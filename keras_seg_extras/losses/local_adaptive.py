"""The Locally Adaptive loss (Guo, Ren, Gu, Xu and Wu, "Locally Adaptive Learning Loss for
Semantic Image Segmentation" (2018), sections 3.1-3.2, eqs. 2-5).

At every centre pixel p (every ``stride`` pixels, valid label), the z-scored prediction vectors
of the neighbours q in a k x k window that carry p's label are pooled with chessboard-distance
weights, and softmax cross-entropy is taken between the pooled vector and p's label:

    x_q   = (z_q - mean(z_q)) / sqrt(var(z_q) + eps)           z-score over the C entries
    f(p)  = (1 / xi_p) * sum_{q in window(p)} mu(p, q) * w(q - p) * x_q             (eq. 2)
    L^S(p) = logsumexp(f(p)) - f(p)[y_p]                                           (eq. 4)
    L^AD = ((1 / M) * sum_p L^S(p) ** k) ** (1 / k)                                 (eq. 5)

with mu(p, q) = 1 when q is inside the image, not ignored and y_q = y_p; w(u, v) = 2 ** (1 - d),
d = max(|u|, |v|) the chessboard distance (2 at the centre, 1 at d = 1, 0.5 at d = 2, ...);
xi_p = sum_q mu(p, q) (``normalize_by="count"``, the paper's text) or sum_q mu(p, q) w(q - p)
(``"weight"``, a true weighted mean).

Three implementations with the same values and gradients, chosen by ``implementation``
("auto", the default, picks "fast" where shapes may depend on the data and "static" where a
compiler needs them fixed):

- ``"patches"``: the plain reading with ``tf.image.extract_patches`` (TensorFlow only). It holds
  a (B, H/s, W/s, k*k*C) tensor: k*k times the memory of the logits, twice over with its gradient.
- ``"fast"`` (``keras.ops``; one TensorFlow-only speed-up with a keras.ops fallback):
  never builds the patch tensor. Where every valid neighbour of a centre shares its label (the
  interior of regions), sum_q mu w x_q is one fixed depthwise convolution of the masked x. Only
  centres next to a label boundary need label-dependent work, and for those only a list of
  (centre, neighbour) pairs is used: for each boundary centre whichever set is smaller, its
  same-label neighbours (summed directly, the convolution dropped) or its differing-label
  neighbours (subtracted from the convolution). The pairs number at most k*k/2 per boundary
  centre and about 1-3 per centre on real label maps and on random labels; their weighted sum
  is a sparse matrix times x. Every centre then shares f = alpha * conv + beta and one
  cross-entropy. Its shapes depend on the labels (``ops.nonzero``): eager and ``tf.function``
  only.
- ``"static"`` (``keras.ops``; XLA, JAX, PyTorch): every shape is fixed by the input shape.
  The sum of eq. 2 is written over the k*k window offsets o: the label map shifted by o is
  compared with the centres' labels, and the x map shifted by o is added where they agree.
  The linear map x -> sum_q mu w x_q is symmetric (mu(p, q) = mu(q, p), w(o) = w(-o)), so
  its gradient is the same pooling applied to the upstream gradient divided by xi; that
  backward is written out (autodiff of the k*k shifted slices is 2-3x slower under XLA).
"""

import keras
import numpy as np
from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_binary_values,
    check_choice,
    check_flag,
    check_label_values,
    check_number,
    check_optional_int,
    epsilon,
    fail,
    faulty_to_nan,
    num_channels,
    register,
    static_rank,
)

#: Added to the variance of each prediction vector before the square root of the z-score, so
#: that a constant vector (variance 0) gives x = 0 and finite gradients instead of NaN. Not
#: ``_common.epsilon()``: it bounds 1/sqrt(var + eps) of logits (statistics of scores, not
#: probabilities), and 1e-6 keeps that factor <= 1e3, a scale float32 gradients carry
#: safely; the probability floor of ``from_logits=False`` is ``_common.epsilon()``.
_ZSCORE_EPSILON = 1e-6

_OWNER = "LocallyAdaptiveLoss"

#: Accepted values of ``implementation``.
_IMPLEMENTATIONS = ("auto", "fast", "static", "patches")


def chessboard_weights(kernel_size):
    """The window weights of the locally adaptive loss: w(u, v) = 2 ** (1 - max(|u|, |v|)).

    Guo, Ren, Gu, Xu and Wu, "Locally Adaptive Learning Loss for Semantic Image
    Segmentation" (2018), section 3.2: a neighbour at chessboard distance d from the
    centre weighs 2^(1-d) (the centre 2, its eight neighbours 1, the next ring 0.5, ...).

    Args:
        kernel_size: odd window size k >= 1.

    Returns:
        (k, k) float32 NumPy array.

    Example:
        >>> chessboard_weights(3)
        array([[1., 1., 1.],
               [1., 2., 1.],
               [1., 1., 1.]], dtype=float32)
    """
    r = kernel_size // 2
    d = np.maximum(*np.abs(np.mgrid[-r:r + 1, -r:r + 1]))
    return (2.0 ** (1 - d)).astype("float32")


def _check_arguments(owner, kernel_size, stride, minkowski_k, normalize_by, ignore_index,
                     from_logits, implementation):
    kernel_size = check_number(owner, "kernel_size", kernel_size, minimum=1, integer=True)
    if kernel_size % 2 == 0:
        fail(owner, "kernel_size", kernel_size, "must be odd (the window has a centre pixel)")
    stride = check_number(owner, "stride", stride, minimum=1, integer=True)
    minkowski_k = check_number(owner, "minkowski_k", minkowski_k, minimum=1)
    check_choice(owner, "normalize_by", normalize_by, ("count", "weight"))
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    check_flag(owner, "from_logits", from_logits)
    check_choice(owner, "implementation", implementation, _IMPLEMENTATIONS)
    return kernel_size, stride, minkowski_k, ignore_index


def _prepare(owner, y_true, y_pred, ignore_index, from_logits):
    """Labels (B, H, W) int32 with -1 where ignored, z-scored, masked x (B, H, W, C), and
    (B,) booleans: the image holds a label fault (a value that is neither a class nor
    ``ignore_index``, or a one-hot entry outside [0, 1]) that no check could raise on."""
    y_pred = ops.convert_to_tensor(y_pred)
    static_rank(owner, "y_pred", y_pred, (4,))
    num_classes = num_channels(owner, y_pred)
    if num_classes < 2:
        fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
             "must have at least 2 channels (softmax over classes)")
    y_true = ops.convert_to_tensor(y_true)
    rank = static_rank(owner, "y_true", y_true, (3, 4))
    if rank == 4 and y_true.shape[-1] not in (1, None):
        if y_true.shape[-1] != num_classes:
            fail(owner, "y_true", f"tensor of shape {tuple(y_true.shape)}",
                 f"must be integer labels (B, H, W[, 1]) or one-hot with {num_classes} channels")
        onehot = check_binary_values(owner, as_float32(y_true))
        in_range = ops.logical_and(ops.greater_equal(onehot, 0.0), ops.less_equal(onehot, 1.0))
        faults = ops.logical_not(ops.all(in_range, axis=(1, 2, 3)))  # NaN is not in range
        labels = ops.cast(ops.argmax(onehot, axis=-1), "int32")
        labels = ops.where(ops.sum(onehot, axis=-1) > 0, labels, -1)
    else:
        if rank == 4:
            y_true = y_true[..., 0]
        labels = ops.cast(y_true, "int32")
        labels = check_label_values(owner, labels, num_classes, ignore_index)
        outside = ops.logical_or(ops.less(labels, 0), ops.greater_equal(labels, num_classes))
        faulty = outside if ignore_index is None else ops.logical_and(
            outside, ops.not_equal(labels, ignore_index))
        faults = ops.any(faulty, axis=(1, 2))
        labels = ops.where(outside, -1, labels)
    for axis in (1, 2):
        if (y_pred.shape[axis] is not None and labels.shape[axis] is not None
                and y_pred.shape[axis] != labels.shape[axis]):
            fail(owner, "y_true", f"tensor of shape {tuple(y_true.shape)}",
                 f"must have the spatial size of y_pred {tuple(y_pred.shape)}")

    z = as_float32(y_pred)
    if not from_logits:
        z = ops.log(ops.maximum(z, epsilon()))
    x = _masked_zscore(z, ops.cast(labels >= 0, "float32")[..., None])
    return labels, x, faults


@ops.custom_gradient
def _masked_zscore(z, valid):
    """x = valid * (z - mean(z)) / sqrt(var(z) + eps) over the last axis, with its exact
    gradient written out (the layer-normalisation backward pass): with s = valid / sqrt(var +
    eps), dL/dz = d - mean(d), d = s * g - s * mean(g * x) * x. Autodiff of the forward
    expression takes about twice as many passes over the (B, H, W, C) tensor."""
    centred = z - ops.mean(z, axis=-1, keepdims=True)
    var = ops.mean(ops.square(centred), axis=-1, keepdims=True)
    scale = ops.rsqrt(var + _ZSCORE_EPSILON) * valid
    x = centred * scale

    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        d = scale * (upstream - x * ops.mean(upstream * x, axis=-1, keepdims=True))
        return d - ops.mean(d, axis=-1, keepdims=True), ops.zeros_like(valid)

    return x, grad


def _minkowski_per_image(loss_map, centre_valid, minkowski_k):
    """Eq. 5 per image: loss_map, centre_valid (B, N) -> (B,)."""
    loss_map = ops.maximum(loss_map, 0.0)  # CE >= 0; removes rounding below 0
    mask = ops.cast(centre_valid, "float32")
    if minkowski_k == 1:
        powered = loss_map
    else:
        powered = ops.power(loss_map, minkowski_k)
    total = ops.sum(powered * mask, axis=1)
    count = ops.sum(mask, axis=1)
    mean = total / ops.maximum(count, 1.0)
    if minkowski_k == 1:
        return mean
    positive = mean > 0
    safe = ops.where(positive, mean, 1.0)
    # mean is 0 (no valid centre, or a perfect score) or NaN (a NaN prediction): pass it on.
    return ops.where(positive, ops.power(safe, 1.0 / minkowski_k), mean)


def _cross_entropy(f, centre_labels):
    """Softmax CE of pooled vectors f (..., C) against labels (...) (-1 allowed; masked later)."""
    safe = ops.maximum(centre_labels, 0)
    picked = ops.take_along_axis(f, ops.expand_dims(safe, -1), axis=-1)[..., 0]
    return ops.logsumexp(f, axis=-1) - picked


def _pad_labels(labels, r):
    return ops.pad(labels, ((0, 0), (r, r), (r, r)), constant_values=-1)


def _box_coefficient(d, r):
    """w = sum_{d=0..r} a_d * box_d: a_d = 2^-d for d < r and a_r = 2^(1-r)."""
    return 2.0 ** (1 - r) if d == r else 2.0 ** (-d)


class _WindowReduce:
    """Reduce a padded (B, H + 2r, W + 2r) map over centred windows of a given radius, at the
    centres (every ``stride`` pixels), with shifted slices (separable: rows, then columns)."""

    def __init__(self, r, stride, height, width):
        self.r, self.s, self.height, self.width = r, stride, height, width

    def __call__(self, padded, radius, op):
        r, s = self.r, self.s
        out = None
        for t in range(r - radius, r + radius + 1):
            part = padded[:, :, t:t + self.width:s]
            out = part if out is None else op(out, part)
        rows = None
        for t in range(r - radius, r + radius + 1):
            part = out[:, t:t + self.height:s]
            rows = part if rows is None else op(rows, part)
        return rows


def _weighted_row_sums(x, source, target, weight, n_targets):
    """out[t] = sum over pairs p with target[p] == t of weight[p] * x[source[p]]: (n_targets, C).

    A sparse (n_targets x N) matrix times x: one ``tf.sparse.sparse_dense_matmul`` under
    TensorFlow (its gradient is another, and it writes no (pairs, C) intermediates; at kernel 7
    on the brain maps this took the whole loss from 11.5x to 7.2x cross-entropy), gathers and a
    segment sum on other backends."""
    if keras.backend.backend() == "tensorflow":
        return _row_sums_sparse(x, source, target, weight, n_targets)
    return _row_sums_gather(x, source, target, weight, n_targets)


def _row_sums_sparse(x, source, target, weight, n_targets):
    import tensorflow as tf

    indices = ops.stack([ops.cast(target, "int64"), ops.cast(source, "int64")], axis=1)
    shape = ops.cast(ops.stack([n_targets, ops.shape(x)[0]]), "int64")
    return tf.sparse.sparse_dense_matmul(tf.sparse.SparseTensor(indices, weight, shape), x)


def _row_sums_gather(x, source, target, weight, n_targets):
    gathered = ops.take(x, source, axis=0) * weight[:, None]
    return ops.segment_sum(gathered, target, num_segments=n_targets)


def _fast(labels, x, kernel_size, stride, normalize_by):
    """Per-centre cross-entropy (B, Hc * Wc) and centre labels, without a patch tensor."""
    k, s, r = kernel_size, stride, kernel_size // 2
    shape = ops.shape(x)
    batch, height, width, channels = shape[0], shape[1], shape[2], x.shape[-1]
    weights = chessboard_weights(k)

    centre_labels = labels[:, ::s, ::s]
    cshape = ops.shape(centre_labels)
    hc, wc = cshape[1], cshape[2]
    centre_flat = ops.reshape(centre_labels, (-1,))
    centre_valid = centre_flat >= 0

    # Boundary centres: the valid labels of the window are not all equal (max != min).
    # Window reductions run as shifted slices on the small label maps (no class axis).
    padded = _pad_labels(labels, r)
    reduce = _WindowReduce(r, s, height, width)
    window_max = reduce(padded, r, ops.maximum)
    window_min = reduce(ops.where(padded < 0, 2 ** 30, padded), r, ops.minimum)
    boundary = centre_valid & ops.reshape(ops.not_equal(window_max, window_min), (-1,))

    # Interior centres: every valid pixel of the window shares the centre's label, so the sum
    # of eq. 2 is one fixed depthwise convolution of x (x is 0 at ignored pixels and outside
    # the image) and xi is the (weighted) number of valid pixels in the window.
    kernel = np.tile(weights[:, :, None, None], (1, 1, channels, 1))
    if s == 1:
        conv = ops.depthwise_conv(x, kernel, strides=1, padding="same")
    else:
        x_pad = ops.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
        conv = ops.depthwise_conv(x_pad, kernel, strides=s, padding="valid")
    conv = ops.reshape(conv, (-1, channels))
    valid_map = ops.cast(padded >= 0, "float32")
    valid_count = ops.reshape(reduce(valid_map, r, ops.add), (-1,))
    if normalize_by == "count":
        xi = valid_count
    else:  # w = sum_d a_d box_d with a_d = 2^-d (d < r), a_r = 2^(1-r)
        xi = sum(_box_coefficient(d, r) * reduce(valid_map, d, ops.add) for d in range(r + 1))
        xi = ops.reshape(xi, (-1,))
    xi = ops.maximum(xi, 1.0)  # 0 only at invalid centres (masked later)

    # Boundary centres: a (n_boundary, k*k) table of their neighbours' labels (no class axis;
    # int32 and few operations on it, as it is the largest thing here besides x) ...
    bidx = ops.cast(ops.nonzero(boundary)[0], "int32")
    b = bidx // (hc * wc)
    rest = bidx % (hc * wc)
    i = (rest // wc) * s
    j = (rest % wc) * s
    du, dv = (a.reshape(-1).astype("int32") for a in np.mgrid[-r:r + 1, -r:r + 1])
    hp, wp = height + 2 * r, width + 2 * r
    padded_index = (b * (hp * wp) + i * wp + j)[:, None] + ((du + r) * wp + dv + r)[None, :]
    nbr_labels = ops.take(ops.reshape(padded, (-1,)), padded_index)
    centre_b = ops.take(centre_flat, bidx)
    # Tensor comparisons go through ops.equal: `==` is Python identity in TF1-style graphs.
    same = ops.equal(nbr_labels, centre_b[:, None])  # centre_b >= 0: `same` implies valid
    same_count = ops.sum(ops.cast(same, "float32"), axis=1)
    w_flat = weights.reshape(-1)
    if normalize_by == "count":
        xi_b = same_count
    else:
        xi_b = ops.sum(ops.where(same, w_flat[None, :], 0.0), axis=1)
    # ... then per boundary centre either its same-label neighbours summed directly (the
    # convolution is dropped there), or its differing-label neighbours subtracted from the
    # convolution, whichever list is shorter. All centres then share one expression,
    #     f = alpha * conv + beta,
    # alpha = 1/xi inside regions, 1/xi_b or 0 at boundary centres (labels only, no gradient),
    # beta = the signed sum of the gathered neighbours / xi_b (0 inside regions), and one
    # cross-entropy over every centre.
    direct = same_count <= ops.take(valid_count, bidx) - same_count
    chosen = (nbr_labels >= 0) & ops.equal(same, direct[:, None])  # same if direct, else differ
    pair = ops.cast(ops.nonzero(ops.reshape(chosen, (-1,)))[0], "int32")
    pair_row = pair // (k * k)
    pair_offset = pair % (k * k)
    source = ops.take(b * (height * width) + i * width + j, pair_row) + ops.take(
        du * width + dv, pair_offset)
    inverse_xi_b = 1.0 / xi_b
    sign_over_xi = ops.where(direct, inverse_xi_b, -inverse_xi_b)
    pair_w = ops.take(w_flat, pair_offset) * ops.take(sign_over_xi, pair_row)
    n_centres = ops.shape(centre_flat)[0]
    beta = _weighted_row_sums(ops.reshape(x, (-1, channels)), source, ops.take(bidx, pair_row),
                              pair_w, n_centres)
    boundary_alpha = ops.where(direct, 0.0, inverse_xi_b)
    alpha = ops.where(boundary, ops.segment_sum(boundary_alpha, bidx, num_segments=n_centres),
                      1.0 / xi)
    f = conv * alpha[:, None] + beta
    loss = ops.sparse_categorical_crossentropy(ops.maximum(centre_flat, 0), f, from_logits=True)
    return (ops.reshape(loss, (batch, hc * wc)),
            ops.reshape(centre_flat, (batch, hc * wc)))


def _shifted(padded, du, dv, r, s):
    """``padded`` (B, H + 2r, W + 2r, ...) shifted by (du, dv) and read every ``s`` pixels:
    element [b, i, j] is padded[b, r + du + s * i, r + dv + s * j]. The bounds are Python
    integers (the stop counts from the end), so the slice is static under any compiler."""
    def axis(d):
        return slice(r + d, (d - r) or None, s)

    return padded[:, axis(du), axis(dv)]


def _window_offsets(kernel_size):
    """[(du, dv, w(du, dv))] over the k x k window, row by row."""
    r = kernel_size // 2
    weights = chessboard_weights(kernel_size)
    return [(du, dv, float(weights[du + r, dv + r]))
            for du in range(-r, r + 1) for dv in range(-r, r + 1)]


def _same_label_masks(labels, kernel_size, stride):
    """For every window offset o, (B, Hc, Wc) booleans: the pixel at centre + o carries the
    centre's label (False outside the image and at ignored neighbours of valid centres)."""
    r = kernel_size // 2
    padded = _pad_labels(labels, r)
    centres = labels if stride == 1 else labels[:, ::stride, ::stride]
    return [ops.equal(_shifted(padded, du, dv, r, stride), centres)
            for du, dv, _ in _window_offsets(kernel_size)]


def _same_label_sum(y, masks, kernel_size, stride):
    """sum over offsets o of w(o) * y[centre + o] where masks[o] holds: (B, Hc, Wc, C).

    The compilers want different spellings of the same sum (one A/B each, (4, 256, 256, 21),
    k = 5, forward + backward of the whole loss, against cross-entropy): XLA under TensorFlow
    does best with (B, Hc, Wc) weight maps w(o) * mask_o broadcast over the classes times y_o,
    summed, divided by xi (3.0-3.7x; with (B, Hc, Wc, 1) masks, times 1/xi: 7.0-7.5x); JAX's
    CPU compiler (jaxlib 0.10) splits that sum into one buffer per term (23x) and does best
    with the chain total = where(mask_o, total + w(o) * y_o, total) (4.8-7.1x). See
    docs/benchmarks.md."""
    r = kernel_size // 2
    padded = ops.pad(y, ((0, 0), (r, r), (r, r), (0, 0)))
    plain_sum = keras.backend.backend() == "tensorflow"
    total = None
    for (du, dv, weight), same in zip(_window_offsets(kernel_size), masks):
        shifted = _shifted(padded, du, dv, r, stride)
        if plain_sum:
            term = (ops.cast(same, "float32") * weight)[..., None] * shifted
            total = term if total is None else total + term
        else:
            term = shifted * weight
            same = same[..., None]
            total = (ops.where(same, term, 0.0) if total is None
                     else ops.where(same, total + term, total))
    return total


def _spread_to_pixels(h, stride, height, width):
    """(B, Hc, Wc, C) values at the centres -> (B, H, W, C), zero between centres."""
    if stride == 1:
        return h
    shape = ops.shape(h)
    batch, hc, wc, channels = shape[0], shape[1], shape[2], h.shape[-1]
    h = ops.reshape(h, (batch, hc, 1, wc, 1, channels))
    h = ops.pad(h, ((0, 0), (0, 0), (0, stride - 1), (0, 0), (0, stride - 1), (0, 0)))
    h = ops.reshape(h, (batch, hc * stride, wc * stride, channels))
    return h[:, :height, :width]


def _same_label_pooling(labels, x, kernel_size, stride, normalize_by):
    """f of eq. 2 at every centre, (B, Hc, Wc, C), with static shapes and its backward written
    out: the map x -> sum_q mu(p, q) w(q - p) x_q is symmetric (mu(p, q) = mu(q, p), w(o) =
    w(-o)), so dL/dx_q = sum_o mu(q, q + o) w(o) h_{q + o}, h = (dL/df) / xi spread from the
    centres to the pixels: the same pooling again (autodiff of the shifted slices is 2-3x
    slower under XLA)."""
    masks = _same_label_masks(labels, kernel_size, stride)
    if normalize_by == "count":
        xi = sum(ops.cast(same, "float32") for same in masks)
    else:
        xi = sum(ops.cast(same, "float32") * w
                 for (_, _, w), same in zip(_window_offsets(kernel_size), masks))
    xi = ops.maximum(xi, 1.0)[..., None]  # xi = 0 only at ignored centres (masked later)
    shape = ops.shape(x)
    height, width = shape[1], shape[2]

    @ops.custom_gradient
    def pooled(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            h = _spread_to_pixels(upstream / xi, stride, height, width)
            pixel_masks = masks if stride == 1 else _same_label_masks(labels, kernel_size, 1)
            return _same_label_sum(h, pixel_masks, kernel_size, 1)

        return _same_label_sum(x, masks, kernel_size, stride) / xi, grad

    return pooled(x)


def _static(labels, x, kernel_size, stride, normalize_by):
    """Per-centre cross-entropy (B, Hc * Wc) and centre labels with shapes fixed by the input
    shape (XLA, JAX, PyTorch): eq. 2 as a sum over the k*k window offsets."""
    f = _same_label_pooling(labels, x, kernel_size, stride, normalize_by)
    centre_labels = labels[:, ::stride, ::stride]
    loss = ops.sparse_categorical_crossentropy(ops.maximum(centre_labels, 0), f,
                                               from_logits=True)
    batch = ops.shape(x)[0]
    return ops.reshape(loss, (batch, -1)), ops.reshape(centre_labels, (batch, -1))


def _patches(labels, x, kernel_size, stride, normalize_by):
    """The plain reading of eq. 2 with extracted patches (TensorFlow only)."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"{_OWNER}: `implementation` 'patches' uses tf.image.extract_patches and needs the "
            f"TensorFlow backend; received backend {keras.backend.backend()!r}. Use "
            "implementation='fast' (keras.ops only) instead.")
    import tensorflow as tf

    k, s, r = kernel_size, stride, kernel_size // 2
    channels = x.shape[-1]
    weights = chessboard_weights(k).reshape(-1)
    x_pad = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]])
    lab_pad = tf.cast(tf.pad(labels, [[0, 0], [r, r], [r, r]], constant_values=-1), "float32")
    sizes, strides, rates = [1, k, k, 1], [1, s, s, 1], [1, 1, 1, 1]
    patches = tf.image.extract_patches(x_pad, sizes, strides, rates, "VALID")
    label_patches = tf.image.extract_patches(lab_pad[..., None], sizes, strides, rates, "VALID")
    shape = tf.shape(patches)
    patches = tf.reshape(patches, [shape[0], shape[1], shape[2], k * k, channels])
    centre = tf.cast(labels[:, ::s, ::s], "float32")
    mu = tf.cast(tf.equal(label_patches, centre[..., None]) & (label_patches >= 0), "float32")
    pooled = tf.reduce_sum(patches * (mu * weights)[..., None], axis=3)
    xi = tf.reduce_sum(mu if normalize_by == "count" else mu * weights, axis=3)
    f = tf.reshape(pooled / tf.maximum(xi, 1.0)[..., None], [shape[0], -1, channels])
    centre = tf.reshape(tf.cast(centre, "int32"), [shape[0], -1])
    return _cross_entropy(f, centre), centre


def locally_adaptive_loss(y_true, y_pred, kernel_size=5, stride=1, minkowski_k=3,
                          normalize_by="count", ignore_index=None, from_logits=True,
                          implementation="auto"):
    """Locally Adaptive loss L^AD, one value per image.

    Guo, Ren, Gu, Xu and Wu, "Locally Adaptive Learning Loss for Semantic Image Segmentation"
    (2018), eqs. 2-5:

    f(p) = (1/xi_p) sum_q mu(p, q) 2^(1 - d(p, q)) x_q over the k x k window of each centre p,
    x the z-score of the prediction vector over its C entries, mu(p, q) = 1 for in-image,
    non-ignored neighbours with p's label, d the chessboard distance; L^S(p) = softmax
    cross-entropy of f(p) against p's label (eq. 4); L^AD = ((1/M) sum_p L^S(p)^k)^(1/k) over the
    M valid centres (eq. 5).

    M runs per image: the paper takes "one image as an input batch" for eq. 5, and per-image
    values make the loss independent of how a batch is split over replicas (MirroredStrategy)
    and let Keras apply ``sample_weight`` and its batch reduction as for any per-sample loss.
    An image without valid centres gives 0 (with finite predictions).

    Args:
        y_true: integer labels (B, H, W) or (B, H, W, 1) in [0, C) or ``ignore_index``; one-hot
            (B, H, W, C) is accepted too (all-zero rows are ignored pixels).
        y_pred: (B, H, W, C) logits (``from_logits=True``) or probabilities; C >= 2. Computed in
            float32 whatever the input dtype.
        kernel_size: odd window size k (the paper uses 3, 5 and 7).
        stride: centres every ``stride`` pixels in both directions, starting at (0, 0).
        minkowski_k: exponent k >= 1 of the Minkowski pooling (eq. 5; the paper picks 3).
        normalize_by: "count" (xi = number of same-label points, as the text says) or "weight"
            (xi = sum of their weights).
        ignore_index: label value of pixels that are neither centres nor neighbours.
        from_logits: if False, ``y_pred`` holds probabilities and log(max(p, epsilon)) is z-scored
            (the z-score removes the log-softmax shift, so this equals using the logits).
        implementation: "auto" (default): "fast" under TensorFlow outside XLA, "static"
            under XLA (``jit_compile=True``), JAX and PyTorch. "fast" (keras.ops; gathers only
            near label boundaries; dynamic shapes, so eager or ``tf.function`` only), "static"
            (keras.ops; fixed shapes, any path) or "patches" (tf.image.extract_patches; TF
            only). All give the same values and gradients.

    Faults are never silent: labels that are neither a class nor ``ignore_index`` raise a
    ``ValueError`` eagerly and a TensorFlow assertion in ``tf.function`` graphs; where no check
    can stop the step (XLA drops assertions, JAX and torch cannot raise from a trace), the
    image's loss is NaN, so ``keras.callbacks.TerminateOnNaN`` stops training. A NaN or an
    infinity anywhere in an image's prediction (ignored pixels included) also makes its loss
    NaN, on every path.

    Returns:
        float32 tensor (B,): the loss of each image.

    Example:
        >>> labels = np.array([[[0, 0, 1], [0, 1, 1], [1, 1, 1]]])          # (1, 3, 3)
        >>> logits = np.stack([2.0 * (labels == 0) - 1.0, 2.0 * (labels == 1) - 1.0], -1)
        >>> np.round(np.asarray(locally_adaptive_loss(labels, logits, kernel_size=3)), 4)
        array([0.077], dtype=float32)
    """
    kernel_size, stride, minkowski_k, ignore_index = _check_arguments(
        "locally_adaptive_loss", kernel_size, stride, minkowski_k, normalize_by, ignore_index,
        from_logits, implementation)
    labels, x, label_faults = _prepare(_OWNER, y_true, y_pred, ignore_index, from_logits)
    build = {"fast": _fast, "static": _static, "patches": _patches}[
        _resolve_implementation(implementation, labels)]
    loss_map, centre_labels = build(labels, x, kernel_size, stride, normalize_by)
    loss = _minkowski_per_image(loss_map, centre_labels >= 0, minkowski_k)
    # x is NaN at every pixel whose prediction holds a NaN or an infinity (ignored pixels too).
    bad_prediction = ops.logical_not(ops.all(ops.isfinite(x[..., 0]), axis=(1, 2)))
    return faulty_to_nan(loss, ops.logical_or(label_faults, bad_prediction))


def _resolve_implementation(implementation, labels):
    """"auto" -> "fast" under TensorFlow outside XLA (eager and ``tf.function``, where it is
    faster), else "static" (XLA, JAX, which compiles every training step, and PyTorch). An
    explicit "fast" inside a step traced with static shapes fails and says why."""
    if implementation == "auto":
        dynamic = keras.backend.backend() == "tensorflow" and not _in_xla_trace()
        return "fast" if dynamic else "static"
    if implementation == "fast" and _traced_with_static_shapes(labels):
        fail(_OWNER, "implementation", implementation,
             "has shapes that depend on the labels and cannot run in a step traced with "
             "static shapes (XLA, jax.jit or jax.eval_shape, torch.compile); use 'auto' or "
             "'static'")
    return implementation


def _in_xla_trace():
    """Whether TensorFlow is tracing a function that XLA compiles.

    ``tf.function(jit_compile=True)`` (what ``model.compile(jit_compile=True)`` and Keras's
    "auto" on a GPU build) traces its body inside an ``XLAControlFlowContext``; TensorFlow's
    own ``GraphOrParentsInXlaContext`` finds it in the graph or its outer graphs. Eager calls
    and plain ``tf.function`` graphs are not XLA. If that helper ever moves the answer is
    True: the static formulation gives the same numbers on every path, only slower without
    XLA."""
    import tensorflow as tf

    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - moved in a future TensorFlow
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _traced_with_static_shapes(labels):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _in_xla_trace()
    if backend == "jax":
        import jax

        return isinstance(labels, jax.core.Tracer)
    if backend == "torch":
        import torch

        return torch.compiler.is_compiling() or labels.device.type == "meta"
    return False


@register
class LocallyAdaptiveLoss(keras.losses.Loss):
    """Locally Adaptive loss (Guo et al., "Locally Adaptive Learning
    Loss for Semantic Image Segmentation" (2018), eqs. 2-5) on (B, H, W, C) logits and
    integer labels.

    Selective pooling of z-scored predictions over same-label neighbours in a k x k window,
    weighted 2^(1 - chessboard distance), softmax cross-entropy of the pooled vector against the
    centre's label, Minkowski pooling with exponent ``minkowski_k`` over the valid centres of
    each image. See :func:`locally_adaptive_loss` for the formulas and arguments.

    Args:
        kernel_size: odd window size (default 5, the paper's best).
        stride: distance between centres (default 1, the paper's setting).
        minkowski_k: Minkowski exponent >= 1 (default 3, the paper's choice).
        normalize_by: "count" or "weight" (the normaliser xi).
        ignore_index: label value to ignore, e.g. 255 for Pascal VOC.
        from_logits: whether ``y_pred`` holds logits (default) or probabilities.
        implementation: "auto" (default; "fast" under TensorFlow outside XLA, "static" under
            XLA, JAX and PyTorch), "fast", "static" or "patches" (TensorFlow only, the plain
            reading; for checking and benchmarks). Same values and gradients.
        reduction, name, dtype: as for every ``keras.losses.Loss``.

    Example:
        >>> loss = LocallyAdaptiveLoss(kernel_size=3, ignore_index=255)
        >>> labels = np.array([[[0, 0, 1], [0, 1, 1], [255, 1, 1]]])
        >>> logits = np.stack([1.0 * (labels == 0), 1.0 * (labels == 1)], -1)
        >>> round(float(loss(labels, logits)), 4)
        0.0759
    """

    def __init__(self, kernel_size=5, stride=1, minkowski_k=3, normalize_by="count",
                 ignore_index=None, from_logits=True, implementation="auto",
                 reduction="sum_over_batch_size", name="locally_adaptive_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        (self.kernel_size, self.stride, self.minkowski_k,
         self.ignore_index) = _check_arguments(_OWNER, kernel_size, stride, minkowski_k,
                                               normalize_by, ignore_index, from_logits,
                                               implementation)
        self.normalize_by = normalize_by
        self.from_logits = from_logits
        self.implementation = implementation

    def call(self, y_true, y_pred):
        return locally_adaptive_loss(
            y_true, y_pred, kernel_size=self.kernel_size, stride=self.stride,
            minkowski_k=self.minkowski_k, normalize_by=self.normalize_by,
            ignore_index=self.ignore_index, from_logits=self.from_logits,
            implementation=self.implementation)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, stride=self.stride,
                      minkowski_k=self.minkowski_k, normalize_by=self.normalize_by,
                      ignore_index=self.ignore_index, from_logits=self.from_logits,
                      implementation=self.implementation)
        return config
