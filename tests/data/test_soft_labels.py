"""Soft labels from annotators' votes (paper 000, section 2.1)."""

import numpy as np
import pytest

from keras_seg_extras.data import soft_labels_from_csv, soft_labels_from_votes


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
