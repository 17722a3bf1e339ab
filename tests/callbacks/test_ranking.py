"""ValidationRankingScores: the epoch logs hold the validation LRAP and mAP of the model."""

import csv

import keras
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, label_ranking_average_precision_score

from keras_seg_extras.callbacks import ValidationRankingScores, ranking_scores


def test_logs_hold_the_scores_of_the_final_predictions(rng, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    x = rng.normal(size=(12, 4)).astype("float32")
    y = rng.choice([0.0, 0.25, 1.0], size=(12, 3)).astype("float32")
    y[0] = 1.0  # every class has a positive
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    callback = ValidationRankingScores(x, y, batch_size=5, label="run")
    log = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=2, verbose=0,
                        callbacks=[callback, keras.callbacks.CSVLogger(str(log))])
    scores = model.predict(x, verbose=0)
    relevant = y >= 0.5
    lrap = label_ranking_average_precision_score(relevant, scores)
    mean_ap = np.mean([average_precision_score(relevant[:, c], scores[:, c]) for c in range(3)])
    assert history.history["val_lrap"][-1] == pytest.approx(lrap, abs=1e-6)
    assert history.history["val_map"][-1] == pytest.approx(mean_ap, abs=1e-6)
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[-1]["val_map"]) == pytest.approx(mean_ap, abs=1e-6)
    assert "[run] epoch 2: val LRAP" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"ValidationRankingScores: `y`.*\(N, C\)"):
        ValidationRankingScores(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="ValidationRankingScores: `batch_size`"):
        ValidationRankingScores(np.zeros((3, 2)), np.zeros((3, 2)), batch_size=0)


def test_ranking_scores_against_scikit_learn(rng):
    y = rng.choice([0.0, 0.5, 1.0], size=(10, 4))
    y[0] = 1.0
    scores = rng.normal(size=(10, 4))
    lrap, mean_ap = ranking_scores(y, scores)
    relevant = y >= 0.5
    assert lrap == pytest.approx(label_ranking_average_precision_score(relevant, scores), abs=1e-6)
    assert mean_ap == pytest.approx(np.mean([average_precision_score(relevant[:, c], scores[:, c])
                                             for c in range(4)]), abs=1e-6)
    with pytest.raises(ValueError, match=r"ranking_scores: `y_true`.*\(N, C\)"):
        ranking_scores(y[0], scores[0])
