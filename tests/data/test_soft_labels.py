"""Soft labels from annotators' votes (paper 000, section 2.1)."""

import numpy as np
import pytest

from keras_seg_extras.data import (
    class_presence_counts,
    constant_prior_scores,
    none_class_weights,
    region_soft_labels,
    soft_labels_from_csv,
    soft_labels_from_votes,
)


def ref_soft(counts):
    counts = np.asarray(counts, "float64")
    return counts / counts.max(axis=1, keepdims=True)


def test_paper_figure_one():
    # [flood x4, smoke x1, none x1] -> flood 1.0, smoke 0.25, none 0.25
    got = soft_labels_from_votes([[0, 0, 1, 0, 2, 0]], num_classes=4)
    np.testing.assert_allclose(got, [[1.0, 0.25, 0.25, 0.0]])
    assert got.dtype == np.float32


def test_ids_and_counts_agree_with_reference(rng):
    counts = rng.integers(0, 5, (12, 6))
    counts[:, 2] += 1  # every image has a vote
    votes = [sum(([c] * int(n) for c, n in enumerate(row)), []) for row in counts]
    for order in (votes, [list(reversed(v)) for v in votes]):
        np.testing.assert_allclose(soft_labels_from_votes(order, 6), ref_soft(counts), rtol=1e-6)
    np.testing.assert_allclose(soft_labels_from_votes(counts, 6), ref_soft(counts), rtol=1e-6)
    fractional = counts * 0.5
    np.testing.assert_allclose(soft_labels_from_votes(fractional, 6), ref_soft(counts), rtol=1e-6)


def test_empty_images():
    with pytest.raises(ValueError, match=r"soft_labels_from_votes: `votes`.*\[1\]"):
        soft_labels_from_votes([[0], []], 2)
    got = soft_labels_from_votes(np.array([[0, 0], [3, 1]]), 2, allow_empty=True)
    np.testing.assert_allclose(got, [[0, 0], [1, 1 / 3]], rtol=1e-6)


@pytest.mark.parametrize("votes, num_classes, message", [
    ([[0, 3]], 3, r"`votes`.*\[0, 3\).*3"),
    ([[0, -1]], 3, r"`votes`.*-1"),
    ([[0, 1.5]], 3, r"integer class ids.*1.5"),
    ([3, 1], 3, r"one list of class ids"),
    (np.array([[1, 2]]), 3, r"num_classes=3 columns"),
    (np.array([[1, -2, 0]]), 3, r"counts >= 0.*-2"),
    ([[0]], 0, r"`num_classes`.*0"),
])
def test_bad_votes(votes, num_classes, message):
    with pytest.raises(ValueError, match=message):
        soft_labels_from_votes(votes, num_classes)


def write_csv(path, rows, header="image,label"):
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_csv_groups_rows_by_image(tmp_path):
    path = write_csv(tmp_path / "votes.csv", [
        ("b.png", "flood"), ("a.png", "smoke"), ("b.png", "flood"), ("b.png", "none"),
        ("a.png", "smoke"), ("b.png", "flood"), ("b.png", "flood"), ("b.png", "smoke"),
    ])
    images, soft, names = soft_labels_from_csv(path)
    assert images == ["b.png", "a.png"]
    assert names == ["flood", "none", "smoke"]
    np.testing.assert_allclose(soft, [[1.0, 0.25, 0.25], [0.0, 0.0, 1.0]])
    images, soft, names = soft_labels_from_csv(path, class_names=["smoke", "flood", "none", "x"])
    np.testing.assert_allclose(soft, [[0.25, 1.0, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]])


def test_csv_integer_ids_and_empty_rows(tmp_path):
    path = write_csv(tmp_path / "ids.csv", [("u1", "2"), ("u2", ""), ("u1", "0"), ("u1", "2")],
                     header="url,label")
    with pytest.raises(ValueError, match=r"soft_labels_from_csv: images without votes.*u2"):
        soft_labels_from_csv(path, class_names=3, image_column="url")
    images, soft, names = soft_labels_from_csv(path, class_names=3, image_column="url",
                                               allow_empty=True)
    assert images == ["u1", "u2"] and names == ["0", "1", "2"]
    np.testing.assert_allclose(soft, [[0.5, 0.0, 1.0], [0.0, 0.0, 0.0]])


def test_csv_errors(tmp_path):
    path = write_csv(tmp_path / "v.csv", [("a", "flood"), ("a", "lava")])
    with pytest.raises(ValueError, match=r"`path`.*'lava'.*line 3"):
        soft_labels_from_csv(path, class_names=["flood"])
    with pytest.raises(ValueError, match=r"`label_column`.*'tag'"):
        soft_labels_from_csv(path, label_column="tag")
    with pytest.raises(ValueError, match=r"`path`.*existing CSV"):
        soft_labels_from_csv(tmp_path / "missing.csv")


def test_region_soft_labels_against_reference(rng):
    maps = rng.integers(0, 5, (6, 7, 7))
    maps[:, :, :] = np.where(maps == 3, 0, maps)  # region 3 never shows
    got = region_soft_labels(maps[..., None], num_regions=4)
    expected = np.zeros((6, 4))
    for r in range(1, 5):
        areas = np.array([(m == r).sum() for m in maps], dtype="float64")
        if areas.max() > 0:
            expected[:, r - 1] = areas / areas.max()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.dtype == np.float32 and np.all(got[:, 2] == 0)
    np.testing.assert_array_equal(region_soft_labels(np.zeros((2, 3, 3), int), 2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"region_soft_labels: `region_maps`.*\[0, 4\]"):
        region_soft_labels(maps + 1, num_regions=4)
    with pytest.raises(ValueError, match="region_soft_labels: `region_maps`.*integer"):
        region_soft_labels(maps.astype("float32"), num_regions=4)
    with pytest.raises(ValueError, match=r"region_soft_labels: `region_maps`.*\(N, H, W\)"):
        region_soft_labels(maps[0], num_regions=4)


def test_class_statistics_against_reference(rng):
    labels = rng.choice([0.0, 0.25, 1.0], size=(9, 5))
    labels[:, 3] = 0.0  # a class that never appears
    expected = np.array([sum(1 for row in labels if row[c] > 0) for c in range(5)])
    np.testing.assert_array_equal(class_presence_counts(labels, minimum=0), expected)
    np.testing.assert_array_equal(class_presence_counts(labels), np.maximum(expected, 1))
    prior = constant_prior_scores(labels, num_samples=4)
    assert prior.shape == (4, 5) and prior.dtype == np.float32
    np.testing.assert_allclose(prior, np.tile(labels.sum(0) / 9, (4, 1)), rtol=1e-6)
    for function, argument in ((class_presence_counts, "soft_labels"),
                               (lambda y: constant_prior_scores(y, 2), "train_labels")):
        with pytest.raises(ValueError, match=f"`{argument}`.*in \\[0, 1\\]"):
            function(labels * 2)
        with pytest.raises(ValueError, match=f"`{argument}`.*\\(N, C\\)"):
            function(labels[0])
    with pytest.raises(ValueError, match="constant_prior_scores: `num_samples`"):
        constant_prior_scores(labels, 0)


def test_none_class_weights_by_name_or_index():
    names = ["damage: none", "flood", "smoke"]
    assert none_class_weights(names, [], 0.1) is None
    assert none_class_weights(names, ["damage: none"], 0.1) == [0.1, 1.0, 1.0]
    assert none_class_weights(names, ["2", 1], 0.01) == [1.0, 0.01, 0.01]
    with pytest.raises(ValueError, match="none_class_weights: `none_classes`.*below 3.*'fog'"):
        none_class_weights(names, ["fog"], 0.1)
    with pytest.raises(ValueError, match="none_class_weights: `multiplier`"):
        none_class_weights(names, ["flood"], -1)
