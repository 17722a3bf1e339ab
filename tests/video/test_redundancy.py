"""Frame-redundancy analysis and uniform frame subsampling (paper 001, 3.1, Fig. 2)."""

import numpy as np
import pytest

from keras_seg_extras.video import (keep_uniform_frames, object_mean_ious,
                                        redundancy_histogram, uniform_frame_indices)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _annotations(rng):
    rows = []  # video, frame, track, box
    for video in ("v1", "v2"):
        for track, speed in ((0, 0.0), (1, 2.0), (2, 15.0)):
            for frame in range(6):
                if video == "v2" and track == 2 and frame in (2, 3):
                    continue  # not annotated there: successive appearances 1 -> 4
                x = 10 + speed * frame + rng.uniform(0, 1)
                rows.append((video, frame, track, [x, 20.0, x + 20.0, 40.0]))
    rows.append(("v3", 0, 5, [0.0, 0.0, 5.0, 5.0]))  # seen once: no value
    order = rng.permutation(len(rows))  # any order in, the same numbers out
    rows = [rows[i] for i in order]
    return rows


def test_object_mean_ious_against_a_direct_computation(rng):
    rows = _annotations(rng)
    videos, frames, tracks, boxes = zip(*rows)
    values = object_mean_ious(videos, frames, tracks, np.array(boxes))
    assert set(values) == {(v, t) for v in ("v1", "v2") for t in (0, 1, 2)}
    for (video, track), value in values.items():
        mine = sorted((f, b) for v, f, t, b in rows if v == video and t == track)
        expected = np.mean([_iou(a[1], b[1]) for a, b in zip(mine[:-1], mine[1:])])
        assert value == pytest.approx(expected, abs=1e-12)
    assert values[("v1", 0)] > 0.9 and values[("v1", 2)] < 0.5
    adjacent = object_mean_ious(videos, frames, tracks, np.array(boxes), adjacent_only=True)
    mine = sorted((f, b) for v, f, t, b in rows if v == "v2" and t == 2)
    pairs = [(a, b) for a, b in zip(mine[:-1], mine[1:]) if b[0] - a[0] == 1]
    assert adjacent[("v2", 2)] == pytest.approx(np.mean([_iou(a[1], b[1]) for a, b in pairs]))


def test_histogram_numbers_and_png(tmp_path):
    values = {("v", k): v for k, v in enumerate([0.05, 0.55, 0.85, 0.9, 0.95, 1.0])}
    path = tmp_path / "redundancy.png"
    summary = redundancy_histogram(values, path, bins=10)
    np.testing.assert_array_equal(summary["counts"], [1, 0, 0, 0, 0, 1, 0, 0, 1, 3])
    np.testing.assert_allclose(summary["edges"], np.linspace(0, 1, 11))
    assert summary["fraction_above"] == pytest.approx(4 / 6)
    assert summary["median"] == pytest.approx(0.875)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and summary["path"] == str(path)
    with pytest.raises(ValueError, match=r"redundancy_histogram: `mean_ious`"):
        redundancy_histogram([0.5, 1.5])


def test_uniform_frames():
    np.testing.assert_array_equal(uniform_frame_indices(10, 3), [0, 4, 9])
    np.testing.assert_array_equal(uniform_frame_indices(36, 5), [0, 9, 18, 26, 35])
    np.testing.assert_array_equal(uniform_frame_indices(7, 1), [3])
    np.testing.assert_array_equal(uniform_frame_indices(4, 10), [0, 1, 2, 3])
    assert uniform_frame_indices(0, 2).size == 0
    kept = keep_uniform_frames({"a": [f"{i:05d}.jpg" for i in range(11)], "b": ["x", "y"]}, 3)
    assert kept == {"a": ["00000.jpg", "00005.jpg", "00010.jpg"], "b": ["x", "y"]}
    with pytest.raises(ValueError, match=r"uniform_frame_indices: `k`"):
        uniform_frame_indices(10, 0)


def test_errors():
    with pytest.raises(ValueError, match=r"object_mean_ious: `track_ids`"):
        object_mean_ious(["v"], [0], [1, 2], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"object_mean_ious: `frame_indices`.*repeat"):
        object_mean_ious(["v", "v"], [0, 0], [1, 1], [[0, 0, 1, 1], [0, 0, 1, 1]])
