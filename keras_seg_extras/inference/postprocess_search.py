"""Post-processing at each image's original size, and a streamed search of its settings.

Paper 003, 3.4 and the author's code: the predicted probabilities are resized to the image's
original size (1024 x 1024 for SIIM) *before* the threshold, and connected components are
counted there; a component is kept when its area is strictly larger than the minimum area
(2000 px at 1024 px in the report's setting).

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
from keras_seg_extras.inference.postprocess import _label_components, postprocess

REFERENCE_SIZE = 1024


def scale_min_area(min_area, shape, reference_size=REFERENCE_SIZE):
    """``min_area`` given at ``reference_size`` x ``reference_size``, scaled to ``shape`` = (H, W).

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
    """Bilinear resize (OpenCV, pixel centres aligned) of an (h, w) float map to ``shape``."""
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
                        reference_size=REFERENCE_SIZE, connectivity=8):
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
        >>> mask = postprocess_at_size(probabilities_512, (1024, 1024), 0.5, min_area=2000)
    """
    full = resize_probabilities(probabilities, shape)
    area = scale_min_area(min_area, full.shape, reference_size)
    return postprocess(full, threshold=threshold, min_area=area, connectivity=connectivity)


class PostprocessingSearch:
    """Mean per-image Dice and IoU of every (threshold, minimum area) pair, image by image.

    Feed one image at a time with :meth:`update` (its probabilities at any size and its
    truth at the original size; the probabilities are resized to the truth's size), then
    read :meth:`dice`, :meth:`iou` or :meth:`best`. Per image i and setting (t, a), with P
    the pixels kept after the threshold t and the removal of components of at most
    ``a * H * W / reference_size**2`` pixels, and T the true pixels:

        Dice_i = 2 |P and T| / (|P| + |T|),   IoU_i = |P and T| / |P or T|,

    and 1 when P and T are both empty (the SIIM rule); the scores are means over images.

    Args:
        thresholds: probabilities in [0, 1]; a pixel is foreground when strictly above.
        min_areas: minimum component areas >= 0 at ``reference_size`` px (0 keeps all).
        reference_size: the side at which ``min_areas`` are counted.
        connectivity: 8 or 4.

    Example:
        >>> search = PostprocessingSearch((0.3, 0.5, 0.7), (0, 1000, 2000))
        >>> for probabilities, truth in validation:   # streamed, any sizes
        ...     search.update(probabilities, truth)
        >>> search.best()   # {"threshold": ..., "min_area": ..., "dice": ..., "iou": ...}
    """

    owner = "PostprocessingSearch"

    def __init__(self, thresholds, min_areas, reference_size=REFERENCE_SIZE, connectivity=8):
        self.thresholds = check_vector(self.owner, "thresholds", thresholds)
        if not self.thresholds.size or np.any((self.thresholds < 0) | (self.thresholds > 1)):
            fail(self.owner, "thresholds", thresholds, "must be non-empty, in [0, 1]")
        self.min_areas = check_vector(self.owner, "min_areas", min_areas, non_negative=True)
        if not self.min_areas.size:
            fail(self.owner, "min_areas", min_areas, "must be non-empty")
        self.reference_size = check_number(self.owner, "reference_size", reference_size,
                                           minimum=1, integer=True)
        self.connectivity = check_choice(self.owner, "connectivity", connectivity, (4, 8))
        self._intersections, self._predicted, self._truths = [], [], []

    @property
    def count(self):
        """Number of images seen."""
        return len(self._truths)

    def update(self, probabilities, truth):
        """Add one image: ``probabilities`` (h, w) at any size, ``truth`` (H, W) {0, 1}."""
        truth = np.asarray(truth)
        if truth.ndim != 2:
            fail(self.owner, "truth", f"array of shape {truth.shape}", "must be one (H, W) mask")
        full = resize_probabilities(probabilities, truth.shape)
        if not np.all(np.isfinite(full)):
            fail(self.owner, "probabilities", "an array with NaN or infinite values",
                 "must be finite")
        true_pixels = truth.reshape(-1) != 0
        areas_allowed = self.min_areas * truth.size / float(self.reference_size) ** 2
        intersections = np.zeros((self.thresholds.size, self.min_areas.size), np.int64)
        predicted = np.zeros_like(intersections)
        for row, threshold in enumerate(self.thresholds):
            labels, areas = _label_components((full > threshold).astype(np.uint8),
                                              self.connectivity)
            # Intersection with the truth per component (label 0, the background, dropped).
            hits = np.bincount(labels.reshape(-1)[true_pixels], minlength=areas.size + 1)[1:]
            keep = areas[None, :] > areas_allowed[:, None]          # (min areas, components)
            predicted[row] = (keep * areas[None, :]).sum(axis=1)
            intersections[row] = (keep * hits[None, :]).sum(axis=1)
        self._intersections.append(intersections)
        self._predicted.append(predicted)
        self._truths.append(int(true_pixels.sum()))

    def _counts(self):
        if not self._truths:
            fail(self.owner, "count", 0, "must be positive: call update() with images first")
        intersections = np.stack(self._intersections).astype(np.float64)
        predicted = np.stack(self._predicted).astype(np.float64)
        truths = np.asarray(self._truths, np.float64)[:, None, None]
        return intersections, predicted, truths

    def dice(self):
        """(len(thresholds), len(min_areas)) mean per-image Dice (empty and empty = 1)."""
        intersections, predicted, truths = self._counts()
        total = predicted + truths
        per_image = np.where(total == 0, 1.0, 2.0 * intersections / np.maximum(total, 1.0))
        return per_image.mean(axis=0)

    def iou(self):
        """(len(thresholds), len(min_areas)) mean per-image IoU (empty and empty = 1)."""
        intersections, predicted, truths = self._counts()
        union = predicted + truths - intersections
        per_image = np.where(union == 0, 1.0, intersections / np.maximum(union, 1.0))
        return per_image.mean(axis=0)

    def best(self):
        """The setting with the highest mean Dice (first in grid order on ties).

        Returns:
            ``{"threshold", "min_area", "dice", "iou"}``.
        """
        dice, iou = self.dice(), self.iou()
        row, col = np.unravel_index(int(np.argmax(dice)), dice.shape)
        return {"threshold": float(self.thresholds[row]), "min_area": float(self.min_areas[col]),
                "dice": float(dice[row, col]), "iou": float(iou[row, col])}

    def score(self, threshold, min_area):
        """``{"dice", "iou"}`` of one setting of the grid."""
        rows = np.flatnonzero(self.thresholds == threshold)
        cols = np.flatnonzero(self.min_areas == min_area)
        if not rows.size or not cols.size:
            fail(self.owner, "setting", (threshold, min_area), "must be on the grid")
        return {"dice": float(self.dice()[rows[0], cols[0]]),
                "iou": float(self.iou()[rows[0], cols[0]])}
