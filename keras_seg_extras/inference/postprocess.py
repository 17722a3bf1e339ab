"""Post-processing of predicted probability maps (NumPy + OpenCV): threshold, small-component
removal and the competitions' empty-image rule.

"SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition (2019), section
3.4.1 ("I also remove small predictions using the connected component function of opencv") and
its summary ("Zero out small predictions", "Threshold 0.5 for sigmoid output"). The empty-image
rule is the one the SIIM (and Severstal, Understanding Clouds) winners used: an image is
predicted empty when fewer than ``min_pixels`` of its pixels exceed the threshold, because a
false positive on an empty image costs a whole image's score.

Order of :func:`postprocess`, per image and per channel:

1. ``mask = probabilities > threshold`` (strictly greater);
2. empty rule: if ``mask.sum() < min_pixels`` the mask becomes all zero;
3. connected components (8-connectivity by default) of at most ``min_area`` pixels are
   removed: a component is kept when its area is strictly larger than ``min_area``, the rule of
   the report author's code (``if component.sum() > min_size``), so ``min_area=2000`` removes a
   component of exactly 2000 pixels. ``min_area`` may be fractional (an area scaled from a
   reference size, see :mod:`keras_seg_extras.inference.postprocess_search`).

:func:`apply_image_gate` is the other empty-image rule: an image-level classifier's probability
below a gate empties the image's mask.

Shapes: (H, W), (H, W, C) or (B, H, W, C). A batch of single-channel maps must therefore carry
its channel axis: (B, H, W, 1). Channels are processed independently (sigmoid / multi-label
outputs; for softmax outputs pass ``one_hot(argmax)`` maps with ``threshold=0.5``).
"""

import numbers

import numpy as np

from keras_seg_extras._common import check_choice, check_number, fail


def _as_maps(owner, array, argument):
    """View ``array`` as (N, H, W) maps; return them and a function restoring the shape."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None], lambda maps: maps[0]
    if array.ndim == 3:
        return np.moveaxis(array, -1, 0), lambda maps: np.moveaxis(maps, 0, -1)
    if array.ndim == 4:
        batch, height, width, channels = array.shape
        maps = np.moveaxis(array, -1, 1).reshape(batch * channels, height, width)

        def restore(result):
            return np.moveaxis(result.reshape(batch, channels, height, width), 1, -1)

        return maps, restore
    fail(owner, argument, f"array of shape {array.shape}",
         "must have shape (H, W), (H, W, C) or (B, H, W, C)")


def label_components(binary, connectivity=8):
    """Connected components of one binary (H, W) map: ``(labels, areas)``.

    Args:
        binary: (H, W) array; nonzero pixels are foreground.
        connectivity: 8 (diagonal neighbours connect) or 4.

    Returns:
        ``labels``, the int32 (H, W) map (0 = background, 1..n the components, OpenCV's
        ``connectedComponentsWithStats``), and ``areas``, whose entry ``k - 1`` is the
        pixel count of component k.

    Example:
        >>> labels, areas = label_components(np.array([[1, 1, 0], [0, 0, 0], [0, 1, 1]]))
        >>> labels
        array([[1, 1, 0],
               [0, 0, 0],
               [0, 2, 2]], dtype=int32)
        >>> areas.tolist()
        [2, 2]
    """
    import cv2

    owner = "label_components"
    check_choice(owner, "connectivity", connectivity, (4, 8))
    binary = np.asarray(binary)
    if binary.ndim != 2:
        fail(owner, "binary", f"array of shape {binary.shape}", "must be one (H, W) map")
    binary = (binary != 0).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity)
    return labels, stats[1:, cv2.CC_STAT_AREA]


def remove_small_components(mask, min_area, connectivity=8):
    """Zero out the connected components of a binary mask of at most ``min_area`` pixels.

    A component is kept when its area is strictly larger than ``min_area`` (the report
    author's rule, ``component.sum() > min_size``).

    Args:
        mask: binary mask (nonzero = foreground), shape (H, W), (H, W, C) or (B, H, W, C);
            each channel of each image is processed on its own.
        min_area: components with at most this many pixels are removed (a number >= 0; 0
            keeps every component; fractional values are allowed).
        connectivity: 8 (diagonal neighbours connect; OpenCV's default) or 4.

    Returns:
        A uint8 {0, 1} array of the same shape.

    Example:
        >>> mask = np.array([[1, 1, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]])
        >>> remove_small_components(mask, min_area=1)
        array([[1, 1, 0, 0],
               [1, 1, 0, 0],
               [0, 0, 0, 0]], dtype=uint8)
    """
    owner = "remove_small_components"
    min_area = check_number(owner, "min_area", min_area, minimum=0)
    check_choice(owner, "connectivity", connectivity, (4, 8))
    maps, restore = _as_maps(owner, mask, "mask")
    binary = (maps != 0).astype(np.uint8)
    if min_area < 1:
        return restore(binary)
    for index in range(binary.shape[0]):
        labels, areas = label_components(binary[index], connectivity)
        keep = np.concatenate([[False], areas > min_area])  # label 0 is the background
        binary[index] = keep[labels].astype(np.uint8)
    return restore(binary)


def apply_empty_rule(mask, min_pixels):
    """Empty every map (per image, per channel) with fewer than ``min_pixels`` foreground pixels.

    Args:
        mask: binary mask, shape (H, W), (H, W, C) or (B, H, W, C).
        min_pixels: the minimum count of foreground pixels for a map to stay non-empty
            (0 keeps every map).

    Returns:
        A uint8 {0, 1} array of the same shape.

    Example:
        >>> masks = np.zeros((2, 3, 3, 1))
        >>> masks[0, :2, :2], masks[1, 0, 0] = 1, 1
        >>> apply_empty_rule(masks, min_pixels=2)[..., 0].sum(axis=(1, 2)).tolist()
        [4, 0]
    """
    owner = "apply_empty_rule"
    min_pixels = check_number(owner, "min_pixels", min_pixels, minimum=0, integer=True)
    maps, restore = _as_maps(owner, mask, "mask")
    binary = (maps != 0).astype(np.uint8)
    counts = binary.reshape(binary.shape[0], -1).sum(axis=1)
    binary[counts < min_pixels] = 0
    return restore(binary)


def apply_image_gate(mask, image_probability, gate):
    """Empty the masks of the images whose classifier probability is below ``gate``.

    The image-level "has a mask" head many SIIM-ACR solutions paired with the segmentation
    network decides the empty-image rule: an image is predicted empty when

        p_image < gate,

    whatever its segmentation says, and left as it is otherwise (``gate = 0`` keeps every
    mask). The gate is chosen on validation with the other post-processing settings
    (:class:`~keras_seg_extras.inference.PostprocessingSearch` with ``gates=``).

    Args:
        mask: binary mask of one image, (H, W) or (H, W, C), with a scalar
            ``image_probability``; or a batch (B, H, W, C) with one probability per image
            (B,) or per image and channel (B, C).
        image_probability: the head's probability (after its sigmoid), in [0, 1].
        gate: a number in [0, 1].

    Returns:
        A uint8 {0, 1} array of the mask's shape.

    Example:
        >>> masks = np.ones((2, 2, 2, 1))
        >>> apply_image_gate(masks, [0.2, 0.9], gate=0.5)[..., 0].sum(axis=(1, 2)).tolist()
        [0, 4]
    """
    owner = "apply_image_gate"
    gate = check_number(owner, "gate", gate, minimum=0.0, maximum=1.0)
    mask = np.asarray(mask)
    _as_maps(owner, mask, "mask")  # shape check
    probability = np.asarray(image_probability, dtype=np.float64)
    if mask.ndim == 4:
        batch, channels = mask.shape[0], mask.shape[-1]
        if probability.shape not in ((batch,), (batch, channels)):
            fail(owner, "image_probability", f"array of shape {probability.shape}",
                 f"must hold one probability per image ({batch},) or per image and channel "
                 f"({batch}, {channels}) for a mask of shape {mask.shape}")
        probability = probability.reshape(batch, 1, 1, -1)
    elif probability.ndim:
        fail(owner, "image_probability", f"array of shape {probability.shape}",
             f"must be one number for the single image of shape {mask.shape}")
    if np.any(~np.isfinite(probability) | (probability < 0) | (probability > 1)):
        fail(owner, "image_probability", probability.ravel().tolist(), "must be in [0, 1]")
    return ((mask != 0) & (probability >= gate)).astype(np.uint8)


def postprocess(probabilities, threshold=0.5, min_area=0, min_pixels=0, connectivity=8):
    """Threshold, empty-image rule, then small-component removal (see the module docstring).

    Args:
        probabilities: predicted probabilities, shape (H, W), (H, W, C) or (B, H, W, C).
        threshold: a pixel is foreground when its probability is strictly greater; a number in
            [0, 1], or one per channel.
        min_area: connected components of at most this many pixels are removed (0 keeps
            all; strictly larger components are kept).
        min_pixels: a map with fewer than this many pixels above the threshold is predicted
            empty (the empty-image rule; 0 disables it). Counted before component removal.
        connectivity: 8 or 4, for the components.

    Returns:
        A uint8 {0, 1} mask of the same shape.

    Example:
        >>> probabilities = np.array([[0.9, 0.8, 0.1, 0.6],
        ...                           [0.7, 0.9, 0.2, 0.1]])
        >>> postprocess(probabilities, threshold=0.5, min_area=1)
        array([[1, 1, 0, 0],
               [1, 1, 0, 0]], dtype=uint8)
        >>> int(postprocess(probabilities, threshold=0.5, min_pixels=6).sum())
        0
    """
    owner = "postprocess"
    probabilities = np.asarray(probabilities)
    if not np.issubdtype(probabilities.dtype, np.number) or probabilities.dtype == bool:
        fail(owner, "probabilities", f"array of dtype {probabilities.dtype}",
             "must be numeric")
    if isinstance(threshold, numbers.Real) and not isinstance(threshold, bool):
        threshold = check_number(owner, "threshold", threshold, minimum=0.0, maximum=1.0)
    else:
        channels = probabilities.shape[-1] if probabilities.ndim >= 3 else 1
        threshold = np.asarray(threshold, dtype="float64")
        if threshold.ndim != 1 or threshold.shape[0] != channels or probabilities.ndim < 3 \
                or np.any(~np.isfinite(threshold)) or np.any((threshold < 0) | (threshold > 1)):
            fail(owner, "threshold", threshold.tolist(),
                 f"must be a number in [0, 1] or one per channel ({channels}) in [0, 1]")
    _as_maps(owner, probabilities, "probabilities")  # shape check before any work
    mask = (probabilities > threshold).astype(np.uint8)
    mask = apply_empty_rule(mask, min_pixels)
    return remove_small_components(mask, min_area, connectivity)
