"""keras_seg_extras.inference"""

from keras_seg_extras.inference import boxes, redundancy, tracking, video  # noqa: F401
from keras_seg_extras.inference.boxes import (box_iou, fuse_boxes, mask_iou,  # noqa: F401
                                              mask_scored_scores)
from keras_seg_extras.inference.redundancy import (keep_uniform_frames,  # noqa: F401
                                                   object_mean_ious, redundancy_histogram,
                                                   uniform_frame_indices)
from keras_seg_extras.inference.tracking import (associate, bidirectional_tracks,  # noqa: F401
                                                 merge_tracklets, vote_label)
"""Inference-time tools: test-time augmentation, post-processing, ensembles."""

from keras_seg_extras.inference.ensemble import WeightedEnsemble, ensemble  # noqa: F401
from keras_seg_extras.inference.postprocess import (  # noqa: F401
    apply_empty_rule,
    postprocess,
    remove_small_components,
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
