"""Class-sampled tf.data pipeline for Stochastic TCE.

Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in Semantic
Segmentation", CVPR Workshops (2021), Algorithm 1, lines 1, 3 and 4.

TensorFlow-only (tf.data). Each minibatch is drawn by first sampling a class ``c`` from a
categorical distribution whose weights live in a ``tf.Variable``, then ``batch_size`` images
among those that contain ``c`` (the per-class sets overlap: an image belongs to every class
it shows). ``kse.callbacks.StochasticTCESampler`` updates the variable after each batch; the
next draws follow the new weights without rebuilding the pipeline.

How the class reaches the callback: every batch carries the class it was drawn for, as an
extra entry of the input dict (``{image_key: images, class_key: class_ids}``), and the
sampler callback strips it inside the train step, before the model sees the batch. The
class attributed to a loss is therefore exactly the class of the batch just trained, however
far decoding and prefetching run ahead. What prefetching does delay is the *use* of new
weights: a batch drawn ahead of time was drawn with the weights current at its draw, so an
update reaches the draws after the batches already in the pipeline (at most the parallel
map's and the prefetch buffer's depth, a few batches). Set ``prefetch`` to a small integer
to bound that lag.
"""

import hashlib
import os

import numpy as np

from keras_seg_extras._common import OptionalModule, check_number, check_optional_int, fail
from keras_seg_extras.data import file_check

tf = OptionalModule("tensorflow", "tf")
_AUTOTUNE = -1  # tf.data.AUTOTUNE, spelled out: a default value must not import TensorFlow

_OWNER = "class_sampled_dataset"
_CLASS_KEY = "tce_class"
_LABEL_ROLE = file_check.FileRole("label", 1, keep_values=True, png_only=True, decoder="png")


def _image_role(image_channels):
    return file_check.FileRole("image", image_channels or 0)


def _is_paths(value):
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, (str, bytes, os.PathLike)) for v in value))


def _as_source(owner, argument, value):
    """Arrays (N, H, W[, C]) stay arrays; sequences of paths become a list of str."""
    if _is_paths(value):
        return [os.fspath(v) if not isinstance(v, bytes) else v.decode() for v in value]
    array = np.asarray(value)
    if array.ndim not in (3, 4) or array.shape[0] == 0:
        fail(owner, argument, f"array of shape {array.shape}",
             "must be a non-empty array (N, H, W[, C]) or a list of file paths")
    return array


def _fingerprint(labels, num_classes, ignore_index):
    digest = hashlib.sha1(f"{num_classes}|{ignore_index}|".encode())
    if isinstance(labels, list):
        for path in labels:
            digest.update(path.encode())
            digest.update(str(os.path.getsize(path) if os.path.exists(path) else -1).encode())
    else:
        digest.update(str(labels.shape).encode())
        digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def _decode_label_file(path):
    """Decode an 8- or 16-bit label PNG to int32 (H, W, 1) without rescaling values."""
    return _decode_label_bytes(tf.io.read_file(path))


def _decode_label_bytes(data):
    # Byte 24 of a PNG (IHDR) is the bit depth; decoding an 8-bit file as uint16 would
    # multiply every value by 257.
    depth = tf.io.decode_raw(tf.strings.substr(data, 24, 1), tf.uint8)[0]
    return tf.cond(
        depth == 16,
        lambda: tf.cast(tf.io.decode_png(data, channels=1, dtype=tf.uint16), tf.int32),
        lambda: tf.cast(tf.io.decode_png(data, channels=1, dtype=tf.uint8), tf.int32))


def _pixel_counts_of(owner, label_map, num_classes, ignore_index, where):
    """Pixels of each class in one label map; values outside [0, K) other than ignore fail."""
    values, counts = np.unique(np.asarray(label_map), return_counts=True)
    bad = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    if np.any(bad):
        raise ValueError(f"{owner}: labels of {where} hold values {values[bad][:10].tolist()} "
                         f"outside [0, {num_classes})"
                         + ("" if ignore_index is None else f" and not ignore_index={ignore_index}")
                         + ".")
    row = np.zeros(num_classes, "int64")
    good = (values >= 0) & (values < num_classes)
    row[values[good]] = counts[good]
    return row


def _label_rows(owner, labels, num_classes, ignore_index, check_files):
    """Per-class pixel counts of each label map (arrays, or PNG files decoded in order)."""
    if not isinstance(labels, list):
        return [_pixel_counts_of(owner, labels[n], num_classes, ignore_index, f"image {n}")
                for n in range(labels.shape[0])]
    file_check._screen_pairs(owner, [("labels", labels, _LABEL_ROLE)], check_files, "raise",
                            skippable=False)
    decoded = iter(tf.data.Dataset.from_tensor_slices(labels).map(
        _decode_label_file, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
    rows = []
    for n in range(len(labels)):
        try:
            label = next(decoded)
        except tf.errors.OpError:  # in order: element n failed
            raise ValueError(file_check._explain_failure(
                owner, n, [("labels", labels, _LABEL_ROLE)])) from None
        rows.append(_pixel_counts_of(owner, label.numpy(), num_classes, ignore_index, labels[n]))
    return rows


def index_class_presence(labels, num_classes, ignore_index=None, cache_path=None, *,
                         check_files="structure"):
    """Which classes each label map contains: a boolean (N, num_classes) matrix.

    Args:
        labels: integer label maps (N, H, W[, 1]) or a list of label PNG paths (e.g.
            Cityscapes ``*_gtFine_labelTrainIds.png``).
        num_classes: number of classes K.
        ignore_index: label value that marks no class (e.g. 255), or None.
        cache_path: optional ``.npz`` file. When it exists and was made from the same labels
            (a fingerprint of the paths and file sizes, or of the array bytes), the index is
            read from it; otherwise it is computed and written there.
        check_files: how label files are checked before decoding (``"structure"``,
            ``"decode"`` or ``"off"``; see :mod:`keras_seg_extras.data.file_check`).

    Returns:
        ``presence[n, c]`` True where label map n contains a pixel of class c.

    Raises:
        ValueError: for label values outside [0, K) that are not ``ignore_index``, naming
            the image; listing every unreadable label file and why.

    Example:
        >>> labels = np.zeros((3, 4, 4), "uint8")
        >>> labels[0, :2], labels[2, 0, 0] = 1, 255
        >>> index_class_presence(labels, num_classes=2, ignore_index=255).tolist()
        [[True, True], [True, False], [True, False]]
    """
    owner = "index_class_presence"
    num_classes = check_number(owner, "num_classes", num_classes, minimum=1, integer=True)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    labels = _as_source(owner, "labels", labels)
    fingerprint = _fingerprint(labels, num_classes, ignore_index)
    if cache_path is not None and os.path.exists(cache_path):
        with np.load(cache_path) as cached:
            if str(cached["fingerprint"]) == fingerprint:
                return cached["presence"].astype(bool)
    rows = _label_rows(owner, labels, num_classes, ignore_index, check_files)
    presence = np.stack(rows) > 0
    if cache_path is not None:
        folder = os.path.dirname(os.path.abspath(cache_path))
        os.makedirs(folder, exist_ok=True)
        temporary = f"{cache_path}.tmp.npz"
        np.savez(temporary, presence=presence, fingerprint=np.array(fingerprint))
        os.replace(temporary, cache_path)
    return presence


def class_pixel_counts(labels, num_classes, ignore_index=None, *, check_files="structure"):
    """Pixels of each class over all label maps (``ignore_index`` pixels not counted).

    ``counts[c] = sum_n #{pixels of map n with label c}``; divided by their sum they are the
    pixel frequencies behind inverse-frequency class weights (e.g. the focal-loss baseline
    of Szabo, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in
    Semantic Segmentation", CVPR Workshops 2021, table 3), and their argmax is the majority
    class of a constant baseline. Same inputs and checks as :func:`index_class_presence`.

    Args:
        labels: integer label maps (N, H, W[, 1]) or a list of label PNG paths.
        num_classes: number of classes K.
        ignore_index: label value that marks no class (e.g. 255), or None.
        check_files: how label files are checked before decoding (``"structure"``,
            ``"decode"`` or ``"off"``).

    Returns:
        int64 (K,).

    Raises:
        ValueError: for label values outside [0, K) that are not ``ignore_index``, naming
            the image; listing every unreadable label file and why.

    Example:
        >>> labels = np.array([[[0, 1], [1, 255]], [[2, 2], [2, 1]]])
        >>> class_pixel_counts(labels, num_classes=3, ignore_index=255)
        array([1, 3, 3])
    """
    owner = "class_pixel_counts"
    num_classes = check_number(owner, "num_classes", num_classes, minimum=1, integer=True)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    labels = _as_source(owner, "labels", labels)
    return np.sum(_label_rows(owner, labels, num_classes, ignore_index, check_files), axis=0)


def majority_class_confusion(train_counts, truth_counts):
    """Confusion matrix of the constant model that predicts the most frequent training class.

    Every counted pixel is predicted as ``m = argmax(train_counts)``, so row ``c`` (truth)
    holds ``truth_counts[c]`` in column ``m`` and zeros elsewhere: its mIoU is the floor any
    trained segmentation model must clear (``kse.metrics.fairness_report`` and
    ``kse.metrics.class_iou_from_confusion`` read it like any other matrix).

    Args:
        train_counts: (K,) training pixels per class (:func:`class_pixel_counts`).
        truth_counts: (K,) pixels per class of the labels being scored.

    Returns:
        int64 (K, K), rows truth, columns prediction.

    Example:
        >>> majority_class_confusion([5, 9, 1], [2, 3, 4])
        array([[0, 2, 0],
               [0, 3, 0],
               [0, 4, 0]])
    """
    owner = "majority_class_confusion"
    train, truth = np.asarray(train_counts), np.asarray(truth_counts)
    for argument, counts in (("train_counts", train), ("truth_counts", truth)):
        if (counts.ndim != 1 or not counts.size or not np.issubdtype(counts.dtype, np.integer)
                or counts.min() < 0):
            fail(owner, argument, counts.tolist() if counts.ndim == 1 else f"shape {counts.shape}",
                 "must be a non-empty vector of pixel counts >= 0")
    if train.shape != truth.shape:
        fail(owner, "truth_counts", f"{truth.size} classes",
             f"must match the {train.size} classes of train_counts")
    matrix = np.zeros((train.size, train.size), "int64")
    matrix[:, int(np.argmax(train))] = truth
    return matrix


def indexed_loader(images, labels, augment=None, image_channels=None):
    """A function ``index -> (image float32 (H, W, C) in [0, 1], label int32 (H, W, 1))``.

    The decoding and augmentation shared by the class-sampled pipeline and any plain one
    (the benchmark uses it for its shuffled baseline). uint8 images are divided by 255;
    float images pass unchanged. ``augment(image, label)`` must be TensorFlow ops returning
    the pair; it runs inside ``Dataset.map`` in parallel.

    Args:
        images: uint8 or float arrays (N, H, W[, C]), or a list of image file paths.
        labels: integer label maps (N, H, W[, 1]), or a list of label PNG paths.
        augment: optional TensorFlow function ``(image, label) -> (image, label)``.
        image_channels: channels to decode image files to (None: as stored).

    Returns:
        A TensorFlow function of a scalar int64 index.

    Example:
        >>> load = indexed_loader(np.full((2, 4, 4, 1), 255, "uint8"), np.ones((2, 4, 4), "uint8"))
        >>> image, label = load(1)
        >>> tuple(image.shape), float(image[0, 0, 0]), label.dtype.name
        ((4, 4, 1), 1.0, 'int32')
    """
    owner = "indexed_loader"
    images = _as_source(owner, "images", images)
    labels = _as_source(owner, "labels", labels)
    if len(images) != len(labels):
        fail(owner, "labels", f"{len(labels)} label maps", f"must match the {len(images)} images")
    if augment is not None and not callable(augment):
        fail(owner, "augment", augment, "must be a function (image, label) -> (image, label)")
    decode = _decoder(owner, images, labels, image_channels)

    def load(index):
        image, label = decode(index)
        if augment is not None:
            image, label = augment(image, label)
        return image, label

    return load


def resize_and_flip(size, flip=True):
    """An ``augment(image, label)`` for :func:`indexed_loader`: resize, then a random mirror.

    The image is resized bilinearly and the label by nearest neighbour (label ids stay
    ids) to ``size = (height, width)``; with ``flip`` both are mirrored left-right together
    with probability 1/2. Static output shapes, as ``fit`` and XLA want them. TensorFlow ops
    (it runs inside ``Dataset.map``).

    Args:
        size: ``(height, width)`` of the outputs.
        flip: apply the random horizontal mirror (training) or not (evaluation).

    Returns:
        A function ``(image (H, W, C), label (H, W, 1)) -> (image (h, w, C), label (h, w, 1))``.

    Example:
        >>> augment = resize_and_flip((4, 6), flip=False)
        >>> image, label = augment(tf.zeros((8, 12, 3)), tf.ones((8, 12, 1), tf.int32))
        >>> image.shape, label.shape, int(tf.reduce_min(label))
        (TensorShape([4, 6, 3]), TensorShape([4, 6, 1]), 1)
    """
    owner = "resize_and_flip"
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                   for v in size)):
        fail(owner, "size", size, "must be (height, width), two positive integers")
    height, width = int(size[0]), int(size[1])
    if not isinstance(flip, bool):
        fail(owner, "flip", flip, "must be True or False")

    def augment(image, label):
        image = tf.image.resize(image, (height, width), method="bilinear")
        label = tf.image.resize(label, (height, width), method="nearest")
        if flip:
            mirror = tf.random.uniform([]) < 0.5
            image = tf.cond(mirror, lambda: tf.image.flip_left_right(image), lambda: image)
            label = tf.cond(mirror, lambda: tf.image.flip_left_right(label), lambda: label)
        return (tf.ensure_shape(image, (height, width, None)),
                tf.ensure_shape(label, (height, width, 1)))

    return augment


def indexed_dataset(images, labels, batch_size, *, augment=None, shuffle=True, repeat=True,
                    seed=None, image_channels=None, num_parallel_calls=_AUTOTUNE):
    """The plain counterpart of :func:`class_sampled_dataset`: every image, shuffled, batched.

    Indices ``0..N-1`` are shuffled (anew each pass, seeded) when ``shuffle``, repeated
    forever when ``repeat`` (then batches are full: the remainder is dropped), loaded and
    augmented in parallel by :func:`indexed_loader`, batched and prefetched. The baseline
    the class sampler is compared to, and the evaluation pipeline of the same data
    (``shuffle=False, repeat=False``: every image once, in order, last batch kept).

    Args:
        images, labels: as for :func:`indexed_loader` (arrays or file paths).
        batch_size: images per batch.
        augment: optional ``augment(image, label)`` TensorFlow function (e.g.
            :func:`resize_and_flip`).
        shuffle: shuffle the order each pass.
        repeat: repeat forever (for ``fit(..., steps_per_epoch=...)``).
        seed: shuffle seed (None: unseeded).
        image_channels: channels to decode image files to (None: as stored).
        num_parallel_calls: parallelism of the load map.

    Returns:
        ``tf.data.Dataset`` of ``(image float32 (B, H, W, C), label int32 (B, H, W, 1))``.

    Example:
        >>> x, y = np.zeros((5, 4, 4, 1), "uint8"), np.ones((5, 4, 4), "uint8")
        >>> batches = indexed_dataset(x, y, 2, shuffle=False, repeat=False)
        >>> [tuple(label.shape) for _, label in batches]
        [(2, 4, 4, 1), (2, 4, 4, 1), (1, 4, 4, 1)]
    """
    owner = "indexed_dataset"
    batch_size = check_number(owner, "batch_size", batch_size, minimum=1, integer=True)
    for argument, value in (("shuffle", shuffle), ("repeat", repeat)):
        if not isinstance(value, bool):
            fail(owner, argument, value, "must be True or False")
    load = indexed_loader(images, labels, augment=augment, image_channels=image_channels)
    count = len(_as_source(owner, "images", images))
    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    return (indices.map(load, num_parallel_calls=num_parallel_calls)
            .batch(batch_size, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE))


def _decoder(owner, images, labels, image_channels):
    """``index -> (image, label)`` decoded, without augmentation."""
    if isinstance(images, list):
        image_paths = tf.constant(images)
        image_sizes = tf.constant(file_check._file_sizes(images))

        def load_image(index):
            data = file_check._read_checked(owner, image_paths, image_sizes, index)
            image = tf.io.decode_image(data, channels=image_channels or 0,
                                       expand_animations=False)
            return tf.cast(image, tf.float32) / 255.0
    else:
        image_array = images if images.ndim == 4 else images[..., None]
        scale = 255.0 if image_array.dtype == np.uint8 else 1.0
        image_tensor = tf.constant(image_array)

        def load_image(index):
            return tf.cast(tf.gather(image_tensor, index), tf.float32) / scale

    if isinstance(labels, list):
        label_paths = tf.constant(labels)
        label_sizes = tf.constant(file_check._file_sizes(labels))

        def load_label(index):
            return _decode_label_bytes(
                file_check._read_checked(owner, label_paths, label_sizes, index))
    else:
        label_array = labels if labels.ndim == 4 else labels[..., None]
        label_tensor = tf.constant(label_array.astype(np.int32))

        def load_label(index):
            return tf.gather(label_tensor, index)

    return lambda index: (load_image(index), load_label(index))


def class_sampled_dataset(images, labels, num_classes, batch_size, *, weights=None,
                          ignore_index=None, augment=None, image_channels=None,
                          cache_path=None, seed=None, image_key="image",
                          num_parallel_calls=_AUTOTUNE, prefetch=_AUTOTUNE,
                          check_files="structure", on_bad_file="raise", progress=None):
    """An endless tf.data pipeline of class-sampled minibatches.

    Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in
    Semantic Segmentation", CVPR Workshops (2021), Algorithm 1, lines 1, 3 and 4.

    Per batch: ``c ~ Categorical(weights)`` over the classes that occur in at least one image
    (a class without images is never drawn, whatever its weight; if every positive weight
    sits on such classes, the draw falls back to uniform over the occurring ones), then
    ``batch_size`` images among those containing ``c`` (without replacement when the class
    has at least ``batch_size`` images, with replacement otherwise). The presence index is
    built once (``index_class_presence``, cached in ``cache_path``).

    Elements: ``({image_key: images (B, H, W, C) float32, "tce_class": (B,) int32},
    labels (B, H, W, 1) int32)``; every entry of ``tce_class`` is the batch's class ``c``. A
    Keras model whose input is named ``image_key`` accepts the dict directly (Keras warns that
    the extra key is ignored); with ``kse.callbacks.StochasticTCESampler`` among the fit
    callbacks, the sampler removes the class from the batch and uses it. The dataset never
    ends: pass ``steps_per_epoch`` to ``fit``.

    Args:
        images: images (N, H, W[, C]) (uint8 scaled by 1/255, or float) or a list of paths
            (PNG/JPEG, decoded by ``tf.io.decode_image``).
        labels: integer maps (N, H, W[, 1]) or a list of label PNG paths (8 or 16 bit).
        num_classes: number of classes K.
        batch_size: images per batch (all of the same class draw).
        weights: a ``tf.Variable`` of shape (K,) holding the (not necessarily normalised)
            class weights, or None to create one, uniform. Assigning it changes the next
            draws. Available as ``dataset.sampling_weights``.
        ignore_index: label value of ignored pixels (e.g. 255), or None.
        augment: optional ``(image, label) -> (image, label)`` TensorFlow function, run in
            parallel after decoding; it must keep the shapes equal across images.
        image_channels: channels to decode image files to (None keeps the file's).
        cache_path: ``.npz`` file for the class-presence index.
        seed: integer seed of the class and image draws (None: nondeterministic).
        image_key: the key of the images in the input dict (the model's input name).
        num_parallel_calls: parallelism of decoding/augmentation.
        prefetch: prefetch buffer in batches (bounds how stale the weights of a draw are).
        check_files: for paths, how every file is checked before the first draw
            (``"structure"``, ``"decode"`` or ``"off"``; see
            :mod:`keras_seg_extras.data.file_check`). Label files must be grey PNGs of 8 or
            16 bits (a palette or colour PNG would decode to grey levels, not to class ids).
        on_bad_file: ``"raise"``: one ``ValueError`` listing every bad file and why;
            ``"skip"``: leave out each pair with a bad file (logged, and listed in
            ``dataset.file_report``); the presence index covers the kept pairs.
        progress: progress bar of the check (None: for 1,000 files or more).

    Returns:
        A ``tf.data.Dataset`` with extra attributes ``sampling_weights`` (the variable),
        ``class_presence`` (N, K), ``images_per_class`` (K,) and ``file_report`` (a
        :class:`~keras_seg_extras.data.file_check.FileCheckReport`, None for arrays). A file
        that breaks after the check stops iteration with an error naming it.

    Example:
        >>> labels = np.zeros((6, 8, 8), "uint8")
        >>> labels[:3, :4], labels[3:, 4:] = 1, 2
        >>> ds = class_sampled_dataset(np.zeros((6, 8, 8, 1), "uint8"), labels, num_classes=3,
        ...                            batch_size=2, seed=0)
        >>> inputs, label = next(iter(ds))
        >>> sorted(inputs), tuple(inputs["image"].shape), tuple(label.shape)
        (['image', 'tce_class'], (2, 8, 8, 1), (2, 8, 8, 1))
        >>> ds.sampling_weights.numpy().round(4).tolist()   # steered by StochasticTCESampler
        [0.3333, 0.3333, 0.3333]
    """
    num_classes = check_number(_OWNER, "num_classes", num_classes, minimum=1, integer=True)
    batch_size = check_number(_OWNER, "batch_size", batch_size, minimum=1, integer=True)
    ignore_index = check_optional_int(_OWNER, "ignore_index", ignore_index)
    if seed is not None:
        seed = check_number(_OWNER, "seed", seed, integer=True)
    if not isinstance(image_key, str) or not image_key or image_key == _CLASS_KEY:
        fail(_OWNER, "image_key", image_key, f"must be a non-empty string other than {_CLASS_KEY!r}")
    images = _as_source(_OWNER, "images", images)
    labels = _as_source(_OWNER, "labels", labels)
    if len(images) != len(labels):
        fail(_OWNER, "labels", f"{len(labels)} label maps", f"must match the {len(images)} images")
    if weights is None:
        weights = tf.Variable(tf.fill([num_classes], 1.0 / num_classes), trainable=False,
                              name="class_sampling_weights")
    elif not isinstance(weights, tf.Variable) or tuple(weights.shape) != (num_classes,):
        fail(_OWNER, "weights", weights, f"must be a tf.Variable of shape ({num_classes},)")

    sources = [("images", images if isinstance(images, list) else None,
                _image_role(image_channels)),
               ("labels", labels if isinstance(labels, list) else None, _LABEL_ROLE)]
    report = None
    if sources[0][1] is not None or sources[1][1] is not None:
        keep, report = file_check._screen_pairs(_OWNER, sources, check_files, on_bad_file,
                                               progress)
        if report.skipped:
            images, labels = ([v[i] for i in keep] if isinstance(v, list) else v[keep]
                              for v in (images, labels))
    presence = index_class_presence(labels, num_classes, ignore_index, cache_path,
                                    check_files="off")
    counts = presence.sum(axis=0)
    if not counts.any():
        fail(_OWNER, "labels", "label maps without any class pixel",
             "must contain at least one pixel of some class")
    members = [np.flatnonzero(presence[:, c]) for c in range(num_classes)]
    flat_members = tf.constant(np.concatenate(members).astype(np.int64))
    splits = tf.constant(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    occurring = tf.constant(counts > 0)
    def draw(seed_pair):
        w = tf.cast(weights.read_value(), tf.float32)
        w = tf.where(occurring & (w > 0), w, tf.zeros_like(w))
        w = tf.where(tf.reduce_sum(w) > 0, w, tf.cast(occurring, tf.float32))
        logits = tf.math.log(w)[None, :]
        c = tf.random.stateless_categorical(logits, 1, seed=seed_pair, dtype=tf.int32)[0, 0]
        start, stop = splits[c], splits[c + 1]
        n = stop - start
        uniform = tf.random.stateless_uniform([tf.maximum(n, batch_size)],
                                              seed=seed_pair[::-1] + 1)

        def without_replacement():
            return tf.argsort(uniform[:n])[:batch_size]

        def with_replacement():
            return tf.cast(tf.math.floor(uniform[:batch_size] * tf.cast(n, tf.float32)),
                           tf.int32)

        position = tf.cond(n >= batch_size, without_replacement, with_replacement)
        position = tf.minimum(tf.cast(position, tf.int64), n - 1)
        indices = tf.gather(flat_members, start + position)
        return indices, tf.fill([batch_size], c)

    if augment is not None and not callable(augment):
        fail(_OWNER, "augment", augment, "must be a function (image, label) -> (image, label)")
    decode = _decoder(_OWNER, images, labels, image_channels)

    def with_class(pair, c):
        image, label = pair if augment is None else augment(*pair)
        return {image_key: image, _CLASS_KEY: c}, label

    # Each draw gets its own stateless seed pair from a random stream (deterministic under
    # `seed`, a new sequence for each new iterator), so draws can run in parallel and in
    # order (deterministic=True): the k-th draw becomes the k-th batch.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    draws = seeds.map(draw, num_parallel_calls=num_parallel_calls, deterministic=True).unbatch()
    # A file changed on disk after the check stops iteration with its name (read_checked).
    dataset = draws.map(lambda index, c: with_class(decode(index), c),
                        num_parallel_calls=num_parallel_calls, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(prefetch)
    dataset.file_report = report
    dataset.sampling_weights = weights
    dataset.class_presence = presence
    dataset.images_per_class = counts
    return dataset
