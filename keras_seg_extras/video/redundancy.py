"""Frame-redundancy analysis of video data sets (NumPy).

From "1st Place Solution for YouTubeVOS Challenge 2021: Video Instance Segmentation"
(technical report, 2021), section 3.1 and Fig. 2.

The paper measures how much consecutive frames repeat each other: for each object, the IoU of
its boxes in consecutive frames, averaged over the video; a histogram dominated by values
above 0.8 means objects barely move, and training on a few uniformly spaced frames per video
is almost as good as on all of them (Fig. 2b: 5 frames ≈ all frames).
"""

import numpy as np

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.video.boxes import _as_boxes, box_iou


def object_mean_ious(video_ids, frame_indices, track_ids, boxes, *, adjacent_only=False):
    """Each object's mean IoU between its boxes in consecutive frames.

    For an object (video, track) seen at frames t_1 < t_2 < ... < t_n, the value is
    ``mean_k IoU(b_{t_k}, b_{t_{k+1}})`` over its successive appearances (with
    ``adjacent_only=True`` only pairs with t_{k+1} = t_k + 1 count). Objects with no pair
    have no value and are left out of the result.

    Args:
        video_ids: (N,) video of each box (any hashable values: ints or strings).
        frame_indices: (N,) int frame index of each box.
        track_ids: (N,) object id of each box (unique within its video).
        boxes: (N, 4) ``(x1, y1, x2, y2)``.
        adjacent_only: count only pairs of adjacent frames.

    Returns:
        dict ``{(video_id, track_id): mean IoU}``.

    Raises:
        ValueError: lengths differ, or an object has two boxes in one frame.

    Example:
        One object in three frames; its box moves by half its width in the last one:

        >>> import numpy as np
        >>> from keras_seg_extras.video import object_mean_ious
        >>> boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10]])
        >>> {key: round(value, 4) for key, value in
        ...  object_mean_ious(["a", "a", "a"], [0, 1, 2], [7, 7, 7], boxes).items()}
        {('a', 7): 0.6667}
    """
    owner = "object_mean_ious"
    boxes = _as_boxes(owner, "boxes", boxes)
    videos = np.asarray(video_ids).reshape(-1)
    frames = np.asarray(frame_indices).reshape(-1)
    tracks = np.asarray(track_ids).reshape(-1)
    n = boxes.shape[0]
    for name, values in (("video_ids", videos), ("frame_indices", frames),
                         ("track_ids", tracks)):
        if values.shape[0] != n:
            fail(owner, name, f"{values.shape[0]} values", f"must have one value per box ({n})")
    objects = {}
    for k in range(n):
        objects.setdefault((videos[k].item(), tracks[k].item()), []).append(k)
    result = {}
    for key, rows in objects.items():
        rows = sorted(rows, key=lambda r: frames[r])
        times = frames[rows]
        if np.any(np.diff(times) == 0):
            fail(owner, "frame_indices", f"object {key} at frame {times[1:][np.diff(times) == 0][0]}",
                 "must not repeat a frame for one object")
        values = []
        for a, b in zip(rows[:-1], rows[1:]):
            if adjacent_only and frames[b] - frames[a] != 1:
                continue
            values.append(box_iou(boxes[a][None], boxes[b][None])[0, 0])
        if values:
            result[key] = float(np.mean(values))
    return result


def redundancy_histogram(mean_ious, path=None, *, bins=10, high=0.8, title=None):
    """Histogram of per-object mean consecutive-frame IoUs, as numbers and optionally a PNG.

    Args:
        mean_ious: the dict of :func:`object_mean_ious` or a sequence of values in [0, 1].
        path: None, or a PNG file to write (matplotlib's Agg canvas, imported here; the
            global backend and pyplot are not touched).
        bins: number of equal bins over [0, 1].
        high: the "overlapping" threshold whose share is reported (the paper uses 0.8).
        title: plot title.

    Returns:
        dict with ``values`` (sorted array), ``counts`` (bins,), ``edges`` (bins + 1,),
        ``fraction_above`` (share of objects with mean IoU > ``high``), ``mean``, ``median``
        and ``path``.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.video import redundancy_histogram
        >>> summary = redundancy_histogram(np.array([0.95, 0.9, 0.5, 0.2]), bins=4)
        >>> summary["counts"], summary["fraction_above"]
        (array([1, 0, 1, 2]), 0.5)
    """
    owner = "redundancy_histogram"
    values = np.asarray(list(mean_ious.values()) if isinstance(mean_ious, dict) else mean_ious,
                        dtype="float64").reshape(-1)
    if values.size and (not np.all(np.isfinite(values)) or values.min() < 0
                        or values.max() > 1):
        fail(owner, "mean_ious", values[:5].tolist(), "must hold IoUs in [0, 1]")
    bins = check_number(owner, "bins", bins, minimum=1, integer=True)
    check_number(owner, "high", high, minimum=0, maximum=1)
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    summary = {
        "values": np.sort(values),
        "counts": counts,
        "edges": edges,
        "fraction_above": float(np.mean(values > high)) if values.size else 0.0,
        "mean": float(values.mean()) if values.size else float("nan"),
        "median": float(np.median(values)) if values.size else float("nan"),
        "path": None,
    }
    if path is not None:
        # The Agg canvas is attached to this figure only: no pyplot, no global backend change.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(5, 3.5), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot(1, 1, 1)
        axes.hist(values, bins=edges, color="#4c72b0", edgecolor="white")
        axes.axvline(high, color="#c44e52", linestyle="--",
                     label=f"{100 * summary['fraction_above']:.0f}% above {high:g}")
        axes.set_xlabel("mean IoU of an object's boxes in consecutive frames")
        axes.set_ylabel("objects")
        axes.set_title(title or f"Frame redundancy ({values.size} objects)")
        axes.legend(loc="upper left")
        figure.tight_layout()
        figure.savefig(str(path), format="png")
        summary["path"] = str(path)
    return summary


def uniform_frame_indices(num_frames, k):
    """``k`` uniformly spaced frame indices of a video of ``num_frames`` frames.

    ``round(linspace(0, num_frames - 1, k))``: the first and last frames are kept when
    k >= 2, the middle frame when k = 1; all frames when k >= num_frames.

    Example:
        >>> from keras_seg_extras.video import uniform_frame_indices
        >>> uniform_frame_indices(10, 3)  # 4.5 rounds half to even
        array([0, 4, 9])
    """
    num_frames = check_number("uniform_frame_indices", "num_frames", num_frames, minimum=0,
                              integer=True)
    k = check_number("uniform_frame_indices", "k", k, minimum=1, integer=True)
    if k >= num_frames:
        return np.arange(num_frames, dtype="int64")
    if k == 1:
        return np.asarray([(num_frames - 1) // 2], dtype="int64")
    return np.round(np.linspace(0, num_frames - 1, k)).astype("int64")


def keep_uniform_frames(frames_by_video, k):
    """Keep ``k`` uniformly spaced frames of every video.

    Args:
        frames_by_video: dict ``{video_id: sequence of frame ids (file names, indices...)}``
            in temporal order.
        k: frames to keep per video (all of a shorter video).

    Returns:
        dict ``{video_id: list of the kept frame ids}``.

    Example:
        >>> from keras_seg_extras.video import keep_uniform_frames
        >>> keep_uniform_frames({"v1": [f"{i:05d}.jpg" for i in range(36)]}, 5)
        {'v1': ['00000.jpg', '00009.jpg', '00018.jpg', '00026.jpg', '00035.jpg']}
    """
    if not isinstance(frames_by_video, dict):
        fail("keep_uniform_frames", "frames_by_video", type(frames_by_video).__name__,
             "must be a dict {video_id: list of frames}")
    kept = {}
    for video, frame_list in frames_by_video.items():
        frame_list = list(frame_list)
        kept[video] = [frame_list[i] for i in uniform_frame_indices(len(frame_list), k)]
    return kept
