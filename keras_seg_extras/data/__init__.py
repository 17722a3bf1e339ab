"""keras_seg_extras.data"""

from keras_seg_extras.data.class_sampler import (  # noqa: E402,F401
    class_sampled_dataset,
    index_class_presence,
    indexed_loader,
)
