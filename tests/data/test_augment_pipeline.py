"""Albumentations inside tf.data: static shapes, alignment, determinism, {0,1} masks, paths."""

import albumentations as A
import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.data import augment, pipeline


def _pattern(n=12, size=32):
    """Images whose first channel > 127 exactly where the mask is 1; asymmetric shapes."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 100, size=(n, size, size, 3)).astype(np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r, c = rng.integers(0, size - 10, 2)
        masks[i, r:r + 8, c:c + 3 + i % 5] = 1
        masks[i, 2, 1:4] = 1  # something near the left edge
        images[i, ..., 0][masks[i] == 1] = 200
    return images, masks


def _collect(dataset):
    images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(masks)


def test_static_shapes_and_dtypes():
    images, masks = _pattern()
    ds = pipeline.segmentation_dataset(images, masks, batch_size=4, image_size=32,
                                       augment=augment.siim_preset(32), seed=0)
    image_spec, mask_spec = ds.element_spec
    assert image_spec.shape.as_list() == [None, 32, 32, 3] and image_spec.dtype == tf.uint8
    assert mask_spec.shape.as_list() == [None, 32, 32, 1] and mask_spec.dtype == tf.uint8
    x, y = _collect(ds)
    assert x.shape == (12, 32, 32, 3) and y.shape == (12, 32, 32, 1)


def test_flip_keeps_mask_aligned():
    images, masks = _pattern()
    ds = pipeline.segmentation_dataset(images, masks, batch_size=5, image_size=32,
                                       augment=A.HorizontalFlip(p=0.5), shuffle=False, seed=3,
                                       num_parallel_calls=4)
    x, y = _collect(ds)
    flipped = 0
    for i in range(12):
        assert np.array_equal(y[i, ..., 0], (x[i, ..., 0] > 127).astype(np.uint8))
        if np.array_equal(x[i], images[i][:, ::-1]):
            flipped += 1
            assert np.array_equal(y[i, ..., 0], masks[i][:, ::-1])
        else:
            assert np.array_equal(x[i], images[i]) and np.array_equal(y[i, ..., 0], masks[i])
    assert 0 < flipped < 12


def test_deterministic_under_seed_with_parallel_calls():
    images, masks = _pattern(16)
    preset = augment.siim_preset(32, intensity_p=0.7, distortion_p=0.7, crop_p=0.5)

    def run(seed):
        ds = pipeline.segmentation_dataset(images, masks, batch_size=4, image_size=32,
                                           augment=preset, seed=seed, num_parallel_calls=4)
        return _collect(ds)

    first, second, other = run(11), run(11), run(12)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])
    # augmentation really happened: some outputs differ from every input
    changed = sum(not any(np.array_equal(a, b) for b in images) for a in first[0])
    assert changed > 4


def test_preset_keeps_masks_binary_and_transforms_run():
    images, masks = _pattern(8, 64)
    preset = augment.siim_preset(64, flip_p=1.0, intensity_p=1.0, distortion_p=1.0, crop_p=1.0)
    names = [type(t).__name__ for t in preset.transforms]
    assert names == ["HorizontalFlip", "OneOf", "OneOf", "RandomResizedCrop"]
    inner = [type(t).__name__ for t in preset.transforms[2].transforms]
    assert inner == ["ElasticTransform", "GridDistortion", "OpticalDistortion"]
    ds = pipeline.segmentation_dataset(images, masks * 255, batch_size=8, image_size=64,
                                       augment=preset, seed=1)
    x, y = _collect(ds)
    assert set(np.unique(y)) <= {0, 1} and y.max() == 1
    assert not any(np.array_equal(a, b) for a in x for b in images)


def test_repeat_changes_order_and_augmentation_per_epoch():
    images, masks = _pattern(6)
    ds = pipeline.segmentation_dataset(images, masks, batch_size=6, image_size=32,
                                       augment=augment.siim_preset(32), seed=2, repeat=True)
    (x1, _), (x2, _) = [(x.numpy(), y.numpy()) for x, y in ds.take(2)]
    assert not np.array_equal(x1, x2)
    plain = pipeline.segmentation_dataset(images, masks, batch_size=6, image_size=32, seed=2,
                                          repeat=True)
    (p1, _), (p2, _) = [(x.numpy(), y.numpy()) for x, y in plain.take(2)]
    # without augmentation each epoch is a permutation of the images
    for batch in (p1, p2):
        assert sorted(batch.reshape(6, -1).sum(axis=1).tolist()) == \
            sorted(images.reshape(6, -1).sum(axis=1).tolist())
    assert not np.array_equal(p1, p2)


def test_paths_equal_arrays_and_resize(tmp_path):
    images, masks = _pattern(5, 40)
    image_paths, mask_paths = [], []
    for i in range(5):
        image_paths.append(str(tmp_path / f"img{i}.png"))
        mask_paths.append(str(tmp_path / f"mask{i}.png"))
        cv2.imwrite(image_paths[-1], images[i][..., ::-1])  # OpenCV writes BGR
        cv2.imwrite(mask_paths[-1], masks[i] * 255)
    from_paths = _collect(pipeline.segmentation_dataset(image_paths, mask_paths, 2, 32,
                                                        shuffle=False))
    from_arrays = _collect(pipeline.segmentation_dataset(images, masks, 2, 32, shuffle=False))
    assert np.array_equal(from_paths[0], from_arrays[0])
    assert np.array_equal(from_paths[1], from_arrays[1])
    # resize: image bilinear (half-pixel centres), mask nearest
    expected = tf.image.resize(images.astype(np.float32), [32, 32]).numpy()
    assert np.abs(np.rint(expected) - from_arrays[0]).max() <= 1
    index = np.floor((np.arange(32) + 0.5) * 40 / 32).astype(int)
    assert np.array_equal(from_arrays[1][..., 0], masks[:, index][:, :, index])
    # label ids are kept when asked
    kept = _collect(pipeline.segmentation_dataset(images, masks * 7, 5, 40, shuffle=False,
                                                  binarize_masks=False))
    assert np.array_equal(kept[1][..., 0], masks * 7)


def test_augmenter_seed_and_element_seed():
    images, masks = _pattern(1, 32)
    augmenter = augment.Augmenter(augment.siim_preset(32, distortion_p=1.0))
    a = augmenter(images[0], masks[0][..., None], seed=9)
    b = augmenter(images[0], masks[0][..., None], seed=9)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[1].shape == (32, 32, 1)
    assert augment.element_seed(0, 5) == augment.element_seed(0, 5)
    assert len({augment.element_seed(0, k) for k in range(100)}) == 100


def test_errors():
    images, masks = _pattern(4)
    with pytest.raises(ValueError, match="segmentation_dataset.*masks.*one entry per image"):
        pipeline.segmentation_dataset(images, masks[:3], 2, 32)
    with pytest.raises(ValueError, match="segmentation_dataset.*images"):
        pipeline.segmentation_dataset(images[..., 0], masks, 2, 32)
    with pytest.raises(ValueError, match="segmentation_dataset.*images.*uint8"):
        pipeline.segmentation_dataset(images.astype(np.float32), masks, 2, 32)
    with pytest.raises(ValueError, match="segmentation_dataset.*batch_size"):
        pipeline.segmentation_dataset(images, masks, 0, 32)
    with pytest.raises(ValueError, match="Augmenter.*transform"):
        augment.Augmenter(lambda image, mask: (image, mask))
    with pytest.raises(ValueError, match="siim_preset.*crop_p"):
        augment.siim_preset(64, crop_p=1.5)
    ds = pipeline.segmentation_dataset(images, masks, 2, 32, augment=A.Resize(16, 16))
    with pytest.raises(Exception, match="must keep the size 32x32"):
        _collect(ds)


def test_dihedral_copies_are_the_eight_symmetries_and_keep_masks_aligned():
    images, masks = _pattern(n=3, size=12)
    got_x, got_y = augment.dihedral_copies(images, masks)
    assert got_x.shape == (24, 12, 12, 3) and got_y.shape == (24, 12, 12)
    assert got_x.flags["C_CONTIGUOUS"] and got_y.dtype == masks.dtype

    def symmetry(a, k, mirror):  # independent: quarter turns by transposes and flips
        for _ in range(k):
            a = a.swapaxes(0, 1)[::-1]
        return a[:, ::-1] if mirror else a

    for index, (k, mirror) in enumerate([(k, m) for m in (False, True) for k in range(4)]):
        for n in range(3):
            np.testing.assert_array_equal(got_x[index * 3 + n], symmetry(images[n], k, mirror))
            np.testing.assert_array_equal(got_y[index * 3 + n], symmetry(masks[n], k, mirror))
    # Eight distinct copies of an asymmetric tile; the mask still marks the bright pixels.
    assert len({got_x[i * 3].tobytes() for i in range(8)}) == 8
    np.testing.assert_array_equal(got_x[..., 0] > 127, got_y == 1)
    with pytest.raises(ValueError, match=r"dihedral_copies: `images`.*square"):
        augment.dihedral_copies(images[:, :6], masks[:, :6])
    with pytest.raises(ValueError, match=r"dihedral_copies: `masks`.*must match"):
        augment.dihedral_copies(images, masks[:2])


def test_read_images_rgb_resized_with_clear_errors(tmp_path):
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, :10] = (255, 0, 0)  # BGR: blue left half
    image[:, 10:] = (0, 0, 255)  # red right half
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "b.jpg"), np.full((6, 6, 3), 128, np.uint8))
    pixels = pipeline.read_images(["a.png", str(tmp_path / "b.jpg")], 4, root=str(tmp_path))
    assert pixels.shape == (2, 4, 4, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[0, :, 0], np.tile([0, 0, 255], (4, 1)))  # RGB order
    np.testing.assert_array_equal(pixels[0, :, -1], np.tile([255, 0, 0], (4, 1)))
    assert np.all(np.abs(pixels[1].astype(int) - 128) <= 2)
    with pytest.raises(ValueError, match=r"read_images: `paths` must name readable.*missing"):
        pipeline.read_images(["missing.png"], 4, root=str(tmp_path))
    with pytest.raises(ValueError, match=r"read_images: `paths`.*non-empty"):
        pipeline.read_images("a.png", 4)
