"""Soft multi-label targets and the class statistics multi-label training needs.

Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020", TRECVID 2020 notebook
paper (2020), section 2.1: each annotator picks classes for an image; per image the picks
are counted and the count vector is divided by its largest count, so the class most
annotators agree on gets 1 and a class picked by one annotator in four gets 0.25 (its
Fig. 1: [flood x4, smoke x1, none x1] -> flood 1.0, smoke 0.25, none 0.25).
:func:`region_soft_labels` builds the same kind of graded target from segmentation maps
(a region's area in an image over its largest area in any image).

The statistics around them: :func:`class_presence_counts` (the per-class counts that
class-balanced losses take), :func:`none_class_weights` (the paper's down-weighted
"none" classes, its runs C08/C09) and :func:`constant_prior_scores` (the best constant
predictor, the baseline a ranking model must beat).
"""

import csv
import os

import numpy as np

from keras_seg_extras._common import check_number, fail

_OWNER = "soft_labels_from_votes"


def _counts_from_ids(votes, num_classes, owner):
    counts = np.zeros((len(votes), num_classes), dtype="float64")
    for row, picks in enumerate(votes):
        if isinstance(picks, (str, bytes)) or not hasattr(picks, "__iter__"):
            fail(owner, "votes", picks,
                 f"must hold one list of class ids per image (image {row})")
        for pick in picks:
            if isinstance(pick, (bool, np.bool_)) or not isinstance(pick, (int, np.integer)):
                fail(owner, "votes", pick, f"must hold integer class ids (image {row})")
            if not 0 <= pick < num_classes:
                fail(owner, "votes", pick,
                     f"must hold class ids in [0, {num_classes}) (image {row})")
            counts[row, pick] += 1
    return counts


def soft_labels_from_votes(votes, num_classes, allow_empty=False):
    """Turn annotators' votes into soft multi-label targets.

    Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020" (2020),
    section 2.1 and Fig. 1.

    ``soft[n, c] = count[n, c] / max_c' count[n, c']``.

    Args:
        votes: either a NumPy array of shape (N, C) holding vote counts (>= 0), or a
            sequence with one entry per image, each a sequence of the class ids the
            annotators picked (repeats count: ``[3, 3, 3, 3, 7, 0]``). Only a NumPy array of
            rank 2 is read as counts; lists are always read as class ids.
        num_classes: number of classes C.
        allow_empty: an image with no vote is an error unless this is True; it then gets
            an all-zero row.

    Returns:
        float32 array (N, C) with values in [0, 1] and a 1 in every non-empty row.

    Raises:
        ValueError: unknown class ids, negative or non-finite counts, a count matrix with the
            wrong number of columns, or an image without votes (unless ``allow_empty``).

    Example:
        >>> soft_labels_from_votes([[0, 0, 0, 0, 1, 2]], num_classes=3)
        array([[1.  , 0.25, 0.25]], dtype=float32)
    """
    num_classes = check_number(_OWNER, "num_classes", num_classes, minimum=1, integer=True)
    if isinstance(votes, np.ndarray) and votes.ndim == 2:
        if votes.shape[1] != num_classes:
            fail(_OWNER, "votes", f"count matrix of shape {votes.shape}",
                 f"must have num_classes={num_classes} columns")
        try:
            counts = votes.astype("float64")
        except (TypeError, ValueError):
            fail(_OWNER, "votes", votes.dtype, "must hold numeric counts")
        if not np.all(np.isfinite(counts)) or np.any(counts < 0):
            fail(_OWNER, "votes", counts[~(np.isfinite(counts) & (counts >= 0))][:5].tolist(),
                 "must hold finite counts >= 0")
    else:
        if isinstance(votes, np.ndarray) and votes.ndim != 1:
            fail(_OWNER, "votes", f"array of shape {votes.shape}",
                 "must be a (N, C) count matrix or one list of class ids per image")
        counts = _counts_from_ids(list(votes), num_classes, _OWNER)
    largest = counts.max(axis=1, initial=0.0)
    empty = largest <= 0
    if np.any(empty) and not allow_empty:
        rows = np.flatnonzero(empty)[:10].tolist()
        fail(_OWNER, "votes", f"no votes for image(s) {rows}",
             "must give every image at least one vote (pass allow_empty=True for zero rows)")
    soft = counts / np.where(empty, 1.0, largest)[:, None]
    return soft.astype("float32")


def soft_labels_from_csv(path, class_names=None, image_column="image", label_column="label",
                         allow_empty=False, delimiter=","):
    """Read a CSV of (image, annotator label) rows and build soft labels per image.

    The vote files of the LADI data set, as read by Okazaki, Kong, Klinkigt and Yoshinaga,
    "Hitachi at TRECVID DSDI 2020" (2020), section 2.1.

    One row per vote; the rows of one image are grouped (in order of first appearance) and
    turned into one soft vector by ``soft_labels_from_votes``. A row with an empty label
    cell records an image that an annotator saw without picking a class: an image whose
    rows are all empty has no votes and is an error unless ``allow_empty``.

    Args:
        path: CSV file with a header row.
        class_names: optional list of class names (labels are matched to it exactly, after
            stripping spaces) or an int C when the labels are integer ids in [0, C). When
            None, the classes are the sorted distinct label strings of the file.
        image_column: header of the image column (path or id).
        label_column: header of the label column.
        allow_empty: allow images without votes (all-zero rows).
        delimiter: CSV delimiter.

    Returns:
        ``(images, soft_labels, class_names)``: list of N image entries, float32 (N, C),
        list of the C class names (strings; for integer ids, ``str(id)``).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "votes.csv")
        >>> with open(path, "w") as handle:
        ...     _ = handle.write("url,label\\na.jpg,flood\\na.jpg,flood\\n"
        ...                      "a.jpg,smoke\\nb.jpg,smoke\\n")
        >>> images, y, names = soft_labels_from_csv(path, image_column="url")
        >>> images, names
        (['a.jpg', 'b.jpg'], ['flood', 'smoke'])
        >>> y
        array([[1. , 0.5],
               [0. , 1. ]], dtype=float32)
    """
    owner = "soft_labels_from_csv"
    if not os.path.isfile(path):
        fail(owner, "path", path, "must be an existing CSV file")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        header = reader.fieldnames or []
        for argument, column in (("image_column", image_column), ("label_column", label_column)):
            if column not in header:
                fail(owner, argument, column, f"must be a column of {path} (columns: {header})")
        rows = [(row[image_column], (row[label_column] or "").strip()) for row in reader]

    integer_ids = isinstance(class_names, (int, np.integer)) and not isinstance(class_names, bool)
    if integer_ids:
        num_classes = check_number(owner, "class_names", class_names, minimum=1, integer=True)
        names = [str(i) for i in range(num_classes)]
    elif class_names is None:
        names = sorted({label for _, label in rows if label})
        if not names:
            fail(owner, "path", path, "must contain at least one non-empty label")
    else:
        names = [str(name).strip() for name in class_names]
        if len(set(names)) != len(names):
            fail(owner, "class_names", class_names, "must not repeat a name")
    index = {name: i for i, name in enumerate(names)}

    order = {}
    picks = []
    for line, (image, label) in enumerate(rows, start=2):
        if image not in order:
            order[image] = len(picks)
            picks.append([])
        if not label:
            continue
        if label not in index:
            fail(owner, "path", f"label {label!r} on line {line}",
                 f"must hold labels among the {len(names)} class names")
        picks[order[image]].append(index[label])
    try:
        soft = soft_labels_from_votes(picks, len(names), allow_empty=allow_empty)
    except ValueError as error:
        empty = [image for image, i in order.items() if not picks[i]][:5]
        raise ValueError(f"{owner}: images without votes in {path}: {empty}; "
                         "pass allow_empty=True to keep them as zero rows.") from error
    return list(order), soft, names


def region_soft_labels(region_maps, num_regions):
    """Soft labels per image from integer region maps: a region's area over its largest area.

    ``soft[n, r - 1] = area(region r in image n) / max_m area(region r in image m)``, so each
    region gets 1 in the image where it is largest, a fraction where it shows partly, and 0
    where it is absent (0 everywhere for a region absent from every image). Label 0 is the
    background and gets no column. The graded target of annotator agreement (Okazaki, Kong,
    Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020", 2020, section 2.1) built from
    segmentations, e.g. the atlas regions visible in each slice of a brain MRI. Pass every
    split at once so that they share one scale.

    Args:
        region_maps: integer array (N, H, W) or (N, H, W, 1) with labels in [0, num_regions].
        num_regions: number of regions R (labels 1..R).

    Returns:
        float32 (N, R).

    Example:
        >>> maps = np.array([[[1, 1], [0, 2]], [[1, 0], [0, 0]]])
        >>> region_soft_labels(maps, num_regions=3)
        array([[1. , 1. , 0. ],
               [0.5, 0. , 0. ]], dtype=float32)
    """
    owner = "region_soft_labels"
    num_regions = check_number(owner, "num_regions", num_regions, minimum=1, integer=True)
    maps = np.asarray(region_maps)
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.ndim != 3:
        fail(owner, "region_maps", f"shape {maps.shape}", "must be (N, H, W) or (N, H, W, 1)")
    if not np.issubdtype(maps.dtype, np.integer):
        fail(owner, "region_maps", maps.dtype, "must hold integer region labels")
    flat = maps.reshape(maps.shape[0], -1).astype("int64")
    if flat.size and (flat.min() < 0 or flat.max() > num_regions):
        fail(owner, "region_maps", f"values in [{flat.min()}, {flat.max()}]",
             f"must hold labels in [0, {num_regions}]")
    areas = np.stack([np.bincount(row, minlength=num_regions + 1) for row in flat])[:, 1:]
    largest = areas.max(axis=0, initial=0)
    return (areas / np.maximum(largest, 1)).astype("float32")


def _soft_matrix(owner, argument, labels):
    labels = np.asarray(labels, dtype="float64")
    if labels.ndim != 2 or not labels.shape[0]:
        fail(owner, argument, f"shape {labels.shape}", "must be a non-empty (N, C) matrix")
    if not np.all(np.isfinite(labels)) or labels.min() < 0 or labels.max() > 1:
        fail(owner, argument, f"values in [{labels.min()}, {labels.max()}]",
             "must hold finite soft labels in [0, 1]")
    return labels


def class_presence_counts(soft_labels, minimum=1):
    """Images in which each class is present (soft label > 0), at least ``minimum``.

    The per-class sample counts ``n_c`` that the class-balanced weighting
    ``(1 - beta) / (1 - beta ** n_c)`` takes (Cui, Jia, Lin, Song and Belongie,
    "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019, eq. 3 and 4);
    ``minimum=1`` keeps a class absent from the training set usable (its weight is then
    the largest, not a division by zero).

    Args:
        soft_labels: (N, C) targets in [0, 1].
        minimum: floor of every count (>= 0).

    Returns:
        int64 (C,).

    Example:
        >>> class_presence_counts([[1.0, 0.25, 0.0], [0.0, 1.0, 0.0]])
        array([1, 2, 1])
    """
    owner = "class_presence_counts"
    minimum = check_number(owner, "minimum", minimum, minimum=0, integer=True)
    labels = _soft_matrix(owner, "soft_labels", soft_labels)
    return np.maximum((labels > 0).sum(axis=0), minimum).astype("int64")


def none_class_weights(class_names, none_classes, multiplier):
    """Per-class loss weights: ``multiplier`` on the named "none" classes, 1 elsewhere.

    Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020" (2020), runs
    C08/C09: the classes that say "nothing of this category here" (``damage: none``...) are
    frequent and uninformative, so their loss terms are multiplied by 0.1 or 0.01. The
    result goes to a loss's ``class_weights``.

    Args:
        class_names: the C class names, in output order.
        none_classes: names (or integer indices, also as digit strings) of the none classes;
            empty for no weighting.
        multiplier: the factor on their terms (>= 0).

    Returns:
        A list of C floats, or None when ``none_classes`` is empty.

    Example:
        >>> none_class_weights(["flood", "none", "smoke"], ["none"], 0.1)
        [1.0, 0.1, 1.0]
    """
    owner = "none_class_weights"
    multiplier = check_number(owner, "multiplier", multiplier, minimum=0)
    if not none_classes:
        return None
    names = [str(name) for name in class_names]
    weights = [1.0] * len(names)
    for entry in none_classes:
        if str(entry) in names:
            weights[names.index(str(entry))] = float(multiplier)
        elif str(entry).isdigit() and int(entry) < len(names):
            weights[int(entry)] = float(multiplier)
        else:
            fail(owner, "none_classes", entry,
                 f"must hold class names or indices below {len(names)}")
    return weights


def constant_prior_scores(train_labels, num_samples):
    """Scores of the best constant predictor: every sample gets the training labels' mean.

    Ranking the classes by their mean training label is the best a model that ignores its
    input can do for label ranking, so these scores are the baseline (LRAP, mAP) a
    multi-label model must beat; their log-odds also make a good initial bias of the logits
    (Lin, Goyal, Girshick, He and Dollar, "Focal Loss for Dense Object Detection", ICCV 2017,
    section 4.1, prior initialisation).

    Args:
        train_labels: (N, C) training targets in [0, 1].
        num_samples: number of rows to return (e.g. the validation size).

    Returns:
        float32 (num_samples, C).

    Example:
        >>> constant_prior_scores([[1.0, 0.0], [0.5, 1.0]], num_samples=2)
        array([[0.75, 0.5 ],
               [0.75, 0.5 ]], dtype=float32)
    """
    owner = "constant_prior_scores"
    num_samples = check_number(owner, "num_samples", num_samples, minimum=1, integer=True)
    prior = _soft_matrix(owner, "train_labels", train_labels).mean(axis=0)
    return np.tile(prior, (num_samples, 1)).astype("float32")
