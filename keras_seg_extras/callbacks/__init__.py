"""keras_seg_extras.callbacks: SWA, snapshot ensembles and the stochastic TCE sampler."""

from keras_seg_extras.callbacks.swa import (  # noqa: F401
    StochasticWeightAveraging,
    recompute_batchnorm_statistics,
)
from keras_seg_extras.callbacks.snapshot import (  # noqa: F401
    SnapshotEnsemble,
    load_snapshot_ensemble,
)
from keras_seg_extras.callbacks.tce_sampler import StochasticTCESampler  # noqa: F401
