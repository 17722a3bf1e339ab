"""keras_seg_extras.inference"""

from keras_seg_extras.inference import video  # noqa: F401
from keras_seg_extras.inference.video import (  # noqa: F401
    average_precision_at_k,
    clip_score,
    clip_scores,
    mean_average_precision_at_k,
    predict_frames,
    read_frames,
    top_k_clips,
    weighted_score_ensemble,
)
