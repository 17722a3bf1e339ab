"""The Cityscapes file layout: pairs of camera images and train-id label maps.

Cordts, Omran, Ramos, Rehfeld, Enzweiler, Benenson, Franke, Roth and Schiele, "The
Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016: images under
``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``, fine labels under
``gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png`` (19 evaluated classes 0..18, 255
ignored; cityscapesScripts' ``createTrainIdLabelImgs`` writes them). The paths feed
``kse.data.class_sampled_dataset``, ``kse.data.indexed_loader`` and
``kse.data.class_pixel_counts`` directly.
"""

import glob
import os

from keras_seg_extras._common import check_number, fail


def cityscapes_files(root, split, limit=None):
    """Sorted image paths of one Cityscapes split and the train-id label path of each.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        limit: optional number of pairs to keep (the first in sorted order).

    Returns:
        ``(images, labels)``: two lists of paths, aligned.

    Raises:
        ValueError: when the split has no image, or an image has no label file (naming it).

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> for folder, suffix in (("leftImg8bit", "leftImg8bit"),
        ...                        ("gtFine", "gtFine_labelTrainIds")):
        ...     city = os.path.join(root, folder, "val", "bonn")
        ...     os.makedirs(city)
        ...     open(os.path.join(city, f"bonn_0_1_{suffix}.png"), "w").close()
        >>> images, labels = cityscapes_files(root, "val")
        >>> [os.path.relpath(path, root) for path in images + labels]  # doctest: +NORMALIZE_WHITESPACE
        ['leftImg8bit/val/bonn/bonn_0_1_leftImg8bit.png',
         'gtFine/val/bonn/bonn_0_1_gtFine_labelTrainIds.png']
    """
    owner = "cityscapes_files"
    if limit is not None:
        limit = check_number(owner, "limit", limit, minimum=1, integer=True)
    pattern = os.path.join(os.fspath(root), "leftImg8bit", str(split), "*", "*_leftImg8bit.png")
    images = sorted(glob.glob(pattern))
    if not images:
        fail(owner, "root", os.fspath(root), f"must hold images matching {pattern}")
    images = images[:limit]
    labels = []
    for path in images:
        city = os.path.basename(os.path.dirname(path))
        stem = os.path.basename(path)[: -len("_leftImg8bit.png")]
        label = os.path.join(os.fspath(root), "gtFine", str(split), city,
                             f"{stem}_gtFine_labelTrainIds.png")
        if not os.path.isfile(label):
            fail(owner, "root", os.fspath(root), f"must hold the label {label} of {path} "
                 "(make trainIds with cityscapesScripts' createTrainIdLabelImgs)")
        labels.append(label)
    return images, labels
