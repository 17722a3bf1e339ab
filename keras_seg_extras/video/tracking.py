"""Online tracklet association, bidirectional tracking (BiTrack) and label voting (NumPy).

From "1st Place Solution for YouTubeVOS Challenge 2021: Video Instance Segmentation" (technical
report, 2021), section 3.4 (BiTrack) and 3.5.4 (label voting). Per-frame detections are linked
into tracklets online, once forward and once backward in time; a forward and a backward tracklet
that overlap well on the frames they share are the same object and are merged, so an object that
one direction loses (it starts weak, is occluded, changes appearance) is recovered by the other.
Each merged track's label is the most frequent detection label.

Inputs are plain Python/NumPy: a video is a list of frames, each frame a dict with

- ``"boxes"``: (N, 4) ``(x1, y1, x2, y2)``;
- ``"scores"``: (N,) detection scores in [0, 1] (optional, default 1);
- ``"labels"``: (N,) int class labels (optional, default 0);
- ``"embeddings"``: (N, D) appearance embeddings (optional; without them boxes alone
  decide).

Outputs are dicts of NumPy arrays (see :func:`bidirectional_tracks`).
"""

import numpy as np

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.video.boxes import _as_boxes, box_iou


def _frame_arrays(owner, frames):
    if not isinstance(frames, (list, tuple)):
        fail(owner, "frames", type(frames).__name__, "must be a list of per-frame dicts")
    parsed = []
    for t, frame in enumerate(frames):
        if not isinstance(frame, dict) or "boxes" not in frame:
            fail(owner, f"frames[{t}]", type(frame).__name__,
                 "must be a dict with at least 'boxes'")
        boxes = _as_boxes(owner, f"frames[{t}]['boxes']", frame["boxes"])
        n = boxes.shape[0]
        scores = np.asarray(frame.get("scores", np.ones(n)), dtype="float64").reshape(-1)
        labels = np.asarray(frame.get("labels", np.zeros(n)), dtype="int64").reshape(-1)
        for name, values in (("scores", scores), ("labels", labels)):
            if values.shape[0] != n:
                fail(owner, f"frames[{t}]['{name}']", f"{values.shape[0]} values",
                     f"must have one value per box ({n})")
        embeddings = frame.get("embeddings")
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype="float64")
            if embeddings.size == 0 and embeddings.ndim != 2:
                embeddings = embeddings.reshape(0, 0)
            if embeddings.ndim != 2 or embeddings.shape[0] != n:
                fail(owner, f"frames[{t}]['embeddings']", f"array of shape {embeddings.shape}",
                     f"must have shape ({n}, D)")
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = np.divide(embeddings, norms, out=np.zeros_like(embeddings),
                                   where=norms > 0)
        parsed.append({"boxes": boxes, "scores": scores, "labels": labels,
                       "embeddings": embeddings})
    return parsed


def associate(frames, *, reverse=False, match_threshold=0.5, iou_weight=0.5, memory=5,
              min_score=0.0, new_track_score=0.5, embedding_momentum=0.5):
    """Link per-frame detections into tracklets online (one pass, forward or backward).

    A buffer keeps every tracklet with its last box and a running embedding; a tracklet last
    matched at processing step s stays matchable up to step s + ``memory``, so gaps of up to
    ``memory - 1`` frames without a detection are bridged. For each frame in processing order:

    1. detections with score < ``min_score`` are ignored (id -1);
    2. each (detection i, buffered tracklet j) pair gets the affinity
       ``A_ij = (1 - iou_weight) · cos(e_i, ē_j) + iou_weight · IoU(b_i, b_j)``
       (``A_ij = IoU`` when the frame has no embeddings);
    3. greedy matching: pairs are taken by decreasing affinity while both are free and
       ``A_ij >= match_threshold`` (deterministic; ties by detection, then tracklet order);
    4. a matched detection continues its tracklet: its box replaces the last box, and
       ``ē <- normalise(m ē + (1 - m) e_i)`` with ``m = embedding_momentum``;
    5. an unmatched detection starts a new tracklet only if its score >=
       ``new_track_score``, otherwise it stays unassigned (-1): weak detections may extend
       a tracklet but not start one, as in two-threshold trackers;
    6. tracklets whose last match is more than ``memory`` steps back leave the buffer.

    Labels do not block a match (YouTubeVOS 2021 VIS report, 3.5.4: the label consistency
    criterion is relaxed, so a misclassified frame does not break a track; see :func:`vote_label`).

    Args:
        frames: list of per-frame dicts (module docstring).
        reverse: process the frames from last to first (the backward pass).
        match_threshold: minimal affinity in [0, 1] for a match (cosine can be negative,
            so the affinity lies in [-1, 1]).
        iou_weight: weight of the box IoU in the affinity, in [0, 1].
        memory: steps a tracklet stays matchable after its last match (>= 1; 1 = only
            the next frame).
        min_score: detections below it are ignored.
        new_track_score: score needed to start a tracklet.
        embedding_momentum: m above, in [0, 1).

    Returns:
        list (one per frame, in the input's order) of int64 arrays of tracklet ids per
        detection, -1 for detections left out. Ids are 0, 1, ... in order of creation.

    Example:
        Two objects; the second is missed in frame 1 and found again in frame 2:

        >>> import numpy as np
        >>> frames = [
        ...     {"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), "labels": np.array([1, 2])},
        ...     {"boxes": np.array([[1, 1, 11, 11]]), "labels": np.array([1])},
        ...     {"boxes": np.array([[2, 2, 12, 12], [51, 51, 61, 61]]), "labels": np.array([1, 2])}]
        >>> from keras_seg_extras.video import associate
        >>> associate(frames)
        [array([0, 1]), array([0]), array([0, 1])]
    """
    owner = "associate"
    check_number(owner, "match_threshold", match_threshold, minimum=-1, maximum=1)
    check_number(owner, "iou_weight", iou_weight, minimum=0, maximum=1)
    memory = check_number(owner, "memory", memory, minimum=1, integer=True)
    check_number(owner, "min_score", min_score, minimum=0, maximum=1)
    check_number(owner, "new_track_score", new_track_score, minimum=0, maximum=1)
    check_number(owner, "embedding_momentum", embedding_momentum, minimum=0, maximum=1,
                 max_inclusive=False)
    parsed = _frame_arrays(owner, frames)
    order = range(len(parsed) - 1, -1, -1) if reverse else range(len(parsed))
    ids = [np.full(f["boxes"].shape[0], -1, dtype="int64") for f in parsed]
    buffer = []  # dicts: id, box, embedding, last (processing step)
    next_id = 0
    for step, t in enumerate(order):
        frame = parsed[t]
        buffer = [track for track in buffer if step - track["last"] <= memory]
        active = np.flatnonzero(frame["scores"] >= min_score)
        pairs = []
        if active.size and buffer:
            ious = box_iou(frame["boxes"][active], np.stack([tr["box"] for tr in buffer]))
            affinity = ious
            track_embeddings = [tr["embedding"] for tr in buffer]
            if frame["embeddings"] is not None and all(e is not None for e in track_embeddings):
                cosine = frame["embeddings"][active] @ np.stack(track_embeddings).T
                affinity = (1.0 - iou_weight) * cosine + iou_weight * ious
            for a in range(active.size):
                for j in range(len(buffer)):
                    if affinity[a, j] >= match_threshold:
                        pairs.append((-affinity[a, j], a, j))
        pairs.sort()
        used_detection, used_track = set(), set()
        for _, a, j in pairs:
            if a in used_detection or j in used_track:
                continue
            used_detection.add(a)
            used_track.add(j)
            i = active[a]
            track = buffer[j]
            ids[t][i] = track["id"]
            track["box"] = frame["boxes"][i]
            track["last"] = step
            if frame["embeddings"] is not None:
                if track["embedding"] is None:
                    track["embedding"] = frame["embeddings"][i]
                else:
                    mixed = (embedding_momentum * track["embedding"]
                             + (1.0 - embedding_momentum) * frame["embeddings"][i])
                    norm = np.linalg.norm(mixed)
                    track["embedding"] = mixed / norm if norm > 0 else mixed
        for a in range(active.size):
            i = active[a]
            if a in used_detection or frame["scores"][i] < new_track_score:
                continue
            ids[t][i] = next_id
            embedding = None if frame["embeddings"] is None else frame["embeddings"][i]
            buffer.append({"id": next_id, "box": frame["boxes"][i], "embedding": embedding,
                           "last": step})
            next_id += 1
    return ids


def vote_label(labels, scores=None):
    """The label of a track by voting (YouTubeVOS 2021 VIS report, section 3.5.4).

    Without scores: the most frequent label. With scores: the label with the largest sum
    of detection scores (score-weighted vote). Ties go to the larger count, then the larger
    score sum, then the smaller label, so the result is deterministic.

    Args:
        labels: (n,) int labels of a track's detections (n >= 1).
        scores: None or (n,) scores.

    Returns:
        int label.

    Example:
        >>> from keras_seg_extras.video import vote_label
        >>> vote_label([3, 3, 5])
        3
        >>> vote_label([3, 3, 5], [0.2, 0.2, 0.9])
        5
    """
    labels = np.asarray(labels, dtype="int64").reshape(-1)
    if labels.size == 0:
        fail("vote_label", "labels", [], "must hold at least one label")
    weights = np.ones(labels.size) if scores is None else np.asarray(scores, "float64").reshape(-1)
    if weights.shape != labels.shape:
        fail("vote_label", "scores", f"{weights.size} scores",
             f"must have one score per label ({labels.size})")
    candidates = np.unique(labels)
    counts = np.array([(labels == c).sum() for c in candidates])
    sums = np.array([weights[labels == c].sum() for c in candidates])
    primary = counts if scores is None else sums
    secondary = sums if scores is None else counts
    best = sorted(range(candidates.size),
                  key=lambda k: (-primary[k], -secondary[k], candidates[k]))[0]
    return int(candidates[best])


def _tracklets_from_ids(frames, ids):
    """Group detections by tracklet id: ``{id: {"frames": (n,), "detections": (n,)}}``.

    A tracklet has at most one detection per frame (the association guarantees it).
    """
    tracklets = {}
    for t, frame_ids in enumerate(ids):
        for i, track_id in enumerate(np.asarray(frame_ids).reshape(-1)):
            if track_id < 0:
                continue
            entry = tracklets.setdefault(int(track_id), {"frames": [], "detections": []})
            entry["frames"].append(t)
            entry["detections"].append(i)
    return {k: {"frames": np.asarray(v["frames"], "int64"),
                "detections": np.asarray(v["detections"], "int64")}
            for k, v in tracklets.items()}


def _mean_common_iou(parsed, first, second):
    """Mean box IoU of two tracklets over the frames where both have a detection.

    Returns ``(mean_iou, common_frame_count)``; the mean is 0 when they share no frame.
    """
    where_second = dict(zip(second["frames"].tolist(), second["detections"].tolist()))
    values = []
    for t, i in zip(first["frames"].tolist(), first["detections"].tolist()):
        if t in where_second:
            boxes = parsed[t]["boxes"]
            values.append(box_iou(boxes[i][None], boxes[where_second[t]][None])[0, 0])
    return (float(np.mean(values)) if values else 0.0), len(values)


def merge_tracklets(frames, forward_ids, backward_ids, *, merge_iou=0.5, min_common_frames=1,
                    score_weighted_vote=False):
    """BiTrack merge of forward and backward tracklets into final tracks.

    From the YouTubeVOS 2021 VIS report, section 3.4.

    A forward tracklet F and a backward tracklet B are linked when they share at least
    ``min_common_frames`` frames (frames where both have a detection: the paper's "valid
    frames") and the mean IoU of their boxes over those frames is > ``merge_iou``. Linked
    tracklets form connected components (union-find); each component is one final track
    holding the union of its tracklets' detections. Tracklets linked to nothing stay
    tracks of their own, from either direction.

    A detection belongs to one forward and one backward tracklet; when those end up in
    different tracks, it goes to the track with more frames (ties: the one holding its
    forward tracklet). Where a track holds two detections of one frame, the higher-scored
    one is kept. Tracks are then labelled by :func:`vote_label`.

    Args:
        frames: the per-frame dicts both passes used.
        forward_ids, backward_ids: outputs of :func:`associate` (forward and reverse).
        merge_iou: the threshold on the mean IoU, in [0, 1).
        min_common_frames: frames two tracklets must share to be compared (>= 1).
        score_weighted_vote: weight the label vote by detection scores.

    Returns:
        list of tracks sorted by first frame, each a dict: ``frames`` (n,), ``detections``
        (n,) (index in the frame), ``boxes`` (n, 4), ``scores`` (n,), ``labels`` (n,),
        ``label`` (voted), ``score`` (mean detection score), ``sources`` (list of
        ``("forward" | "backward", tracklet id)``).

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.video import associate, merge_tracklets
        >>> frames = [{"boxes": np.array([[0, 0, 10, 10]])}, {"boxes": np.array([[1, 1, 11, 11]])}]
        >>> tracks = merge_tracklets(frames, associate(frames), associate(frames, reverse=True))
        >>> len(tracks), tracks[0]["frames"], tracks[0]["sources"]
        (1, array([0, 1]), [('forward', 0), ('backward', 0)])
    """
    owner = "merge_tracklets"
    check_number(owner, "merge_iou", merge_iou, minimum=0, maximum=1, max_inclusive=False)
    min_common_frames = check_number(owner, "min_common_frames", min_common_frames, minimum=1,
                                     integer=True)
    parsed = _frame_arrays(owner, frames)
    for name, ids in (("forward_ids", forward_ids), ("backward_ids", backward_ids)):
        if len(ids) != len(parsed) or any(np.asarray(ids[t]).reshape(-1).shape[0]
                                          != parsed[t]["boxes"].shape[0]
                                          for t in range(len(parsed))):
            fail(owner, name, f"{len(ids)} frames", "must give one id per detection of every "
                                                    "frame, like associate() returns")
    forward = _tracklets_from_ids(parsed, forward_ids)
    backward = _tracklets_from_ids(parsed, backward_ids)
    nodes = [("forward", k) for k in sorted(forward)] + [("backward", k) for k in sorted(backward)]
    index = {node: n for n, node in enumerate(nodes)}
    parent = list(range(len(nodes)))

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for f_id, f_track in forward.items():
        for b_id, b_track in backward.items():
            mean, common = _mean_common_iou(parsed, f_track, b_track)
            if common >= min_common_frames and mean > merge_iou:
                a, b = find(index[("forward", f_id)]), find(index[("backward", b_id)])
                if a != b:
                    parent[max(a, b)] = min(a, b)

    components = {}
    for node in nodes:
        components.setdefault(find(index[node]), []).append(node)
    sources = {"forward": forward, "backward": backward}
    frame_sets = {root: set() for root in components}
    for root, members in components.items():
        for direction, k in members:
            frame_sets[root].update(sources[direction][k]["frames"].tolist())

    # Each detection goes to exactly one component.
    owner_of = {}
    for t in range(len(parsed)):
        for i in range(parsed[t]["boxes"].shape[0]):
            candidates = []
            f_id, b_id = int(forward_ids[t][i]), int(backward_ids[t][i])
            if f_id >= 0:
                candidates.append((find(index[("forward", f_id)]), 0))
            if b_id >= 0:
                candidates.append((find(index[("backward", b_id)]), 1))
            if candidates:
                root = sorted(candidates, key=lambda c: (-len(frame_sets[c[0]]), c[1]))[0][0]
                owner_of[(t, i)] = root

    tracks = []
    for root, members in components.items():
        chosen = {}
        for (t, i), r in owner_of.items():
            if r != root:
                continue
            if t not in chosen or parsed[t]["scores"][i] > parsed[t]["scores"][chosen[t]]:
                chosen[t] = i
        if not chosen:
            continue
        frame_list = sorted(chosen)
        detections = np.asarray([chosen[t] for t in frame_list], "int64")
        boxes = np.stack([parsed[t]["boxes"][chosen[t]] for t in frame_list])
        scores = np.asarray([parsed[t]["scores"][chosen[t]] for t in frame_list])
        labels = np.asarray([parsed[t]["labels"][chosen[t]] for t in frame_list], "int64")
        tracks.append({
            "frames": np.asarray(frame_list, "int64"),
            "detections": detections,
            "boxes": boxes,
            "scores": scores,
            "labels": labels,
            "label": vote_label(labels, scores if score_weighted_vote else None),
            "score": float(scores.mean()),
            "sources": members,
        })
    tracks.sort(key=lambda tr: (int(tr["frames"][0]), int(tr["detections"][0])))
    return tracks


def bidirectional_tracks(frames, *, merge_iou=0.5, min_common_frames=1,
                         score_weighted_vote=False, **association):
    """BiTrack end to end: :func:`associate` forward and backward, then :func:`merge_tracklets`.

    Args:
        frames: list of per-frame dicts (module docstring).
        merge_iou, min_common_frames, score_weighted_vote: see :func:`merge_tracklets`.
        **association: options of :func:`associate` (match_threshold, iou_weight, memory,
            min_score, new_track_score, embedding_momentum), used by both passes.

    Returns:
        the list of tracks of :func:`merge_tracklets`.

    Example:
        Two objects; the second is missed in frame 1:

        >>> import numpy as np
        >>> frames = [
        ...     {"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), "labels": np.array([1, 2])},
        ...     {"boxes": np.array([[1, 1, 11, 11]]), "labels": np.array([1])},
        ...     {"boxes": np.array([[2, 2, 12, 12], [51, 51, 61, 61]]), "labels": np.array([1, 2])}]
        >>> from keras_seg_extras.video import bidirectional_tracks
        >>> tracks = bidirectional_tracks(frames, merge_iou=0.5, memory=3)
        >>> [(track["label"], track["frames"].tolist()) for track in tracks]
        [(1, [0, 1, 2]), (2, [0, 2])]
    """
    forward = associate(frames, reverse=False, **association)
    backward = associate(frames, reverse=True, **association)
    return merge_tracklets(frames, forward, backward, merge_iou=merge_iou,
                           min_common_frames=min_common_frames,
                           score_weighted_vote=score_weighted_vote)
