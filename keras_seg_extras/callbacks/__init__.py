"""keras_seg_extras.callbacks: SWA, snapshot ensembles, the stochastic TCE sampler, ranking scores.

``recompute_batchnorm_statistics`` lives in ``kse.training`` (with the other BatchNorm
helpers); the name stays importable here because SWA uses it and earlier code imported it
from ``kse.callbacks``.
"""

from keras_seg_extras.callbacks.best_weights import (WeightsCheckpoint, load_weights_npz,
                                                   save_weights_npz)
from keras_seg_extras.callbacks.ranking import ValidationRankingScores, ranking_scores
from keras_seg_extras.callbacks.snapshot import SnapshotEnsemble, load_snapshot_ensemble
from keras_seg_extras.callbacks.swa import StochasticWeightAveraging, recompute_batchnorm_statistics
from keras_seg_extras.callbacks.tce_sampler import StochasticTCESampler

__all__ = [
    "load_snapshot_ensemble", "load_weights_npz", "ranking_scores",
    "recompute_batchnorm_statistics", "save_weights_npz", "SnapshotEnsemble",
    "StochasticTCESampler", "StochasticWeightAveraging", "ValidationRankingScores",
    "WeightsCheckpoint",
]
