"""The Cityscapes layout reader: aligned, sorted pairs; clear errors for missing files."""

import os

import pytest

from keras_seg_extras.data import cityscapes_files


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()


def test_pairs_are_sorted_aligned_and_limited(tmp_path):
    stems = [("bremen", "bremen_000001_000019"), ("aachen", "aachen_000002_000019"),
             ("aachen", "aachen_000000_000019")]
    for city, stem in stems:
        _touch(str(tmp_path / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png"))
        _touch(str(tmp_path / "gtFine" / "train" / city / f"{stem}_gtFine_labelTrainIds.png"))
    images, labels = cityscapes_files(tmp_path, "train")
    expected = sorted(stems)
    assert [os.path.basename(p) for p in images] == [f"{s}_leftImg8bit.png" for _, s in expected]
    assert [os.path.relpath(p, tmp_path) for p in labels] == [
        os.path.join("gtFine", "train", c, f"{s}_gtFine_labelTrainIds.png") for c, s in expected]
    assert cityscapes_files(tmp_path, "train", limit=2) == (images[:2], labels[:2])
    with pytest.raises(ValueError, match="cityscapes_files: `root` must hold images matching"):
        cityscapes_files(tmp_path, "val")
    os.remove(labels[1])
    with pytest.raises(ValueError, match="must hold the label .*aachen_000002_000019_gtFine"):
        cityscapes_files(tmp_path, "train")
    with pytest.raises(ValueError, match="cityscapes_files: `limit`"):
        cityscapes_files(tmp_path, "train", limit=0)
