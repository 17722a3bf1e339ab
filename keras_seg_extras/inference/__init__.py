"""keras_seg_extras.inference: test-time augmentation, post-processing and its search, ensembles.

The video-instance tools (tracking, box fusion, clip ranking, frame redundancy) are in
:mod:`keras_seg_extras.video`.
"""

from keras_seg_extras.inference.ensemble import WeightedEnsemble, ensemble
from keras_seg_extras.inference.image_scores import mask_dice_iou, per_image_dice_iou
from keras_seg_extras.inference.postprocess import (apply_empty_rule, apply_image_gate,
                                                    label_components, postprocess,
                                                    remove_small_components)
from keras_seg_extras.inference.postprocess_search import (PostprocessingSearch,
                                                           postprocess_at_size,
                                                           resize_probabilities, scale_min_area)
from keras_seg_extras.inference.serving import predict_stream, served_classifier, served_model
from keras_seg_extras.inference.tta import TestTimeAugmentation, with_tta

__all__ = [
    "apply_empty_rule", "apply_image_gate", "ensemble", "label_components", "mask_dice_iou",
    "per_image_dice_iou", "postprocess", "postprocess_at_size", "PostprocessingSearch",
    "predict_stream", "remove_small_components", "resize_probabilities", "scale_min_area",
    "served_classifier", "served_model", "TestTimeAugmentation", "WeightedEnsemble", "with_tta",
]
