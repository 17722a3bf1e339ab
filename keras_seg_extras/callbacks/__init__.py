"""keras_seg_extras.callbacks: SWA, snapshot ensembles and the stochastic TCE sampler."""

from keras_seg_extras.callbacks.swa import (
    StochasticWeightAveraging,
    recompute_batchnorm_statistics,
)
from keras_seg_extras.callbacks.snapshot import (
    SnapshotEnsemble,
    load_snapshot_ensemble,
)
from keras_seg_extras.callbacks.tce_sampler import StochasticTCESampler

__all__ = [
    "SnapshotEnsemble", "StochasticTCESampler", "StochasticWeightAveraging",
    "load_snapshot_ensemble", "recompute_batchnorm_statistics",
]
