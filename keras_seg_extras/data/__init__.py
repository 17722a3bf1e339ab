"""keras_seg_extras.data"""

from keras_seg_extras.data.soft_labels import (  # noqa: F401
    soft_labels_from_csv,
    soft_labels_from_votes,
)
