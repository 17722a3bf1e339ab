"""keras_seg_extras.inference: TTA, post-processing, ensembles, video and tracking helpers."""

from keras_seg_extras.inference import boxes, redundancy, tracking, video  # noqa: F401
from keras_seg_extras.inference.boxes import (  # noqa: F401
    box_iou,
    fuse_boxes,
    mask_iou,
    mask_scored_scores,
)
from keras_seg_extras.inference.ensemble import WeightedEnsemble, ensemble  # noqa: F401
from keras_seg_extras.inference.image_scores import mask_dice_iou, per_image_dice_iou  # noqa: F401
from keras_seg_extras.inference.postprocess import (  # noqa: F401
    apply_empty_rule,
    apply_image_gate,
    label_components,
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
from keras_seg_extras.inference.serving import (  # noqa: F401
    predict_stream,
    served_classifier,
    served_model,
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

# Segmentation inference (TTA, ensembles, post-processing and its search, per-image scores);
# the video-instance names above are listed by the branch that moves them.
__all__ = [
    "TestTimeAugmentation",
    "with_tta",
    "WeightedEnsemble",
    "ensemble",
    "served_model",
    "served_classifier",
    "predict_stream",
    "postprocess",
    "remove_small_components",
    "apply_empty_rule",
    "apply_image_gate",
    "label_components",
    "PostprocessingSearch",
    "postprocess_at_size",
    "resize_probabilities",
    "scale_min_area",
    "per_image_dice_iou",
    "mask_dice_iou",
]
