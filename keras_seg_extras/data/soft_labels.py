"""Soft multi-label targets from several annotators' votes (paper 000, section 2.1).

Each annotator picks classes for an image; per image the picks are counted and the count
vector is divided by its largest count, so the class most annotators agree on gets 1 and a
class picked by one annotator in four gets 0.25 (paper 000, Fig. 1: [flood ×4, smoke ×1,
none ×1] -> flood 1.0, smoke 0.25, none 0.25).
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
    """Turn annotators' votes into soft multi-label targets (paper 000, section 2.1).

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
        >>> images, y, names = soft_labels_from_csv("responses.csv", image_column="url")
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
