"""Post-processing at each image's original size, and a streamed search of its settings.

"SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition (2019), section
3.4, and the author's code: the predicted probabilities are resized to the image's original
size (1024 x 1024 for SIIM) *before* the threshold, and connected components are counted there;
a component is kept when its area is strictly larger than the minimum area (2000 px at 1024 px
in the report's setting).

Minimum areas are given at a reference size (``reference_size``, 1024 by default) and scaled
to each image's size by its pixel count: an image of H x W pixels uses

    min_area(H, W) = min_area * H * W / reference_size ** 2

(fractional values are fine: the rule is ``area > min_area(H, W)``), so one grid serves
images of any size and 2000 px at 1024 is the same physical fraction of a 128 px image.

:class:`PostprocessingSearch` scores every (threshold, minimum area) pair of a grid with the
mean per-image Dice and IoU of the SIIM rule (an image whose truth and prediction are both
empty scores 1) without holding the probabilities: each image is thresholded once per
threshold, its components are labelled once, and the intersection with the truth is counted
per component, so every minimum area costs a sum over components. What it keeps is two
integers per image and setting (intersection and predicted pixel counts) and the true pixel
count per image: 1,800 SIIM validation images on a 5 x 6 grid are 0.9 MB, against 7.5 GB for
their probabilities at 1024 px in float32.
"""

import numpy as np

from keras_seg_extras._common import check_choice, check_number, check_vector, fail
from keras_seg_extras.inference.image_scores import per_image_dice_iou
from keras_seg_extras.inference.postprocess import label_components, postprocess

_REFERENCE_SIZE = 1024


def scale_min_area(min_area, shape, reference_size=_REFERENCE_SIZE):
    """``min_area`` given at ``reference_size`` x ``reference_size``, scaled to ``shape`` = (H, W).

    ``min_area * H * W / reference_size ** 2``: the same fraction of the image at any size.

    Args:
        min_area: a number >= 0, in pixels at the reference size.
        shape: the image's (H, W).
        reference_size: the side at which ``min_area`` is counted (SIIM's 1024).

    Returns:
        The scaled area, a float.

    Example:
        >>> scale_min_area(2000, (128, 128))
        31.25
    """
    owner = "scale_min_area"
    min_area = check_number(owner, "min_area", min_area, minimum=0)
    reference_size = check_number(owner, "reference_size", reference_size, minimum=1,
                                  integer=True)
    height, width = _shape(owner, shape)
    return min_area * height * width / float(reference_size) ** 2


def _shape(owner, shape):
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        fail(owner, "shape", shape, "must be (height, width)")
    if height < 1 or width < 1:
        fail(owner, "shape", shape, "must be positive (height, width)")
    return height, width


def resize_probabilities(probabilities, shape):
    """Bilinear resize (OpenCV, pixel centres aligned) of an (h, w) float map to ``shape``.

    Args:
        probabilities: (h, w) array.
        shape: the target (H, W).

    Returns:
        A float32 (H, W) array (the input itself, as float32, when already that size).

    Example:
        >>> resize_probabilities(np.array([[0.0, 1.0]]), (1, 4))
        array([[0.  , 0.25, 0.75, 1.  ]], dtype=float32)
    """
    import cv2

    owner = "resize_probabilities"
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 2:
        fail(owner, "probabilities", f"array of shape {probabilities.shape}",
             "must be one (H, W) map")
    height, width = _shape(owner, shape)
    if probabilities.shape == (height, width):
        return probabilities
    return cv2.resize(probabilities, (width, height), interpolation=cv2.INTER_LINEAR)


def postprocess_at_size(probabilities, shape, threshold=0.5, min_area=0,
                        reference_size=_REFERENCE_SIZE, connectivity=8):
    """One image's mask at its original size, the author's way.

    1. resize the (h, w) probabilities to ``shape`` (bilinear);
    2. ``mask = probabilities > threshold``;
    3. remove the components of at most ``scale_min_area(min_area, shape, reference_size)``
       pixels (strictly larger ones are kept).

    Args:
        probabilities: (h, w) probabilities at any size.
        shape: the original (H, W).
        threshold: a number in [0, 1].
        min_area: minimum area at ``reference_size`` x ``reference_size`` pixels.
        reference_size: the side at which ``min_area`` is counted (SIIM's 1024).
        connectivity: 8 or 4.

    Returns:
        A uint8 {0, 1} (H, W) mask.

    Example:
        >>> probabilities = np.zeros((4, 4), np.float32)
        >>> probabilities[:2, :2] = 0.9
        >>> mask = postprocess_at_size(probabilities, (8, 8), 0.5, min_area=0)
        >>> mask.shape, int(mask.sum())
        ((8, 8), 16)
        >>> int(postprocess_at_size(probabilities, (8, 8), 0.5, min_area=300_000).sum())
        0
    """
    full = resize_probabilities(probabilities, shape)
    area = scale_min_area(min_area, full.shape, reference_size)
    return postprocess(full, threshold=threshold, min_area=area, connectivity=connectivity)


class PostprocessingSearch:
    """Mean per-image Dice and IoU of every (threshold, minimum area[, gate]) setting, streamed.

    Feed one image at a time with :meth:`update` (its probabilities at any size and its
    truth at the original size; the probabilities are resized to the truth's size), then
    read :meth:`dice`, :meth:`iou` or :meth:`best`. Per image i and setting (t, a), with P
    the pixels kept after the threshold t and the removal of components of at most
    ``a * H * W / reference_size**2`` pixels, and T the true pixels:

        Dice_i = 2 |P and T| / (|P| + |T|),   IoU_i = |P and T| / |P or T|,

    and 1 when P and T are both empty (the SIIM rule, :func:`per_image_dice_iou`); the
    scores are means over images. With ``gates``, each image also carries an image-level
    classifier probability p_i and a gate g empties P when ``p_i < g``
    (:func:`~keras_seg_extras.inference.apply_image_gate`), so the gate is searched with the
    other settings at no extra labelling cost.

    Paper: "SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition
    (2019), section 3.4 (threshold and small-component removal at the original size).

    Args:
        thresholds: probabilities in [0, 1]; a pixel is foreground when strictly above.
        min_areas: minimum component areas >= 0 at ``reference_size`` px (0 keeps all).
        reference_size: the side at which ``min_areas`` are counted.
        connectivity: 8 or 4.
        gates: None (no classifier), or gate thresholds in [0, 1] (0 keeps every mask);
            then :meth:`update` needs ``image_probability`` and the score arrays gain a
            leading gate axis.

    Example:
        >>> search = PostprocessingSearch((0.3, 0.5), (0, 1000), reference_size=4)
        >>> truth = np.array([[1, 1, 0, 0]] * 4)
        >>> search.update(np.array([[0.9, 0.6, 0.4, 0.0]] * 4), truth)
        >>> search.update(np.full((4, 4), 0.4), np.zeros((4, 4)))
        >>> search.dice().round(4)
        array([[0.4, 0.5],
               [1. , 0.5]])
        >>> search.best()
        {'threshold': 0.5, 'min_area': 0.0, 'dice': 1.0, 'iou': 1.0}

        With an image-level probability per image, the gate is searched too:

        >>> gated = PostprocessingSearch((0.3,), (0,), gates=(0.0, 0.5))
        >>> gated.update(np.array([[0.9, 0.6, 0.4, 0.0]] * 4), truth, image_probability=0.8)
        >>> gated.update(np.full((4, 4), 0.4), np.zeros((4, 4)), image_probability=0.1)
        >>> gated.dice()[:, 0, 0].round(4)
        array([0.4, 0.9])
        >>> gated.best()["gate"]
        0.5
    """

    owner = "PostprocessingSearch"

    def __init__(self, thresholds, min_areas, reference_size=_REFERENCE_SIZE, connectivity=8,
                 gates=None):
        self.thresholds = check_vector(self.owner, "thresholds", thresholds)
        if not self.thresholds.size or np.any((self.thresholds < 0) | (self.thresholds > 1)):
            fail(self.owner, "thresholds", thresholds, "must be non-empty, in [0, 1]")
        self.min_areas = check_vector(self.owner, "min_areas", min_areas, non_negative=True)
        if not self.min_areas.size:
            fail(self.owner, "min_areas", min_areas, "must be non-empty")
        self.reference_size = check_number(self.owner, "reference_size", reference_size,
                                           minimum=1, integer=True)
        self.connectivity = check_choice(self.owner, "connectivity", connectivity, (4, 8))
        self.gates = None
        if gates is not None:
            self.gates = check_vector(self.owner, "gates", gates)
            if not self.gates.size or np.any((self.gates < 0) | (self.gates > 1)):
                fail(self.owner, "gates", gates, "must be None or non-empty, in [0, 1]")
        self._intersections, self._predicted, self._truths = [], [], []
        self._image_probabilities = []

    @property
    def count(self):
        """Number of images seen."""
        return len(self._truths)

    def update(self, probabilities, truth, image_probability=None):
        """Add one image.

        Args:
            probabilities: (h, w) probabilities at any size.
            truth: (H, W) {0, 1} mask at the original size.
            image_probability: the image-level classifier's probability in [0, 1]; required
                with ``gates``, refused without.
        """
        truth = np.asarray(truth)
        if truth.ndim != 2:
            fail(self.owner, "truth", f"array of shape {truth.shape}", "must be one (H, W) mask")
        if (self.gates is None) != (image_probability is None):
            fail(self.owner, "image_probability", image_probability,
                 "must be given exactly when the search has gates "
                 f"(gates={None if self.gates is None else self.gates.tolist()})")
        if image_probability is not None:
            image_probability = check_number(self.owner, "image_probability",
                                             image_probability, minimum=0.0, maximum=1.0)
        full = resize_probabilities(probabilities, truth.shape)
        if not np.all(np.isfinite(full)):
            fail(self.owner, "probabilities", "an array with NaN or infinite values",
                 "must be finite")
        true_pixels = truth.reshape(-1) != 0
        areas_allowed = self.min_areas * truth.size / float(self.reference_size) ** 2
        intersections = np.zeros((self.thresholds.size, self.min_areas.size), np.int64)
        predicted = np.zeros_like(intersections)
        for row, threshold in enumerate(self.thresholds):
            labels, areas = label_components(full > threshold, self.connectivity)
            # Intersection with the truth per component (label 0, the background, dropped).
            hits = np.bincount(labels.reshape(-1)[true_pixels], minlength=areas.size + 1)[1:]
            keep = areas[None, :] > areas_allowed[:, None]          # (min areas, components)
            predicted[row] = (keep * areas[None, :]).sum(axis=1)
            intersections[row] = (keep * hits[None, :]).sum(axis=1)
        self._intersections.append(intersections)
        self._predicted.append(predicted)
        self._truths.append(int(true_pixels.sum()))
        self._image_probabilities.append(image_probability)

    def _scores(self):
        """Per-image (dice, iou), each (images, [gates,] thresholds, min areas)."""
        if not self._truths:
            fail(self.owner, "count", 0, "must be positive: call update() with images first")
        intersections = np.stack(self._intersections).astype(np.float64)
        predicted = np.stack(self._predicted).astype(np.float64)
        truths = np.asarray(self._truths, np.float64)[:, None, None]
        if self.gates is not None:
            probability = np.asarray(self._image_probabilities, np.float64)
            kept = (probability[:, None] >= self.gates[None, :])[:, :, None, None]
            intersections = intersections[:, None] * kept
            predicted = predicted[:, None] * kept
            truths = truths[:, None]
        return per_image_dice_iou(intersections, predicted, truths)

    def dice(self):
        """Mean per-image Dice: (thresholds, min areas), or (gates, thresholds, min areas)."""
        return self._scores()[0].mean(axis=0)

    def iou(self):
        """Mean per-image IoU, the shape of :meth:`dice`."""
        return self._scores()[1].mean(axis=0)

    def best(self):
        """The setting with the highest mean Dice (first in grid order on ties; gates first).

        Returns:
            ``{"threshold", "min_area", "dice", "iou"}``, and ``"gate"`` with gates.
        """
        dice, iou = (scores.mean(axis=0) for scores in self._scores())
        index = np.unravel_index(int(np.argmax(dice)), dice.shape)
        out = {"threshold": float(self.thresholds[index[-2]]),
               "min_area": float(self.min_areas[index[-1]]),
               "dice": float(dice[index]), "iou": float(iou[index])}
        if self.gates is not None:
            out = {"gate": float(self.gates[index[0]]), **out}
        return out

    def score(self, threshold, min_area, gate=None):
        """``{"dice", "iou"}`` of one setting of the grid (``gate`` with gates, else None)."""
        rows = np.flatnonzero(self.thresholds == threshold)
        cols = np.flatnonzero(self.min_areas == min_area)
        if not rows.size or not cols.size:
            fail(self.owner, "setting", (threshold, min_area), "must be on the grid")
        index = (rows[0], cols[0])
        if (gate is None) != (self.gates is None):
            fail(self.owner, "gate", gate, "must be given exactly when the search has gates")
        if gate is not None:
            gates = np.flatnonzero(self.gates == gate)
            if not gates.size:
                fail(self.owner, "gate", gate, f"must be one of {self.gates.tolist()}")
            index = (gates[0],) + index
        dice, iou = (scores.mean(axis=0) for scores in self._scores())
        return {"dice": float(dice[index]), "iou": float(iou[index])}
