"""Inference-time tools: test-time augmentation, post-processing, ensembles."""

from keras_seg_extras.inference.ensemble import WeightedEnsemble, ensemble  # noqa: F401
from keras_seg_extras.inference.postprocess import (  # noqa: F401
    apply_empty_rule,
    postprocess,
    remove_small_components,
)
from keras_seg_extras.inference.tta import TestTimeAugmentation, with_tta  # noqa: F401
