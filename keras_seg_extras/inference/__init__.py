"""keras_seg_extras.inference: test-time augmentation, post-processing and its search, ensembles.

The video-instance tools (tracking, box fusion, clip ranking, frame redundancy) are in
:mod:`keras_seg_extras.video`.
"""

from keras_seg_extras.inference.ensemble import WeightedEnsemble, ensemble
from keras_seg_extras.inference.postprocess import (apply_empty_rule, postprocess,
                                                    remove_small_components)
from keras_seg_extras.inference.postprocess_search import (PostprocessingSearch,
                                                           postprocess_at_size,
                                                           resize_probabilities, scale_min_area)
from keras_seg_extras.inference.tta import TestTimeAugmentation, with_tta

__all__ = [
    "PostprocessingSearch", "TestTimeAugmentation", "WeightedEnsemble", "apply_empty_rule",
    "ensemble", "postprocess", "postprocess_at_size", "remove_small_components",
    "resize_probabilities", "scale_min_area", "with_tta",
]
