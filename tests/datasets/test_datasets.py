"""The shipped sample sets: shapes, dtypes, value ranges, splits, folding and errors."""

import os
import sys

import cv2
import numpy as np
import pytest

from keras_seg_extras.datasets import brain, nuclei

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# ----------------------------------------------------------------------------- nuclei


@pytest.mark.parametrize("tile,n_train,n_val", [(64, 48, 16), (128, 12, 4), (256, 3, 1)])
def test_nuclei_shapes_dtypes_values(tile, n_train, n_val):
    (x_train, y_train), (x_val, y_val) = nuclei.load_data(tile_size=tile)
    assert x_train.shape == (n_train, tile, tile, 3) and x_val.shape == (n_val, tile, tile, 3)
    assert y_train.shape == (n_train, tile, tile, 1) and y_val.shape == (n_val, tile, tile, 1)
    for array in (x_train, y_train, x_val, y_val):
        assert array.dtype == np.uint8
    assert set(np.unique(y_train)) == {0, 1} and set(np.unique(y_val)) == {0, 1}
    # three identical channels
    assert np.array_equal(x_train[..., 0], x_train[..., 2])
    assert np.array_equal(x_val[..., 1], x_val[..., 0])
    assert x_train.max() == 255  # scaled so that the image maximum is 255


def test_nuclei_tiles_match_the_image_and_split_is_spatial():
    image, mask, instances = nuclei.load_image()
    assert image.shape == mask.shape == instances.shape == (512, 512)
    assert np.array_equal(mask, (instances > 0).astype(np.uint8))
    assert len(np.unique(instances)) - 1 == 125
    assert 0.19 < mask.mean() < 0.21
    (x_train, y_train), (x_val, y_val) = nuclei.load_data(tile_size=128)
    # validation tiles are the bottom-right quadrant, row-major
    expected_val = [image[r:r + 128, c:c + 128] for r in (256, 384) for c in (256, 384)]
    assert np.array_equal(x_val[..., 0], np.stack(expected_val))
    expected_mask = [mask[r:r + 128, c:c + 128] for r in (256, 384) for c in (256, 384)]
    assert np.array_equal(y_val[..., 0], np.stack(expected_mask))
    # training tiles cover exactly the other three quadrants, each pixel once
    covered = np.zeros((512, 512), int)
    for tile in x_train[..., 0]:
        hits = [(r, c) for r in range(0, 512, 128) for c in range(0, 512, 128)
                if np.array_equal(image[r:r + 128, c:c + 128], tile)]
        assert len(hits) == 1
        r, c = hits[0]
        covered[r:r + 128, c:c + 128] += 1
    assert covered[256:, 256:].sum() == 0
    assert covered.sum() == 3 * 256 * 256 and covered.max() == 1
    # every pixel of the image is in exactly one split
    assert x_train.shape[0] * 128 * 128 + x_val.shape[0] * 128 * 128 == 512 * 512
    assert y_train.sum() + y_val.sum() == mask.sum()


@pytest.mark.parametrize("bad", [100, 0, -64, 512, 3.5, "128", True])
def test_nuclei_bad_tile_size(bad):
    with pytest.raises(ValueError, match="nuclei.load_data.*tile_size"):
        nuclei.load_data(tile_size=bad)


def test_loaders_read_only_the_npz(monkeypatch):
    # a module set to None in sys.modules cannot be imported: any use would raise ImportError
    for name in ("nibabel", "tifffile", "cv2", "PIL"):
        monkeypatch.setitem(sys.modules, name, None)
    nuclei._arrays.cache_clear()
    brain._arrays.cache_clear()
    brain._region_table.cache_clear()
    try:
        assert nuclei.load_data(64)[1][0].shape == (16, 64, 64, 3)
        assert brain.load_data(32, num_classes=5)[0][0].shape == (116, 32, 32, 1)
        assert len(brain.region_names()) == 117
    finally:
        nuclei._arrays.cache_clear()
        brain._arrays.cache_clear()
        brain._region_table.cache_clear()


# ----------------------------------------------------------------------------- brain


def test_brain_default_shapes_dtypes_values():
    (x_train, y_train), (x_val, y_val) = brain.load_data()
    assert x_train.shape == y_train.shape == (116, 128, 128, 1)
    assert x_val.shape == y_val.shape == (30, 128, 128, 1)
    for array in (x_train, y_train, x_val, y_val):
        assert array.dtype == np.uint8
    labels = np.concatenate([y_train, y_val])
    assert labels.min() == 0 and labels.max() == 116
    assert len(np.unique(labels)) == 117
    # every slice holds at least one region; background is the most frequent class
    assert np.all(labels.reshape(146, -1).max(axis=1) > 0)
    assert np.bincount(labels.ravel()).argmax() == 0
    assert x_train.max() > 200


def test_brain_volume_and_native_slices():
    image, labels = brain.load_volume()
    assert image.shape == labels.shape == (181, 217, 181)
    assert image.dtype == labels.dtype == np.uint8 and labels.max() == 116
    z_with_labels = [z for z in range(181) if labels[:, :, z].max() > 0]
    assert len(z_with_labels) == 146
    assert np.array_equal(brain.labelled_slices(), z_with_labels)
    (x_train, y_train), (x_val, y_val) = brain.load_data(image_size=217, validation_fraction=0.0)
    assert x_val.shape == (0, 217, 217, 1) and x_train.shape == (146, 217, 217, 1)
    for i in (0, 70, 145):
        z = z_with_labels[i]
        # anterior (high y) at the top, x along the columns, 18 zero columns on each side
        expected_x = np.zeros((217, 217), np.uint8)
        expected_y = np.zeros((217, 217), np.uint8)
        for row in range(217):
            expected_x[row, 18:199] = image[:, 216 - row, z]
            expected_y[row, 18:199] = labels[:, 216 - row, z]
        assert np.array_equal(x_train[i, ..., 0], expected_x)
        assert np.array_equal(y_train[i, ..., 0], expected_y)


def test_brain_resize_matches_opencv_bilinear_and_nearest_keeps_labels():
    (x_native, y_native), _ = brain.load_data(image_size=217, validation_fraction=0.0)
    (x_small, y_small), _ = brain.load_data(image_size=96, validation_fraction=0.0)
    for i in (10, 80):
        reference = cv2.resize(x_native[i, ..., 0].astype(np.float32), (96, 96),
                               interpolation=cv2.INTER_LINEAR)
        assert np.abs(np.rint(reference) - x_small[i, ..., 0].astype(np.float32)).max() <= 1
        # nearest neighbour with half-pixel centres: source index floor((i + 0.5) * 217 / 96)
        index = [min(int((k + 0.5) * 217 / 96), 216) for k in range(96)]
        expected = np.array([[y_native[i, r, c, 0] for c in index] for r in index])
        assert np.array_equal(y_small[i, ..., 0], expected)


@pytest.mark.parametrize("fraction", [0.2, 0.1, 0.35])
def test_brain_slab_split_disjoint_contiguous(fraction):
    train_z, val_z = brain.slab_split(fraction)
    all_z = brain.labelled_slices()
    assert not set(train_z) & set(val_z)
    assert np.array_equal(np.sort(np.concatenate([train_z, val_z])), all_z)
    positions = np.searchsorted(all_z, val_z)
    # validation is made of whole slabs of 10 consecutive labelled slices
    slabs = set(positions // 10)
    for slab in slabs:
        members = np.arange(slab * 10, min(slab * 10 + 10, len(all_z)))
        assert set(members) <= set(positions)
    assert len(slabs) == max(1, round(fraction * 15))
    assert abs(len(val_z) / len(all_z) - fraction) < 0.07
    (x_train, _), (x_val, _) = brain.load_data(image_size=32, validation_fraction=fraction)
    assert len(x_train) == len(train_z) and len(x_val) == len(val_z)


def _fold_reference(r, k):
    if r == 0:
        return 0
    return 1 + ((r - 1) * (k - 1)) // 116


@pytest.mark.parametrize("k", [2, 3, 5, 30, 59, 100, 116, 117])
def test_fold_regions_rule(k):
    regions = np.arange(117)
    folded = brain.fold_regions(regions, k)
    assert folded.dtype == np.uint8
    assert [int(v) for v in folded] == [_fold_reference(int(r), k) for r in regions]
    assert set(folded.tolist()) == set(range(k))  # every class is used
    if k == 117:
        assert np.array_equal(folded, regions)
    if 58 % (k - 1) == 0:  # left/right pairs (2i-1, 2i) stay together
        assert np.all(folded[1::2] == folded[2::2])
    names = brain.region_names(k)
    assert len(names) == k and names[0] == "background"


def test_fold_regions_in_load_data(rng):
    (_, y_full), _ = brain.load_data(image_size=48)
    (_, y_folded), _ = brain.load_data(image_size=48, num_classes=30)
    table = np.array([_fold_reference(r, 30) for r in range(117)])
    assert np.array_equal(y_folded, table[y_full])
    assert y_folded.max() == 29
    labels = rng.integers(0, 117, size=(3, 7, 5))
    assert np.array_equal(brain.fold_regions(labels, 10), table_for(10)[labels])


def table_for(k):
    return np.array([_fold_reference(r, k) for r in range(117)])


def test_region_names():
    names = brain.region_names()
    assert len(names) == 117
    assert names[:3] == ["background", "Precentral_L", "Precentral_R"]
    with open(os.path.join(ROOT, "keras_seg_extras", "datasets", "aal_regions.txt")) as handle:
        last = handle.read().split("\n")[115].split()
    assert last[0] == "116" and names[116] == last[1]
    assert brain.region_names(59)[1] == "Precentral_L+Precentral_R"


def test_brain_errors():
    with pytest.raises(ValueError, match="fold_regions.*num_classes"):
        brain.fold_regions(np.array([1, 2]), 1)
    with pytest.raises(ValueError, match="fold_regions.*num_classes"):
        brain.fold_regions(np.array([1, 2]), 118)
    with pytest.raises(ValueError, match="fold_regions.*labels.*117"):
        brain.fold_regions(np.array([1, 117]), 5)
    with pytest.raises(ValueError, match="fold_regions.*labels.*-1"):
        brain.fold_regions(np.array([-1, 3]), 5)
    with pytest.raises(ValueError, match="fold_regions.*labels"):
        brain.fold_regions(np.array([1.0, 2.0]), 5)
    with pytest.raises(ValueError, match="brain.load_data.*image_size"):
        brain.load_data(image_size=4)
    with pytest.raises(ValueError, match="brain.load_data.*num_classes"):
        brain.load_data(num_classes=200)
    with pytest.raises(ValueError, match="validation_fraction"):
        brain.load_data(validation_fraction=1.0)
    with pytest.raises(ValueError, match="validation_fraction"):
        brain.load_data(validation_fraction=-0.1)


def test_provenance_files_are_shipped():
    folder = os.path.join(ROOT, "keras_seg_extras", "datasets")
    with open(os.path.join(folder, "PROVENANCE.md")) as handle:
        text = handle.read()
    assert "CC0" in text and "BSD-3-Clause" in text and "BBBC038" in text
    with open(os.path.join(folder, "MRICRON-DATA-COPYRIGHT.txt")) as handle:
        assert "Chris Rorden" in handle.read()
    total = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
    assert total < 6e6
