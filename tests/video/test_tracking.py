"""Online association, BiTrack merge and label voting (paper 001, 3.4 and 3.5.4)."""

import numpy as np
import pytest

from keras_seg_extras.video import associate, bidirectional_tracks, merge_tracklets, \
    vote_label

E_A = np.array([1.0, 0.0, 0.0])
E_B = np.array([0.0, 1.0, 0.0])


def _box(x, y, size=20):
    return [x, y, x + size, y + size]


def _video(objects, frames=10):
    """objects: list of dicts with per-frame (box, score, label, embedding) or None."""
    video = []
    for t in range(frames):
        rows = [o(t) for o in objects]
        rows = [r for r in rows if r is not None]
        video.append({
            "boxes": np.array([r[0] for r in rows], "float64").reshape(-1, 4),
            "scores": np.array([r[1] for r in rows], "float64"),
            "labels": np.array([r[2] for r in rows], "int64"),
            "embeddings": np.array([r[3] for r in rows], "float64").reshape(len(rows), 3),
        })
    return video


def _object_a(t):  # weak for its first five frames, then confident; drifts right
    return (_box(10 + 2 * t, 10), 0.3 if t < 5 else 0.9, 3, E_A)


def _object_b(t):  # confident all along, far away
    return (_box(200, 200 - t), 0.95, 7, E_B)


def test_object_lost_forward_and_kept_backward_becomes_one_track():
    video = _video([_object_a, _object_b])
    forward = associate(video, new_track_score=0.5)
    backward = associate(video, reverse=True, new_track_score=0.5)
    # Forward, the weak start of A cannot open a tracklet: frames 0-4 are lost.
    assert all(forward[t][0] == -1 for t in range(5))
    assert len({int(forward[t][0]) for t in range(5, 10)}) == 1
    # Backward, A is opened at frame 9 and followed down to frame 0.
    assert len({int(backward[t][0]) for t in range(10)}) == 1 and backward[0][0] >= 0

    tracks = bidirectional_tracks(video, new_track_score=0.5, merge_iou=0.5)
    assert len(tracks) == 2
    by_label = {tr["label"]: tr for tr in tracks}
    np.testing.assert_array_equal(by_label[3]["frames"], np.arange(10))
    np.testing.assert_array_equal(by_label[3]["detections"], np.zeros(10))
    np.testing.assert_array_equal(by_label[7]["frames"], np.arange(10))
    np.testing.assert_allclose(by_label[3]["boxes"][0], _box(10, 10))
    assert {direction for direction, _ in by_label[3]["sources"]} == {"forward", "backward"}


def test_fragments_of_one_direction_are_joined_through_the_other():
    video = _video([_object_a])
    forward = [np.array([0]) if t < 5 else np.array([1]) for t in range(10)]  # two fragments
    backward = [np.array([0]) for _ in range(10)]  # one whole tracklet
    tracks = merge_tracklets(video, forward, backward, merge_iou=0.5)
    assert len(tracks) == 1
    np.testing.assert_array_equal(tracks[0]["frames"], np.arange(10))
    assert sorted(tracks[0]["sources"]) == [("backward", 0), ("forward", 0), ("forward", 1)]


def test_tracklets_of_different_objects_are_not_merged():
    video = _video([_object_a, _object_b])
    ids = [np.array([0, 1]) for _ in range(10)]
    swapped = [np.array([1, 0]) for _ in range(10)]
    tracks = merge_tracklets(video, ids, swapped, merge_iou=0.5)
    assert len(tracks) == 2
    assert sorted(tr["label"] for tr in tracks) == [3, 7]
    # A threshold above every mean IoU (1.0 here) keeps the directions apart: 4 tracks,
    # but each detection still belongs to exactly one track.
    separate = merge_tracklets(video, ids, swapped, merge_iou=0.999999)
    assert sum(len(tr["frames"]) for tr in separate) == 20


def test_greedy_matching_follows_embeddings_when_boxes_cross():
    def a(t):
        return (_box(10 + 8 * t, 50), 0.9, 0, E_A)

    def b(t):
        return (_box(82 - 8 * t, 52), 0.9, 1, E_B)

    video = _video([a, b])
    ids = associate(video, iou_weight=0.3, match_threshold=0.5)
    # Detection 0 is always A: one id all along, and B keeps the other id.
    assert len({int(frame[0]) for frame in ids}) == 1
    assert len({int(frame[1]) for frame in ids}) == 1
    assert ids[0][0] != ids[0][1]


def test_memory_buffer_bridges_short_gaps_only():
    def a(t):
        return None if t in (3, 4) else (_box(10, 10), 0.9, 0, E_A)

    video = _video([a], frames=8)
    bridged = associate(video, memory=3)
    assert len({int(frame[0]) for frame in bridged if frame.size}) == 1
    broken = associate(video, memory=2)
    assert len({int(frame[0]) for frame in broken if frame.size}) == 2


def test_boxes_alone_when_there_are_no_embeddings():
    video = [{"boxes": [_box(10 + t, 10)], "scores": [0.9]} for t in range(5)]
    ids = associate(video, match_threshold=0.5)
    assert [int(f[0]) for f in ids] == [0] * 5
    far = [{"boxes": [_box(10 + 40 * t, 10)]} for t in range(3)]
    assert [int(f[0]) for f in associate(far)] == [0, 1, 2]


def test_label_voting_majority_and_score_weighted():
    assert vote_label([3, 3, 5, 3, 5]) == 3
    assert vote_label([3, 3, 5], [0.2, 0.2, 0.9]) == 5
    assert vote_label([4, 2]) == 2  # tie: smaller label
    assert vote_label([4, 2, 4, 2], [0.9, 0.1, 0.1, 0.1]) == 4

    def a(t):  # misclassified in three of ten frames, confidently so
        return (_box(10 + t, 10), 0.99 if t in (2, 5, 8) else 0.6, 9 if t in (2, 5, 8) else 3,
                E_A)

    tracks = bidirectional_tracks(_video([a]))
    assert len(tracks) == 1 and tracks[0]["label"] == 3  # 7 votes against 3
    weighted = bidirectional_tracks(_video([a]), score_weighted_vote=True)
    assert weighted[0]["label"] == 3  # 4.2 against 2.97
    np.testing.assert_array_equal(tracks[0]["labels"], [9 if t in (2, 5, 8) else 3
                                                        for t in range(10)])


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"associate: `frames\[0\]\['scores'\]`"):
        associate([{"boxes": [_box(0, 0)], "scores": [0.5, 0.6]}])
    with pytest.raises(ValueError, match=r"associate: `memory`"):
        associate([], memory=0)
    with pytest.raises(ValueError, match=r"vote_label: `labels`"):
        vote_label([])
    video = _video([_object_a], frames=2)
    with pytest.raises(ValueError, match=r"merge_tracklets: `backward_ids`"):
        merge_tracklets(video, [np.array([0])] * 2, [np.array([0])])
