"""T1 brain MRI (Colin27) with the 116-region AAL atlas (mricron-data, BSD-3-Clause).

One real brain, 181x217x181 voxels of 1 mm, with an integer region map on the same grid
(0 = background, 1..116 = AAL regions), shipped as ``brain.npz`` next to this module (built by
``tools/build_sample_data.py``; provenance in ``PROVENANCE.md``). Good for multi-class
segmentation with many, unevenly sized classes.

Slices: the axial slices (constant z) that contain at least one atlas label, 146 of 181, in
order from inferior to superior. Each is rotated so that anterior is at the top and the
patient's left on the image's left (neurological convention), i.e. rows run along -y and
columns along +x; zero-padded from 217x181 to 217x217 (18 columns each side) and resized to
``image_size`` (bilinear for the image, nearest neighbour for the labels, both with half-pixel
centres and no antialiasing).

Split by slab: the 146 slices are cut into slabs of 10 consecutive slices (the last one has 6)
and whole slabs go to validation, spread evenly through the brain (for the default 0.2: slabs
2, 7 and 12, i.e. 30 slices). Slices 1 mm apart are nearly identical, so a random split would
put near-copies of every validation slice into training and report an optimistic score;
slabs keep almost all of validation away from training, and spreading them covers the
cerebellum, the basal ganglia and the cortex alike. Only the slices at the edges of a slab
have a neighbour in the other part.
"""

import functools
import os

import numpy as np

from keras_seg_extras._common import check_number, fail

_HERE = os.path.dirname(os.path.abspath(__file__))
_NUM_REGIONS = 116
#: Consecutive axial slices per slab in the train/validation split.
_SLAB_THICKNESS = 10


@functools.lru_cache(maxsize=1)
def _arrays():
    with np.load(os.path.join(_HERE, "brain.npz")) as data:
        image, labels = data["image"], data["labels"]
    image.setflags(write=False)
    labels.setflags(write=False)
    return image, labels


@functools.lru_cache(maxsize=1)
def _region_table():
    with open(os.path.join(_HERE, "aal_regions.txt"), encoding="utf-8") as handle:
        rows = [line.split() for line in handle if line.strip()]
    return tuple(row[1] for row in rows)


def load_volume():
    """The whole volume.

    Returns:
        ``(image, labels)``: two (181, 217, 181) uint8 arrays in NIfTI voxel order (x: left to
        right, y: posterior to anterior, z: inferior to superior), labels in 0..116.

    Example:
        >>> from keras_seg_extras.datasets import load_brain_volume
        >>> image, labels = load_brain_volume()
        >>> image.shape, int(labels.max())
        ((181, 217, 181), 116)
    """
    image, labels = _arrays()
    return image.copy(), labels.copy()


def region_names(num_classes=117):
    """Names of the classes.

    Args:
        num_classes: 117 (default) for the AAL regions; a smaller number gives the names of the
            classes of :func:`fold_regions`, each the members' names joined with ``"+"``.

    Returns:
        A list of ``num_classes`` strings; index 0 is ``"background"``, index r the AAL short
        name of region r (e.g. 1 ``"Precentral_L"``, 2 ``"Precentral_R"``).

    Example:
        >>> from keras_seg_extras.datasets import brain_region_names
        >>> brain_region_names()[:3]
        ['background', 'Precentral_L', 'Precentral_R']
        >>> len(brain_region_names(30))
        30
    """
    num_classes = _check_num_classes("kse.datasets.brain.region_names", num_classes)
    names = ("background",) + _region_table()
    if num_classes == _NUM_REGIONS + 1:
        return list(names)
    table = _fold_table(num_classes)
    return ["background"] + ["+".join(names[r] for r in range(1, _NUM_REGIONS + 1) if table[r] == k)
                             for k in range(1, num_classes)]


def _check_num_classes(owner, num_classes):
    return check_number(owner, "num_classes", num_classes, minimum=2, maximum=_NUM_REGIONS + 1,
                        integer=True)


def _fold_table(num_classes):
    regions = np.arange(_NUM_REGIONS + 1)
    table = 1 + ((regions - 1) * (num_classes - 1)) // _NUM_REGIONS
    table[0] = 0
    return table.astype("uint8")


def fold_regions(labels, num_classes):
    """Group the 116 AAL regions into ``num_classes - 1`` classes of consecutive regions.

    Background stays 0; region r in 1..116 becomes ``1 + ((r - 1) * (num_classes - 1)) // 116``.
    AAL numbers the left and right halves of a structure consecutively (odd = left, even =
    right), so the pair (2i - 1, 2i) shares a class unless a class boundary falls between the
    two; with ``num_classes - 1`` dividing 58 (e.g. 59, 30, 3, 2) every pair stays together.
    ``num_classes=117`` is the identity.

    Args:
        labels: integer array of any shape with values in 0..116.
        num_classes: number of classes after folding, 2..117 (background included).

    Returns:
        uint8 array of the shape of ``labels`` with values in 0..num_classes-1.

    Raises:
        ValueError: for ``num_classes`` outside 2..117, non-integer labels or labels outside
            0..116.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.datasets import fold_brain_regions
        >>> fold_brain_regions(np.array([0, 1, 2, 116]), 3)
        array([0, 1, 1, 2], dtype=uint8)
    """
    owner = "kse.datasets.brain.fold_regions"
    num_classes = _check_num_classes(owner, num_classes)
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        fail(owner, "labels", labels.dtype, "must hold integers (AAL region ids)")
    if labels.size and (labels.min() < 0 or labels.max() > _NUM_REGIONS):
        bad = labels[(labels < 0) | (labels > _NUM_REGIONS)]
        fail(owner, "labels", int(bad[0]), "must lie in 0..116")
    return _fold_table(num_classes)[labels]


def _interpolation_matrix(size_in, size_out):
    """(size_out, size_in) bilinear weights, half-pixel centres, edges clamped."""
    source = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    source = np.clip(source, 0, size_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weight = source - low
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), low] += 1 - weight
    matrix[np.arange(size_out), high] += weight
    return matrix


def _nearest_index(size_in, size_out):
    return np.minimum(np.floor((np.arange(size_out) + 0.5) * (size_in / size_out)).astype(int),
                      size_in - 1)


def _resize_slices(images, labels, image_size):
    """Resize (N, H, W) square slices: images bilinear (rounded uint8), labels nearest."""
    size_in = images.shape[1]
    if size_in == image_size:
        return images.copy(), labels.copy()
    matrix = _interpolation_matrix(size_in, image_size)
    resized = matrix @ images.astype("float64") @ matrix.T
    resized = np.clip(np.rint(resized), 0, 255).astype("uint8")
    index = _nearest_index(size_in, image_size)
    return resized, labels[:, index][:, :, index]


def labelled_slices():
    """The z indices of the axial slices that hold at least one atlas label (146 of 181).

    Example:
        >>> from keras_seg_extras.datasets import brain_labelled_slices
        >>> len(brain_labelled_slices())
        146
    """
    _, labels = _arrays()
    return np.flatnonzero(labels.any(axis=(0, 1)))


def slab_split(validation_fraction=0.2):
    """Which labelled axial slices go to training and which to validation.

    The labelled slices (in z order) are cut into slabs of 10 consecutive slices; the number of
    validation slabs is ``round(validation_fraction * number_of_slabs)`` (at least one when the
    fraction is > 0), slab ``floor((j + 0.5) * number_of_slabs / k)`` for j = 0..k-1.

    Returns:
        ``(train_z, val_z)``: sorted z indices into the volume.

    Example:
        >>> from keras_seg_extras.datasets import brain_slab_split
        >>> train_z, val_z = brain_slab_split(0.2)
        >>> len(train_z), len(val_z), val_z[:3].tolist()
        (116, 30, [30, 31, 32])
    """
    owner = "kse.datasets.brain.slab_split"
    validation_fraction = check_number(owner, "validation_fraction", validation_fraction,
                                       minimum=0.0, maximum=1.0, max_inclusive=False)
    slices = labelled_slices()
    num_slabs = -(-len(slices) // _SLAB_THICKNESS)
    count = int(round(validation_fraction * num_slabs))
    if validation_fraction > 0:
        count = min(max(count, 1), num_slabs - 1)
    chosen = [int(np.floor((j + 0.5) * num_slabs / count)) for j in range(count)]
    slab_of = np.arange(len(slices)) // _SLAB_THICKNESS
    is_val = np.isin(slab_of, chosen)
    return slices[~is_val], slices[is_val]


def _slices(z, image_size, num_classes):
    image, labels = _arrays()
    x = np.rot90(image[:, :, z].transpose(2, 0, 1), axes=(1, 2))
    y = np.rot90(labels[:, :, z].transpose(2, 0, 1), axes=(1, 2))
    side = max(x.shape[1:])
    pad_rows, pad_cols = side - x.shape[1], side - x.shape[2]
    padding = ((0, 0), (pad_rows // 2, pad_rows - pad_rows // 2),
               (pad_cols // 2, pad_cols - pad_cols // 2))
    x, y = np.pad(x, padding), np.pad(y, padding)
    x, y = _resize_slices(x, y, image_size)
    if num_classes != _NUM_REGIONS + 1:
        y = fold_regions(y, num_classes)
    return np.ascontiguousarray(x[..., None]), np.ascontiguousarray(y[..., None])


def load_data(image_size=128, num_classes=117, validation_fraction=0.2):
    """Axial MRI slices with integer AAL region maps, split by slab.

    Args:
        image_size: side of the square output slices (>= 8); 217 keeps the native resolution.
        num_classes: 117 for the AAL regions with background; fewer folds neighbouring regions
            together with :func:`fold_regions` (2..117).
        validation_fraction: share of the slabs (approximately of the slices) used for
            validation, 0 <= f < 1; see :func:`slab_split`.

    Returns:
        ``((x_train, y_train), (x_val, y_val))``: x uint8 (N, S, S, 1), y uint8 (N, S, S, 1)
        with values in 0..num_classes-1 (0 = background), slices in z order. With the defaults
        116 training and 30 validation slices.

    Raises:
        ValueError: for a bad ``image_size``, ``num_classes`` or ``validation_fraction``.

    Example:
        >>> from keras_seg_extras.datasets import load_brain
        >>> (x_train, y_train), (x_val, y_val) = load_brain(64, num_classes=30)
        >>> x_train.shape, int(y_train.max()) <= 29
        ((116, 64, 64, 1), True)
    """
    owner = "kse.datasets.brain.load_data"
    image_size = check_number(owner, "image_size", image_size, minimum=8, integer=True)
    num_classes = _check_num_classes(owner, num_classes)
    train_z, val_z = slab_split(validation_fraction)
    return _slices(train_z, image_size, num_classes), _slices(val_z, image_size, num_classes)
