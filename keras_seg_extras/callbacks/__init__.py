"""keras_seg_extras.callbacks"""

from keras_seg_extras.callbacks.tce_sampler import StochasticTCESampler  # noqa: E402,F401
