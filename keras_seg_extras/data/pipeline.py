"""``tf.data`` input pipelines for segmentation: decode, resize, augment in parallel, batch.

TensorFlow-only (``tf.data``, ``tf.numpy_function``); the models and losses it feeds stay
backend-agnostic.

Reproducibility: the order is a stateless shuffle of the indices seeded by ``(seed, epoch)``,
and the augmentation of each element is seeded by ``(seed, position of the element in the
stream)`` (:func:`keras_seg_extras.data.augment.element_seed`) before the parallel map, so two
runs with the same seed yield the same batches whatever the number of threads or the order
in which they finish; a repeated dataset augments an image differently in each epoch.
"""

import os

import numpy as np

from keras_seg_extras._common import OptionalModule, check_number, fail
from keras_seg_extras.data import file_check
from keras_seg_extras.data.augment import Augmenter, element_seed

tf = OptionalModule("tensorflow", "tf")

_OWNER = "kse.data.pipeline.segmentation_dataset"


def _is_paths(value):
    if isinstance(value, (str, bytes, os.PathLike)):
        fail(_OWNER, "images/masks", value, "must be a sequence of paths or an array, not one path")
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "USO"
    return len(value) > 0 and isinstance(value[0], (str, bytes, os.PathLike))


def _path(value):
    return value.decode() if isinstance(value, bytes) else os.fspath(value)


def _as_array(argument, value, rank):
    array = np.asarray(value)
    if array.ndim == rank - 1 and argument == "masks":
        array = array[..., None]
    if array.ndim != rank:
        fail(_OWNER, argument, array.shape,
             "must be an (N, H, W, C) array" if argument == "images"
             else "must be an (N, H, W) or (N, H, W, 1) array")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
            if array.size and (array.min() < 0 or array.max() > 255):
                fail(_OWNER, argument, (int(array.min()), int(array.max())),
                     "must hold values in 0..255 to be stored as uint8")
            array = array.astype(np.uint8)
        else:
            fail(_OWNER, argument, array.dtype, "must be uint8 (or integers in 0..255)")
    return array


def segmentation_dataset(images, masks, batch_size, image_size, augment=None, shuffle=True,
                         seed=0, repeat=False, channels=3, binarize_masks=True,
                         drop_remainder=False, num_parallel_calls=None, *,
                         check_files="structure", on_bad_file="raise", progress=None):
    """A batched ``tf.data.Dataset`` of (image, mask) pairs, optionally augmented.

    Steps: shuffle the indices (stateless, seeded by ``(seed, epoch)``) -> load each element
    (an in-memory array row, or ``tf.io.read_file`` + ``decode_image`` for PNG/JPEG paths)
    -> resize to ``image_size`` (image bilinear, mask nearest) -> ``mask > 0`` when
    ``binarize_masks`` -> augmentation with albumentations in ``tf.numpy_function``, in
    parallel, seeded per element -> static shapes -> batch -> prefetch.

    Args:
        images: uint8 array (N, H, W, C), or a sequence of N image file paths.
        masks: uint8 array (N, H, W) or (N, H, W, 1), or a sequence of N mask file paths
            (single-channel PNGs; 0/255 or 0/1 or label ids).
        batch_size: images per batch.
        image_size: side of the square output images.
        augment: None, an albumentations transform/``Compose`` (e.g.
            ``kse.data.augment.siim_preset(image_size)``) or an
            :class:`~keras_seg_extras.data.augment.Augmenter`.
        shuffle: shuffle the order (each epoch differently, reproducibly).
        seed: seed of the order and of the augmentations.
        repeat: repeat forever (for ``fit(..., steps_per_epoch=...)``). Use it for training:
            a finite dataset restarts at epoch 0 each time Keras iterates it, so every epoch
            would see the same order and the same augmentations.
        channels: image channels after decoding (paths only; arrays keep theirs).
        binarize_masks: map every non-zero mask value to 1; False keeps integer label ids.
        drop_remainder: drop the last incomplete batch.
        num_parallel_calls: parallelism of the load and augment maps (``tf.data.AUTOTUNE`` by
            default).
        check_files: for paths, how every file is checked before the first epoch (see
            :mod:`keras_seg_extras.data.file_check`): ``"structure"`` (default: each file
            read whole and its structure walked, in parallel, no pixel decoding),
            ``"decode"`` (also a full decode) or ``"off"``.
        on_bad_file: ``"raise"`` (default): one ``ValueError`` listing every bad file and
            why; ``"skip"``: leave out each pair with a bad image or mask, log the list
            (logger ``keras_seg_extras.data``) and report it in ``dataset.file_report``.
        progress: progress bar of the check (None: for 1,000 files or more).

    Returns:
        ``tf.data.Dataset`` of ``(image, mask)``: uint8 (B, S, S, C) and uint8 (B, S, S, 1),
        static spatial shapes. Its ``file_report`` attribute is a
        :class:`~keras_seg_extras.data.file_check.FileCheckReport` (None for arrays).

    Raises:
        ValueError: for mismatched lengths, bad shapes or dtypes, bad sizes, and bad files
            (before training). A file that breaks during an epoch (changed on disk after
            the check, to another size) stops the epoch with an error naming it.

    Example:
        >>> x, y = np.zeros((5, 16, 16, 3), "uint8"), np.zeros((5, 16, 16), "uint8")
        >>> ds = segmentation_dataset(x, y, batch_size=2, image_size=8, seed=1)  # augment=...
        >>> [tuple(mask.shape) for _, mask in ds]
        [(2, 8, 8, 1), (2, 8, 8, 1), (1, 8, 8, 1)]
    """
    batch_size = check_number(_OWNER, "batch_size", batch_size, minimum=1, integer=True)
    size = check_number(_OWNER, "image_size", image_size, minimum=1, integer=True)
    seed = check_number(_OWNER, "seed", seed, integer=True)
    channels = check_number(_OWNER, "channels", channels, minimum=1, maximum=4, integer=True)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else check_number(
        _OWNER, "num_parallel_calls", num_parallel_calls, minimum=1, integer=True)
    if augment is not None and not isinstance(augment, Augmenter):
        augment = Augmenter(augment)

    image_paths, mask_paths = _is_paths(images), _is_paths(masks)
    count = len(images)
    if len(masks) != count:
        fail(_OWNER, "masks", len(masks), f"must have one entry per image ({count})")
    if count == 0:
        fail(_OWNER, "images", count, "must hold at least one image")

    image_list = [_path(p) for p in images] if image_paths else None
    mask_list = [_path(p) for p in masks] if mask_paths else None
    sources = [("images", image_list, file_check.FileRole("image", channels)),
               ("masks", mask_list, file_check.FileRole(
                   "mask", 1, keep_values=not binarize_masks, png_only=True,
                   allow_16_bit=False))]
    report = None
    if image_paths or mask_paths:
        keep, report = file_check._screen_pairs(_OWNER, sources, check_files, on_bad_file,
                                               progress)
        if report.skipped:
            image_list, mask_list = ([p[i] for i in keep] if p is not None else None
                                     for p in (image_list, mask_list))
            images = image_list if image_paths else np.asarray(images)[keep]
            masks = mask_list if mask_paths else np.asarray(masks)[keep]
            count = len(keep)
    if image_paths:
        image_table = tf.constant(image_list)
        image_sizes = tf.constant(file_check._file_sizes(image_list))
    else:
        image_array = _as_array("images", images, 4)
        channels = image_array.shape[-1]
    if mask_paths:
        mask_table = tf.constant(mask_list)
        mask_sizes = tf.constant(file_check._file_sizes(mask_list))
    else:
        mask_array = _as_array("masks", masks, 4)
        if mask_array.shape[-1] != 1:
            fail(_OWNER, "masks", mask_array.shape, "must have one channel")
    if not image_paths and not mask_paths and image_array.shape[1:3] != mask_array.shape[1:3]:
        fail(_OWNER, "masks", mask_array.shape, f"must match the images' H, W "
             f"{image_array.shape[1:3]}")

    def load(index):
        if image_paths:
            image = tf.io.decode_image(
                file_check._read_checked(_OWNER, image_table, image_sizes, index),
                channels=channels, expand_animations=False)
        else:
            image = tf.numpy_function(lambda i: image_array[i], [index], tf.uint8)
            image.set_shape([None, None, channels])
        if mask_paths:
            mask = tf.io.decode_image(
                file_check._read_checked(_OWNER, mask_table, mask_sizes, index),
                channels=1, expand_animations=False)
        else:
            mask = tf.numpy_function(lambda i: mask_array[i], [index], tf.uint8)
            mask.set_shape([None, None, 1])
        image = tf.cond(
            tf.reduce_all(tf.shape(image)[:2] == size), lambda: image,
            lambda: tf.cast(tf.clip_by_value(tf.round(
                tf.image.resize(image, [size, size], method="bilinear")), 0, 255), tf.uint8))
        mask = tf.image.resize(mask, [size, size], method="nearest")
        if binarize_masks:
            mask = tf.cast(mask > 0, tf.uint8)
        image.set_shape([size, size, channels])
        mask.set_shape([size, size, 1])
        return image, mask

    def augment_pair(position, pair):
        image, mask = pair

        def run(position_value, image_value, mask_value):
            out_image, out_mask = augment(image_value, mask_value,
                                          element_seed(seed, position_value))
            if out_image.shape != (size, size, channels) or out_mask.shape != (size, size, 1):
                raise ValueError(f"{_OWNER}: `augment` must keep the size {size}x{size}; "
                                 f"received image {out_image.shape}, mask {out_mask.shape}.")
            return (np.ascontiguousarray(out_image, dtype=np.uint8),
                    np.ascontiguousarray(out_mask, dtype=np.uint8))

        image, mask = tf.numpy_function(run, [position, image, mask], [tf.uint8, tf.uint8])
        image.set_shape([size, size, channels])
        mask.set_shape([size, size, 1])
        return image, mask

    def order(epoch):
        indices = tf.range(count, dtype=tf.int64)
        if shuffle:
            indices = tf.random.experimental.stateless_shuffle(
                indices, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(indices)

    epochs = tf.data.Dataset.range(np.iinfo(np.int64).max if repeat else 1)
    dataset = epochs.flat_map(order)
    if not repeat:
        # flat_map hides the length; declaring it lets Keras and ProgressiveTrainer count
        # the batches of an epoch (and avoids Keras's "ran out of data" warning).
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    # A file changed on disk after the check stops the epoch with its name (read_checked).
    dataset = dataset.enumerate().map(lambda position, index: (position, load(index)),
                                      num_parallel_calls=parallel, deterministic=True)
    if augment is not None:
        dataset = dataset.map(augment_pair, num_parallel_calls=parallel, deterministic=True)
    else:
        dataset = dataset.map(lambda position, pair: pair)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    dataset.file_report = report
    return dataset


def read_images(paths, image_size, root=None):
    """Read image files into one uint8 RGB array, each resized to ``image_size`` squared.

    For data sets small enough to hold in memory as arrays (a classification CSV's images,
    a demo): OpenCV decodes each file (PNG, JPEG, BMP...), converts BGR to RGB and resizes
    with area interpolation (the downscaling that does not alias).

    Args:
        paths: image file paths; relative ones are read under ``root``.
        image_size: side of the square outputs (>= 1).
        root: folder of the relative paths (None: the working directory).

    Returns:
        uint8 (N, image_size, image_size, 3).

    Raises:
        ValueError: naming the first file that is missing or cannot be decoded.

    Example:
        >>> import os, tempfile, cv2
        >>> root = tempfile.mkdtemp()
        >>> red = np.full((8, 6, 3), (0, 0, 255), np.uint8)   # OpenCV writes BGR
        >>> _ = cv2.imwrite(os.path.join(root, "red.png"), red)
        >>> pixels = read_images(["red.png"], 4, root=root)
        >>> pixels.shape, pixels[0, 0, 0].tolist()
        ((1, 4, 4, 3), [255, 0, 0])
    """
    import cv2

    owner = "read_images"
    size = check_number(owner, "image_size", image_size, minimum=1, integer=True)
    if isinstance(paths, (str, bytes, os.PathLike)) or not len(paths):
        fail(owner, "paths", paths, "must be a non-empty sequence of file paths")
    pixels = []
    for path in paths:
        path = _path(path)
        full = path if root is None or os.path.isabs(path) else os.path.join(_path(root), path)
        array = cv2.imread(full, cv2.IMREAD_COLOR)
        if array is None:
            fail(owner, "paths", full, "must name readable image files")
        array = cv2.resize(array, (size, size), interpolation=cv2.INTER_AREA)
        pixels.append(cv2.cvtColor(array, cv2.COLOR_BGR2RGB))
    return np.stack(pixels)
