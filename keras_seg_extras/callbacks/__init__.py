"""keras_seg_extras.callbacks: SWA, snapshot ensembles and the stochastic TCE sampler."""

from keras_seg_extras.callbacks.swa import (  # noqa: F401
    StochasticWeightAveraging,
    recompute_batchnorm_statistics,
)
from keras_seg_extras.callbacks.best_weights import (  # noqa: F401
    WeightsCheckpoint,
    load_weights_npz,
    save_weights_npz,
)
from keras_seg_extras.callbacks.snapshot import (  # noqa: F401
    SnapshotEnsemble,
    load_snapshot_ensemble,
)
from keras_seg_extras.callbacks.tce_sampler import StochasticTCESampler  # noqa: F401

# Best-epoch and end-of-training weight files (callbacks/best_weights.py); the other modules'
# names are listed by the branch that adds __all__ to the whole package.
__all__ = ["WeightsCheckpoint", "load_weights_npz", "save_weights_npz"]
