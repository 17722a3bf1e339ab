"""Boxes for video-instance post-processing (NumPy): IoU, max-score box fusion, mask scoring.

From "1st Place Solution for YouTubeVOS Challenge 2021: Video Instance Segmentation"
(technical report, 2021), sections 3.5.1 (mask scoring) and 3.5.2 (ensembles). Boxes are
``(x1, y1, x2, y2)`` with ``x2 >= x1`` and ``y2 >= y1``, in any consistent unit (pixels or
normalised).
"""

import numpy as np

from keras_seg_extras._common import check_number, fail


def _as_boxes(owner, argument, boxes):
    """Validate an (N, 4) array of ``(x1, y1, x2, y2)`` boxes; return float64."""
    array = np.asarray(boxes, dtype="float64")
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        fail(owner, argument, f"array of shape {array.shape}", "must have shape (N, 4)")
    if not np.all(np.isfinite(array)):
        fail(owner, argument, "boxes with NaN or Inf", "must hold finite coordinates")
    if np.any(array[:, 2] < array[:, 0]) or np.any(array[:, 3] < array[:, 1]):
        bad = np.flatnonzero((array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1]))[0]
        fail(owner, argument, array[bad].tolist(), "must hold (x1, y1, x2, y2) with x2 >= x1 "
                                                   "and y2 >= y1")
    return array


def box_iou(boxes_a, boxes_b):
    """Pairwise intersection over union of two sets of boxes.

    IoU(a, b) = |a ∩ b| / (|a| + |b| - |a ∩ b|); 0 where the union is empty (two
    zero-area boxes).

    Args:
        boxes_a: (N, 4) boxes ``(x1, y1, x2, y2)``.
        boxes_b: (M, 4) boxes.

    Returns:
        float64 (N, M) matrix.

    Example:
        >>> from keras_seg_extras.video import box_iou
        >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [0, 0, 2, 2]])
        array([[0.33333333, 1.        ]])
    """
    a = _as_boxes("box_iou", "boxes_a", boxes_a)
    b = _as_boxes("box_iou", "boxes_b", boxes_b)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                    - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                     - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def fuse_boxes(boxes_list, scores_list, labels_list=None, *, iou_threshold=0.55, weighted=True,
               model_weights=None):
    """Ensemble detections of several models by clustering, with the MAXIMUM score.

    The YouTubeVOS 2021 VIS report, section 3.5.2: boxes of several models are merged (Greedy
    Auto Ensemble style) and, so that the fused score stays calibrated, the fused score is the
    maximum of the cluster's scores ("inherited from the dominant box"), never their average.

    Algorithm (greedy, deterministic): all boxes of all models are visited by decreasing
    score (ties: model order, then box order). A box joins the existing cluster of the same
    label whose current fused box has the highest IoU with it, if that IoU is
    >= ``iou_threshold``; otherwise it starts a new cluster. After each join the fused box
    is recomputed:

        fused box   = Σ_i w_i b_i / Σ_i w_i,  w_i = s_i · m_i (weighted) or m_i (plain mean)
        fused score = max_i s_i

    with s_i the member scores and m_i its model's weight (``model_weights``, default 1).

    Args:
        boxes_list: one (N_m, 4) array per model.
        scores_list: one (N_m,) array per model, scores in [0, 1].
        labels_list: one (N_m,) int array per model, or None (class-agnostic).
        iou_threshold: IoU in (0, 1] needed to join a cluster.
        weighted: score-weighted mean coordinates (True) or a plain mean (False).
        model_weights: None or one positive weight per model for the coordinates.

    Returns:
        dict with ``boxes`` (K, 4), ``scores`` (K,), ``labels`` (K,) int, ``members``
        (list of K int arrays of (model, index) rows), sorted by decreasing score.

    Example:
        Two models; their label-1 boxes overlap and fuse, model b's label-2 box stays alone:

        >>> import numpy as np
        >>> from keras_seg_extras.video import fuse_boxes
        >>> fused = fuse_boxes([np.array([[0, 0, 10, 10]]),
        ...                     np.array([[1, 1, 11, 11], [50, 50, 60, 60]])],
        ...                    [np.array([0.9]), np.array([0.8, 0.3])],
        ...                    [np.array([1]), np.array([1, 2])])
        >>> fused["boxes"].round(2)
        array([[ 0.47,  0.47, 10.47, 10.47],
               [50.  , 50.  , 60.  , 60.  ]])
        >>> fused["scores"], fused["labels"]
        (array([0.9, 0.3]), array([1, 2]))
    """
    owner = "fuse_boxes"
    if not isinstance(boxes_list, (list, tuple)) or not boxes_list:
        fail(owner, "boxes_list", type(boxes_list).__name__, "must be a non-empty list of "
                                                             "(N, 4) arrays, one per model")
    models = len(boxes_list)
    if not isinstance(scores_list, (list, tuple)) or len(scores_list) != models:
        fail(owner, "scores_list", f"{len(scores_list)} entries" if isinstance(
            scores_list, (list, tuple)) else type(scores_list).__name__,
            f"must be a list with one score array per model ({models})")
    if labels_list is not None and (not isinstance(labels_list, (list, tuple))
                                    or len(labels_list) != models):
        fail(owner, "labels_list", type(labels_list).__name__,
             f"must be None or a list with one label array per model ({models})")
    check_number(owner, "iou_threshold", iou_threshold, minimum=0, maximum=1,
                 min_inclusive=False)
    if model_weights is None:
        model_weights = np.ones(models)
    else:
        model_weights = np.asarray(model_weights, dtype="float64")
        if model_weights.shape != (models,) or np.any(~(model_weights > 0)):
            fail(owner, "model_weights", model_weights.tolist(),
                 f"must hold {models} positive numbers")

    rows = []  # (score, model, index, box, label)
    for m in range(models):
        boxes = _as_boxes(owner, f"boxes_list[{m}]", boxes_list[m])
        scores = np.asarray(scores_list[m], dtype="float64").reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            fail(owner, f"scores_list[{m}]", f"{scores.shape[0]} scores",
                 f"must have one score per box ({boxes.shape[0]})")
        if np.any(~np.isfinite(scores)) or np.any(scores < 0) or np.any(scores > 1):
            fail(owner, f"scores_list[{m}]", scores.tolist()[:5], "must lie in [0, 1]")
        if labels_list is None:
            labels = np.zeros(boxes.shape[0], dtype="int64")
        else:
            labels = np.asarray(labels_list[m]).reshape(-1)
            if labels.shape[0] != boxes.shape[0]:
                fail(owner, f"labels_list[{m}]", f"{labels.shape[0]} labels",
                     f"must have one label per box ({boxes.shape[0]})")
            labels = labels.astype("int64")
        for i in range(boxes.shape[0]):
            rows.append((scores[i], m, i, boxes[i], labels[i]))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))

    clusters = []  # dicts: label, fused box, members
    for score, m, i, box, label in rows:
        best, best_iou = None, -1.0
        candidates = [c for c in clusters if c["label"] == label]
        if candidates:
            ious = box_iou(box[None], np.stack([c["box"] for c in candidates]))[0]
            j = int(np.argmax(ious))
            if ious[j] >= iou_threshold:
                best, best_iou = candidates[j], ious[j]
        if best is None:
            best = {"label": label, "members": [], "boxes": [], "weights": [], "scores": []}
            clusters.append(best)
        weight = (score if weighted else 1.0) * model_weights[m]
        best["members"].append((m, i))
        best["boxes"].append(box)
        best["scores"].append(score)
        best["weights"].append(weight)
        w = np.asarray(best["weights"])
        stacked = np.stack(best["boxes"])
        if w.sum() > 0:
            best["box"] = (w[:, None] * stacked).sum(0) / w.sum()
        else:  # every member scored 0: fall back to the plain mean
            best["box"] = stacked.mean(0)
    clusters.sort(key=lambda c: -max(c["scores"]))
    return {
        "boxes": np.stack([c["box"] for c in clusters]) if clusters else np.zeros((0, 4)),
        "scores": np.asarray([max(c["scores"]) for c in clusters], dtype="float64"),
        "labels": np.asarray([c["label"] for c in clusters], dtype="int64"),
        "members": [np.asarray(c["members"], dtype="int64").reshape(-1, 2) for c in clusters],
    }


def mask_iou(pred_masks, true_masks, threshold=0.5):
    """IoU of each predicted mask with its ground-truth mask (the mask-scoring target).

    Args:
        pred_masks: (N, H, W) probabilities or {0, 1} masks (binarised at ``threshold``).
        true_masks: (N, H, W) {0, 1} masks.
        threshold: binarisation threshold of ``pred_masks``.

    Returns:
        float64 (N,); 1 where both masks are empty.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.video import mask_iou
        >>> mask_iou(np.array([[[0.9, 0.8], [0.1, 0.0]]]), np.array([[[1, 0], [0, 0]]]))
        array([0.5])
    """
    pred = np.asarray(pred_masks) >= threshold
    true = np.asarray(true_masks).astype(bool)
    if pred.shape != true.shape or pred.ndim < 2:
        fail("mask_iou", "true_masks", f"shape {true.shape}",
             f"must match pred_masks' shape {pred.shape} (N, H, W)")
    axes = tuple(range(1, pred.ndim))
    inter = np.logical_and(pred, true).sum(axes).astype("float64")
    union = np.logical_or(pred, true).sum(axes).astype("float64")
    return np.divide(inter, union, out=np.ones_like(inter), where=union > 0)


def mask_scored_scores(class_scores, mask_ious):
    """Mask scoring: final score = class score x mask IoU.

    From the YouTubeVOS 2021 VIS report, section 3.5.1 (after Mask Scoring R-CNN).

    Args:
        class_scores: (N,) classification scores in [0, 1].
        mask_ious: (N,) predicted mask IoUs in [0, 1] (the mask-IoU head's output).

    Returns:
        float64 (N,) rescored confidences.

    Example:
        >>> from keras_seg_extras.video import mask_scored_scores
        >>> mask_scored_scores([0.9, 0.8], [0.5, 1.0])
        array([0.45, 0.8 ])
    """
    scores = np.asarray(class_scores, dtype="float64")
    ious = np.asarray(mask_ious, dtype="float64")
    for argument, values in (("class_scores", scores), ("mask_ious", ious)):
        if values.size and (not np.all(np.isfinite(values)) or values.min() < 0
                            or values.max() > 1):
            fail("mask_scored_scores", argument, values.reshape(-1)[:5].tolist(),
                 "must lie in [0, 1]")
    if scores.shape != ious.shape:
        fail("mask_scored_scores", "mask_ious", f"shape {ious.shape}",
             f"must match class_scores' shape {scores.shape}")
    return scores * ious
