"""Clip-level ranking from a frame classifier.

From Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020" (TRECVID 2020
notebook paper, 2020), section 2.5.

Pipeline: sample frames from each shot clip at a chosen rate (the paper: 10 fps, with
ffmpeg; here with OpenCV, no ffmpeg binary needed), predict per-class probabilities for the
frames in batches, take the maximum over a clip's frames as the clip's score per class,
rank the clips of each class by that score and keep the top k. Several models' clip scores
can be fused with weights (the paper's 2:1 and 5:1 fusions of table 3), and a ranking is
evaluated with average precision at k.

OpenCV is imported inside the functions that read video, so importing the package does not
need it (install ``opencv-python-headless``).
"""

import numpy as np

from keras_seg_extras._common import check_number, check_vector, fail


def read_frames(path, fps=10.0, size=None, max_frames=None):
    """Read frames of a video file at (about) ``fps`` frames per second, with OpenCV.

    Frames are picked on the video's own time line: frame i (time i / native_fps) is kept
    when it is the first frame at or after the next sampling time k / fps. With ``fps`` at
    or above the native rate every frame is kept.

    Args:
        path: video file readable by OpenCV (e.g. MJPG .avi, MP4 where the build supports it).
        fps: sampling rate in frames per second, > 0.
        size: optional (height, width) to resize each frame to.
        max_frames: optional limit on the number of frames returned.

    Returns:
        uint8 array (N, H, W, 3), RGB.

    Raises:
        ValueError: the file cannot be opened, reports no frame rate, or has no frame.

    Example:
        A 2-second clip at 25 fps written with OpenCV, read back at 5 fps:

        >>> import os, tempfile
        >>> import cv2, numpy as np
        >>> from keras_seg_extras.video import read_frames
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "clip.avi")
        ...     writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
        ...     for t in range(50):
        ...         _ = writer.write(np.full((24, 32, 3), 5 * t, np.uint8))
        ...     writer.release()
        ...     frames = read_frames(path, fps=5, size=(16, 16))
        >>> frames.shape, frames.dtype
        ((10, 16, 16, 3), dtype('uint8'))
    """
    import cv2

    owner = "read_frames"
    fps = check_number(owner, "fps", fps, minimum=0.0, min_inclusive=False)
    if max_frames is not None:
        check_number(owner, "max_frames", max_frames, minimum=1, integer=True)
    if size is not None and (len(size) != 2 or any(int(s) < 1 for s in size)):
        fail(owner, "size", size, "must be (height, width) with positive entries")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            fail(owner, "path", str(path), "must be a video file OpenCV can open")
        native = capture.get(cv2.CAP_PROP_FPS)
        if not native or not np.isfinite(native) or native <= 0:
            fail(owner, "path", str(path), "must report a frame rate (CAP_PROP_FPS)")
        frames = []
        step = 1.0 / fps
        next_time = 0.0
        index = 0
        while max_frames is None or len(frames) < max_frames:
            if not capture.grab():
                break
            time = index / native
            index += 1
            if time + 1e-9 < next_time:
                continue
            ok, frame = capture.retrieve()
            if not ok:
                break
            while next_time <= time + 1e-9:
                next_time += step
            if size is not None:
                frame = cv2.resize(frame, (int(size[1]), int(size[0])),
                                   interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        fail(owner, "path", str(path), "must contain at least one readable frame")
    return np.stack(frames)


def predict_frames(model, frames, batch_size=32, preprocess=None):
    """Predict per-class scores for frames in batches.

    Args:
        model: a Keras model (``predict`` is used) or any callable mapping a batch
            (B, H, W, 3) to scores (B, C).
        frames: array (N, H, W, 3).
        batch_size: frames per prediction batch.
        preprocess: optional function applied to each batch before the model (resizing,
            scaling); it receives a NumPy array.

    Returns:
        float32 array (N, C).

    Example:
        A callable stands in for a model (the mean of each frame as its one score):

        >>> import numpy as np
        >>> from keras_seg_extras.video import predict_frames
        >>> frames = np.arange(12, dtype="uint8").reshape(3, 2, 2, 1)
        >>> predict_frames(lambda x: x.mean(axis=(1, 2, 3))[:, None], frames, batch_size=2)
        array([[1.5],
               [5.5],
               [9.5]], dtype=float32)
    """
    owner = "predict_frames"
    batch_size = check_number(owner, "batch_size", batch_size, minimum=1, integer=True)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0:
        fail(owner, "frames", f"array of shape {frames.shape}", "must be (N>0, H, W, channels)")
    outputs = []
    for start in range(0, frames.shape[0], batch_size):
        batch = frames[start:start + batch_size]
        if preprocess is not None:
            batch = preprocess(batch)
        if hasattr(model, "predict"):
            scores = model.predict(batch, batch_size=batch.shape[0], verbose=0)
        else:
            scores = model(batch)
        scores = np.asarray(scores, dtype="float32")
        if scores.ndim != 2 or scores.shape[0] != len(batch):
            fail(owner, "model", f"output of shape {scores.shape}",
                 f"must return (batch, classes) scores for a batch of {len(batch)} frames")
        outputs.append(scores)
    return np.concatenate(outputs, axis=0)


def clip_score(frame_scores):
    """Clip score per class: the maximum over the clip's frames (Okazaki et al. 2020, 2.5).

    Args:
        frame_scores: (N, C) scores of the clip's N frames.

    Returns:
        float32 (C,).

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.video import clip_score
        >>> clip_score(np.array([[0.1, 0.7], [0.6, 0.2]]))  # two frames, two classes
        array([0.6, 0.7], dtype=float32)
    """
    frame_scores = np.asarray(frame_scores, dtype="float32")
    if frame_scores.ndim != 2 or frame_scores.shape[0] == 0:
        fail("clip_score", "frame_scores", f"array of shape {frame_scores.shape}",
             "must be (frames > 0, classes)")
    return frame_scores.max(axis=0)


def clip_scores(model, video_paths, fps=10.0, batch_size=32, size=None, preprocess=None):
    """Score each clip per class: read frames at ``fps``, predict, max over frames.

    Args:
        model: Keras model or callable (see ``predict_frames``).
        video_paths: list of video files, one per clip.
        fps: frame sampling rate.
        batch_size: prediction batch size.
        size: optional (height, width) frame resize.
        preprocess: optional batch function before the model.

    Returns:
        float32 array (num_clips, C).

    Example:
        A callable stands in for a model here (mean brightness as the one "class"):

        >>> import os, tempfile
        >>> import cv2, numpy as np
        >>> from keras_seg_extras.video import clip_scores
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     paths = [os.path.join(folder, f"{name}.avi") for name in ("dark", "bright")]
        ...     for path, level in zip(paths, (40, 200)):
        ...         writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16))
        ...         for _ in range(5):
        ...             _ = writer.write(np.full((16, 16, 3), level, np.uint8))
        ...         writer.release()
        ...     scores = clip_scores(lambda x: x.mean(axis=(1, 2, 3))[:, None] / 255, paths)
        >>> scores.shape, bool(scores[1, 0] > scores[0, 0])
        ((2, 1), True)
    """
    if isinstance(video_paths, (str, bytes)) or len(video_paths) == 0:
        fail("clip_scores", "video_paths", video_paths, "must be a non-empty list of files")
    return np.stack([
        clip_score(predict_frames(model, read_frames(path, fps=fps, size=size),
                                  batch_size=batch_size, preprocess=preprocess))
        for path in video_paths
    ])


def top_k_clips(scores, k):
    """Rank clips per class by score and keep the top k.

    Ties are broken by clip order (the earlier clip first), so the ranking is deterministic.

    Args:
        scores: (num_clips, C) clip scores.
        k: number of clips per class (capped at num_clips).

    Returns:
        int array (C, min(k, num_clips)): for each class, clip indices from best to worst.

    Example:
        >>> top_k_clips(np.array([[0.1, 0.9], [0.8, 0.2]]), k=1)
        array([[1],
               [0]])
    """
    owner = "top_k_clips"
    k = check_number(owner, "k", k, minimum=1, integer=True)
    scores = np.asarray(scores, dtype="float64")
    if scores.ndim != 2 or scores.shape[0] == 0:
        fail(owner, "scores", f"array of shape {scores.shape}", "must be (clips > 0, classes)")
    order = np.argsort(-scores, axis=0, kind="stable")
    return order[:k].T.copy()


def weighted_score_ensemble(scores, weights=None):
    """Score-level fusion: the weighted mean of several models' scores.

    ``fused = Σ_m w_m s_m / Σ_m w_m``. The paper's fusions: ten models averaged with equal
    weights, then fused with another model at 2:1 (``weights=(2, 1)``) or 5:1.

    Args:
        scores: sequence of M arrays of the same shape (e.g. (num_clips, C) each).
        weights: M non-negative weights with a positive sum; equal when None.

    Returns:
        float32 array of the common shape.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.video import weighted_score_ensemble
        >>> weighted_score_ensemble([np.array([[0.2, 0.8]]), np.array([[0.5, 0.5]])],
        ...                         weights=(2, 1))
        array([[0.3, 0.7]], dtype=float32)
    """
    owner = "weighted_score_ensemble"
    if isinstance(scores, np.ndarray):
        scores = list(scores)
    if len(scores) == 0:
        fail(owner, "scores", scores, "must hold at least one score array")
    arrays = [np.asarray(s, dtype="float64") for s in scores]
    for i, array in enumerate(arrays):
        if array.shape != arrays[0].shape:
            fail(owner, "scores", f"array {i} of shape {array.shape}",
                 f"must all have the shape {arrays[0].shape}")
    if weights is None:
        weights = np.ones(len(arrays))
    weights = check_vector(owner, "weights", weights, length=len(arrays), non_negative=True)
    if weights.sum() <= 0:
        fail(owner, "weights", weights.tolist(), "must have a positive sum")
    fused = sum(w * a for w, a in zip(weights, arrays)) / weights.sum()
    return fused.astype("float32")


def average_precision_at_k(scores, relevant, k, by_total_relevant=False):
    """Average precision of the top-k ranked clips for one class.

    Clips are ranked by score (ties by clip order, as in ``top_k_clips``)::

        AP@k = Σ_{i=1..k} P(i) rel(i) / D,   P(i) = (relevant among the first i) / i

    with D = min(k, R) (R: relevant clips in the whole list), so a perfect top-k list
    scores 1; with ``by_total_relevant=True`` D = R, the trec_eval convention TRECVID uses.
    A class with no relevant clip scores 0.

    Args:
        scores: (num_clips,) clip scores for the class.
        relevant: (num_clips,) truth: whether each clip shows the class.
        k: cut-off, >= 1.
        by_total_relevant: divide by R instead of min(k, R).

    Returns:
        float.

    Example:
        The relevant clips are ranked 1st and 3rd; only the first is in the top 2:

        >>> import numpy as np
        >>> from keras_seg_extras.video import average_precision_at_k
        >>> average_precision_at_k(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1]), k=2)
        0.5
    """
    owner = "average_precision_at_k"
    k = check_number(owner, "k", k, minimum=1, integer=True)
    scores = np.asarray(scores, dtype="float64")
    relevant = np.asarray(relevant).astype(bool)
    if scores.ndim != 1 or relevant.shape != scores.shape:
        fail(owner, "relevant", f"array of shape {relevant.shape}",
             f"must match scores of shape {scores.shape} (both one-dimensional)")
    total = int(relevant.sum())
    if total == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")[:k]
    hits = relevant[order].astype("float64")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    denominator = total if by_total_relevant else min(k, total)
    return float(np.sum(precision * hits) / denominator)


def mean_average_precision_at_k(scores, relevant, k, by_total_relevant=False):
    """Mean of ``average_precision_at_k`` over the classes that have a relevant clip.

    Args:
        scores: (num_clips, C) clip scores.
        relevant: (num_clips, C) truth.
        k: cut-off.
        by_total_relevant: see ``average_precision_at_k``.

    Returns:
        ``(mean, per_class)``: float, and a (C,) array with NaN for classes without a
        relevant clip.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.video import mean_average_precision_at_k
        >>> scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.1, 0.3]])  # 3 clips, 2 classes
        >>> relevant = np.array([[1, 0], [0, 1], [1, 0]])
        >>> mean_average_precision_at_k(scores, relevant, k=2)
        (0.75, array([0.5, 1. ]))
    """
    scores = np.asarray(scores, dtype="float64")
    relevant = np.asarray(relevant).astype(bool)
    if scores.ndim != 2 or relevant.shape != scores.shape:
        fail("mean_average_precision_at_k", "relevant", f"array of shape {relevant.shape}",
             f"must match scores of shape {scores.shape} (clips, classes)")
    per_class = np.array([
        average_precision_at_k(scores[:, c], relevant[:, c], k, by_total_relevant)
        if relevant[:, c].any() else np.nan
        for c in range(scores.shape[1])
    ])
    valid = ~np.isnan(per_class)
    return (float(per_class[valid].mean()) if valid.any() else 0.0), per_class
