"""The class-sampled tf.data pipeline (paper 002, Algorithm 1 lines 1, 3, 4)."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from keras_seg_extras.data import (
    class_pixel_counts,
    class_sampled_dataset,
    index_class_presence,
    indexed_dataset,
    majority_class_confusion,
    resize_and_flip,
)

K = 5


def _labels(rng, n=24, size=6):
    labels = rng.integers(0, 4, size=(n, size, size))
    labels[:8][labels[:8] == 3] = 0  # class 3 only in images 8.., class 4 never occurs
    labels[5] = 255
    labels[6, :2] = 255
    return labels


def _presence_reference(labels, k, ignore):
    return np.array([[np.any((lab == c) & (lab != ignore)) for c in range(k)] for lab in labels])


def _images_tagged(labels):
    """Image n has every pixel equal to n, so a batch tells which images it holds."""
    n = labels.shape[0]
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None],
                           labels.shape + (1,)).copy()


def _class_of(batch):
    classes = batch[0]["tce_class"].numpy()
    assert np.all(classes == classes[0])
    return int(classes[0])


def _binomial_ok(counts, p, n):
    expected = n * p
    return np.all(np.abs(counts - expected) <= 4.5 * np.sqrt(n * p * (1 - p)) + 1e-9)


def test_presence_index_and_cache(tmp_path, rng):
    labels = _labels(rng)
    expected = _presence_reference(labels, K, 255)
    cache = str(tmp_path / "presence.npz")
    got = index_class_presence(labels, K, ignore_index=255, cache_path=cache)
    np.testing.assert_array_equal(got, expected)
    # The cache is read back (a tampered matrix with the same fingerprint proves it) ...
    with np.load(cache) as stored:
        fingerprint = stored["fingerprint"]
    np.savez(cache, presence=~expected, fingerprint=fingerprint)
    np.testing.assert_array_equal(index_class_presence(labels, K, 255, cache), ~expected)
    # ... and ignored when the labels change.
    changed = labels.copy()
    changed[0] = 4
    np.testing.assert_array_equal(index_class_presence(changed, K, 255, cache),
                                  _presence_reference(changed, K, 255))


def test_batches_hold_images_of_the_drawn_class(rng):
    labels = _labels(rng)
    images = _images_tagged(labels)
    ds = class_sampled_dataset(images, labels, K, batch_size=3, ignore_index=255, seed=3)
    presence = _presence_reference(labels, K, 255)
    np.testing.assert_array_equal(ds.class_presence, presence)
    for batch in ds.take(60):
        c = _class_of(batch)
        ids = np.round(batch[0]["image"].numpy()[:, 0, 0, 0] * 255).astype(int)
        assert c != 4 and np.all(presence[ids, c])
        assert len(set(ids)) == 3  # without replacement: the classes have >= 3 images
        np.testing.assert_array_equal(batch[1].numpy()[..., 0], labels[ids])
        assert batch[0]["image"].dtype == tf.float32 and batch[1].dtype == tf.int32


def test_frequencies_follow_weights_and_new_weights_right_after_update(rng):
    labels = _labels(rng)
    weights = tf.Variable([0.1, 0.2, 0.3, 0.4, 0.0])
    ds = class_sampled_dataset(labels[..., None].astype(np.uint8), labels, K, batch_size=2,
                               weights=weights, ignore_index=255, seed=11, prefetch=1,
                               num_parallel_calls=1)
    # The batch classes, pulled 20 at a time (the pipeline itself is unchanged).
    # tf.data must not add buffers of its own in this consumer (no fused map-and-batch, no
    # injected prefetch), so that the draws ahead are only the pipeline's own depth.
    options = tf.data.Options()
    options.experimental_optimization.map_and_batch_fusion = False
    options.experimental_optimization.inject_prefetch = False
    options.autotune.enabled = False
    iterator = iter(ds.map(lambda x, y: x["tce_class"][0]).batch(20).with_options(options))

    def draws(count):
        return np.concatenate([next(iterator).numpy() for _ in range(count // 20)])

    n = 2000
    counts = np.bincount(draws(n), minlength=K)
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    assert counts[4] == 0
    assert stats.chisquare(counts[:4], n * p[:4]).pvalue > 1e-4
    assert _binomial_ok(counts, p, n)

    # A degenerate update shows how many batches were already drawn (the pipeline depth).
    weights.assign([0.0, 0.0, 1.0, 0.0, 0.0])
    after = draws(40)
    stale = np.flatnonzero(after != 2)
    depth = int(stale[-1]) + 1 if stale.size else 0
    assert depth <= 4 and np.all(after[depth:] == 2)

    # New non-degenerate weights: the first 2,000 draws made after the update follow them
    # (the `depth` batches already drawn before it are skipped).
    new = np.array([0.5, 0.05, 0.05, 0.4, 0.0])
    weights.assign(new)
    made_after = draws(n + 20)[depth:depth + n]
    counts = np.bincount(made_after, minlength=K)
    assert stats.chisquare(counts[:4], n * new[:4]).pvalue > 1e-4
    assert _binomial_ok(counts, new, n)


def test_weight_on_classes_without_images_falls_back_to_occurring_classes(rng):
    labels = _labels(rng)
    weights = tf.Variable([0.0, 0.0, 0.0, 0.0, 1.0])  # class 4 has no image
    ds = class_sampled_dataset(labels, labels, K, batch_size=2, weights=weights,
                               ignore_index=255, seed=0)
    draws = np.array([_class_of(b) for b in ds.take(400)])
    counts = np.bincount(draws, minlength=K)
    assert counts[4] == 0 and np.all(counts[:4] > 60)  # uniform over 0..3 (100 expected)


def test_small_class_with_replacement_and_deterministic_seed(rng):
    labels = np.zeros((6, 4, 4), int)
    labels[0, 0, 0] = 1  # class 1 in a single image, batch of 3
    images = _images_tagged(labels)
    weights = tf.Variable([0.0, 1.0])
    ds = class_sampled_dataset(images, labels, 2, batch_size=3, weights=weights, seed=5)
    batch = next(iter(ds))
    ids = np.round(batch[0]["image"].numpy()[:, 0, 0, 0] * 255).astype(int)
    np.testing.assert_array_equal(ids, [0, 0, 0])
    weights.assign([0.5, 0.5])
    a = [_class_of(b) for b in class_sampled_dataset(images, labels, 2, 3, seed=9).take(30)]
    b = [_class_of(b) for b in class_sampled_dataset(images, labels, 2, 3, seed=9).take(30)]
    assert a == b and set(a) == {0, 1}


def test_files_and_augment(tmp_path, rng):
    labels = _labels(rng, n=10, size=8)
    image_paths, label_paths = [], []
    for n, lab in enumerate(labels):
        image = np.full((8, 8, 3), n, np.uint8)
        image[:, :4, 0] = 200  # left half marked, to check the flip hits image and label alike
        lab = lab.copy()
        lab[:, :4] = np.where(lab[:, :4] == 255, 255, 1)
        labels[n] = lab
        for arr, name, store in ((image, f"{n}_img.png", image_paths),
                                 (lab.astype(np.uint8)[..., None], f"{n}_lab.png", label_paths)):
            path = str(tmp_path / name)
            tf.io.write_file(path, tf.io.encode_png(arr))
            store.append(path)

    def flip(image, label):
        return tf.image.flip_left_right(image), tf.image.flip_left_right(label)

    ds = class_sampled_dataset(image_paths, label_paths, K, batch_size=2, ignore_index=255,
                               augment=flip, cache_path=str(tmp_path / "idx.npz"), seed=1)
    for (x, y) in ds.take(5):
        ids = np.round(x["image"].numpy()[:, 0, 0, 1] * 255).astype(int)
        np.testing.assert_array_equal(y.numpy()[..., 0], labels[ids][:, :, ::-1])
        assert np.all(x["image"].numpy()[:, :, 4:, 0] > 0.7)  # marked half now on the right
    assert (tmp_path / "idx.npz").exists()


def test_errors(rng):
    labels = _labels(rng)
    with pytest.raises(ValueError, match=r"image 5 hold values \[255\]"):
        class_sampled_dataset(labels, labels, K, 2)
    with pytest.raises(ValueError, match=r"class_sampled_dataset: `labels`.*must match the 24"):
        class_sampled_dataset(labels, labels[:3], K, 2, ignore_index=255)
    with pytest.raises(ValueError, match=r"class_sampled_dataset: `weights`.*\(5,\)"):
        class_sampled_dataset(labels, labels, K, 2, ignore_index=255,
                              weights=tf.Variable([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"class_sampled_dataset: `batch_size`.*0"):
        class_sampled_dataset(labels, labels, K, 0, ignore_index=255)
    with pytest.raises(ValueError, match=r"`images`.*shape \(3,\)"):
        class_sampled_dataset(np.zeros(3), labels, K, 2)


def test_class_pixel_counts_arrays_and_png_files(tmp_path, rng):
    labels = _labels(rng).astype("uint8")
    kept = labels[labels != 255].ravel()
    expected = np.array([np.sum(kept == c) for c in range(K)])
    np.testing.assert_array_equal(class_pixel_counts(labels, K, ignore_index=255), expected)
    assert expected[4] == 0 and expected.sum() == kept.size
    paths = []
    for n, label in enumerate(labels[:6]):
        paths.append(str(tmp_path / f"label{n}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png(label[..., None]))
    small = labels[:6][labels[:6] != 255].ravel()
    np.testing.assert_array_equal(class_pixel_counts(paths, K, ignore_index=255),
                                  [np.sum(small == c) for c in range(K)])
    with pytest.raises(ValueError, match=r"class_pixel_counts: labels of image 5 hold values "
                                         r"\[255\] outside \[0, 5\)"):
        class_pixel_counts(labels, K)
    with pytest.raises(ValueError, match="class_pixel_counts: `num_classes`"):
        class_pixel_counts(labels, 0)


def test_majority_class_confusion_scores_the_constant_prediction():
    truth = np.array([2, 3, 4, 0])
    matrix = majority_class_confusion(np.array([5, 9, 1, 9]), truth)  # ties: the first
    expected = np.zeros((4, 4), "int64")
    expected[:, 1] = truth
    np.testing.assert_array_equal(matrix, expected)
    # IoU of the constant model: only class 1 can score, 3 / (2 + 3 + 4).
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    assert tp[1] / union[1] == pytest.approx(3 / 9)
    with pytest.raises(ValueError, match="majority_class_confusion: `truth_counts`.*match"):
        majority_class_confusion([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="majority_class_confusion: `train_counts`"):
        majority_class_confusion([0.5, 1.0], [1, 2])


def test_resize_and_flip_keeps_pairs_aligned_and_label_ids():
    image = tf.reshape(tf.range(4 * 6, dtype=tf.float32), (4, 6, 1))
    label = tf.cast(image, tf.int32)
    fixed = resize_and_flip((2, 3), flip=False)
    small_image, small_label = fixed(image, label)
    assert small_image.shape == (2, 3, 1) and small_label.shape == (2, 3, 1)
    assert set(np.unique(small_label.numpy())) <= set(range(24))  # nearest: ids stay ids
    tf.random.set_seed(0)
    mirrored = resize_and_flip((4, 6), flip=True)
    outcomes = set()
    for _ in range(12):
        out_image, out_label = mirrored(image, label)
        np.testing.assert_array_equal(out_image.numpy(), out_label.numpy())  # flipped together
        outcomes.add(bool(out_label.numpy()[0, 0, 0] == 5))
    assert outcomes == {True, False}
    with pytest.raises(ValueError, match=r"resize_and_flip: `size`"):
        resize_and_flip(64)
    with pytest.raises(ValueError, match=r"resize_and_flip: `flip`"):
        resize_and_flip((4, 4), flip=1)


def test_indexed_dataset_every_image_once_or_shuffled_forever(rng):
    labels = _labels(rng, n=7)
    images = _images_tagged(labels)
    once = [x.numpy()[:, 0, 0, 0] for x, _ in indexed_dataset(images, labels, 3, shuffle=False,
                                                              repeat=False)]
    np.testing.assert_allclose(np.concatenate(once) * 255, np.arange(7), atol=1e-4)
    assert [len(b) for b in once] == [3, 3, 1]
    stream = indexed_dataset(images, labels, 3, seed=1).take(7)  # 21 draws: 3 passes
    drawn = np.rint(np.concatenate([x.numpy()[:, 0, 0, 0] for x, _ in stream]) * 255)
    assert all(len(b) == 3 for b in np.split(drawn, 7))
    np.testing.assert_array_equal(np.sort(drawn[:7]), np.arange(7))  # a pass is a permutation
    assert not np.array_equal(drawn[:7], np.arange(7))
    with pytest.raises(ValueError, match="indexed_dataset: `repeat`"):
        indexed_dataset(images, labels, 3, repeat="yes")
