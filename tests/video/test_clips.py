"""Clip ranking (paper 000, section 2.5): frames at a chosen fps, max fusion, top-k, fusion, AP@k."""

import cv2
import keras
import numpy as np
import pytest

from keras_seg_extras.video import clips as video


def write_video(path, values, fps=20.0, size=32):
    """Frame i is uniform BGR (0, 0, values[i]), i.e. its red channel holds values[i]."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    assert writer.isOpened()
    for value in values:
        frame = np.zeros((size, size, 3), np.uint8)
        frame[..., 2] = value
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path):
    return write_video(tmp_path / "clip.avi", [10 * i for i in range(20)])


def test_read_frames_samples_at_fps_in_rgb(clip):
    frames = video.read_frames(clip, fps=5)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    red = frames[..., 0].mean(axis=(1, 2))
    np.testing.assert_allclose(red, [0, 40, 80, 120, 160], atol=4)  # frames 0, 4, 8, 12, 16
    assert frames[..., 2].max() < 8
    every = video.read_frames(clip, fps=100, size=(16, 24), max_frames=7)
    assert every.shape == (7, 16, 24, 3)
    np.testing.assert_allclose(every[..., 0].mean(axis=(1, 2)), np.arange(7) * 10, atol=4)


def test_clip_scores_max_over_frames(tmp_path, clip):
    dim = write_video(tmp_path / "dim.avi", [30] * 10)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    scores = video.clip_scores(model, [clip, dim], fps=10, batch_size=3,
                               preprocess=lambda b: b.astype("float32") / 255.0)
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores[:, 0], [180 / 255, 30 / 255], atol=0.02)  # frame 18 max
    by_callable = video.clip_scores(lambda b: b.mean(axis=(1, 2)) / 255.0, [clip, dim], fps=10)
    np.testing.assert_allclose(by_callable, scores, atol=1e-5)


def test_clip_score_and_top_k_against_reference(rng):
    frame_scores = rng.random((9, 4))
    np.testing.assert_allclose(video.clip_score(frame_scores), frame_scores.max(0), rtol=1e-6)
    scores = (rng.integers(0, 4, (10, 3)) / 3).astype("float32")  # many ties
    top = video.top_k_clips(scores, k=4)
    assert top.shape == (3, 4)
    for c in range(3):
        reference = sorted(range(10), key=lambda i: (-scores[i, c], i))[:4]
        assert top[c].tolist() == reference
    assert video.top_k_clips(scores, k=50).shape == (3, 10)


def test_weighted_ensemble_two_to_one(rng):
    ten_models = [rng.random((5, 3)) for _ in range(10)]
    other = rng.random((5, 3))
    ten = video.weighted_score_ensemble(ten_models)
    np.testing.assert_allclose(ten, np.mean(ten_models, axis=0), rtol=1e-6)
    fused = video.weighted_score_ensemble([ten, other], weights=(2, 1))
    np.testing.assert_allclose(fused, (2 * np.mean(ten_models, axis=0) + other) / 3, rtol=1e-6)
    five = video.weighted_score_ensemble([ten, other], weights=[5, 1])
    np.testing.assert_allclose(five, (5 * np.mean(ten_models, axis=0) + other) / 6, rtol=1e-6)


def test_average_precision_at_k():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    relevant = np.array([1, 0, 1, 0, 0, 1])
    # Top 4: hits at ranks 1 and 3 -> (1/1 + 2/3); R = 3, min(k, R) = 3.
    assert video.average_precision_at_k(scores, relevant, 4) == pytest.approx((1 + 2 / 3) / 3)
    assert video.average_precision_at_k(scores, relevant, 2) == pytest.approx(1 / 2)
    assert video.average_precision_at_k(scores, relevant, 2, by_total_relevant=True) == \
        pytest.approx(1 / 3)
    assert video.average_precision_at_k(scores, np.zeros(6), 3) == 0.0
    perfect = video.average_precision_at_k(-np.arange(6.0), np.ones(6), 3)
    assert perfect == pytest.approx(1.0)
    mean, per_class = video.mean_average_precision_at_k(
        np.stack([scores, scores], 1), np.stack([relevant, np.zeros(6)], 1), 4)
    assert mean == pytest.approx((1 + 2 / 3) / 3) and np.isnan(per_class[1])


def test_errors(tmp_path, clip):
    with pytest.raises(ValueError, match=r"read_frames: `path`.*open"):
        video.read_frames(tmp_path / "missing.avi")
    with pytest.raises(ValueError, match=r"read_frames: `fps`.*> 0.*0"):
        video.read_frames(clip, fps=0)
    with pytest.raises(ValueError, match=r"predict_frames: `model`.*batch"):
        video.predict_frames(lambda b: np.zeros(3), np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"weighted_score_ensemble: `scores`.*shape"):
        video.weighted_score_ensemble([np.zeros((2, 3)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match=r"weighted_score_ensemble: `weights`.*2 entries"):
        video.weighted_score_ensemble([np.zeros(2), np.zeros(2)], weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"top_k_clips: `k`.*0"):
        video.top_k_clips(np.zeros((2, 2)), 0)
