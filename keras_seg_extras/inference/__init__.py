"""keras_seg_extras.inference: TTA, post-processing, ensembles, video and tracking helpers."""

from keras_seg_extras.inference import boxes, redundancy, tracking, video  # noqa: F401
from keras_seg_extras.inference.boxes import (  # noqa: F401
    box_iou,
    fuse_boxes,
    mask_iou,
    mask_scored_scores,
)
from keras_seg_extras.inference.ensemble import WeightedEnsemble, ensemble  # noqa: F401
from keras_seg_extras.inference.postprocess import (  # noqa: F401
    apply_empty_rule,
    postprocess,
    remove_small_components,
)
from keras_seg_extras.inference.postprocess_search import (  # noqa: F401
    PostprocessingSearch,
    postprocess_at_size,
    resize_probabilities,
    scale_min_area,
)
from keras_seg_extras.inference.redundancy import (  # noqa: F401
    keep_uniform_frames,
    object_mean_ious,
    redundancy_histogram,
    uniform_frame_indices,
)
from keras_seg_extras.inference.tracking import (  # noqa: F401
    associate,
    bidirectional_tracks,
    merge_tracklets,
    vote_label,
)
from keras_seg_extras.inference.tta import TestTimeAugmentation, with_tta  # noqa: F401
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
