"""AuxiliaryClassLoss and the relabelling of paper 001, Algorithm 1."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_seg_extras as kse
from keras_seg_extras.losses import AuxiliaryClassLoss, auxiliary_class_labels

TARGETS, AUXILIARY = [0, 1, 2], [3, 4]


def _scores(predicted, channels=5, rng=None):
    """Logits whose argmax is ``predicted`` (last axis)."""
    predicted = np.asarray(predicted)
    noise = np.zeros(predicted.shape + (channels,)) if rng is None else \
        rng.normal(size=predicted.shape + (channels,))
    logits = noise.astype("float32")
    np.put_along_axis(logits, predicted[..., None], 10.0, axis=-1)
    return logits


def _sparse_ce(labels, logits):
    """Reference softmax cross-entropy per sample, NumPy."""
    logits = logits.astype("float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def test_relabelling_follows_algorithm_1_on_hand_made_predictions():
    y_true = np.array([0, 2, 7, 9, -1, 40, 8, 1])
    predicted = np.array([4, 0, 3, 4, 4, 1, 2, 3])
    labels = ops.convert_to_numpy(auxiliary_class_labels(
        y_true, _scores(predicted), TARGETS, AUXILIARY, seed=3))
    # Target samples keep their labels whatever the prediction.
    assert labels[0] == 0 and labels[1] == 2 and labels[7] == 1
    # Foreign samples predicted as an auxiliary class take that prediction.
    assert labels[2] == 3 and labels[3] == 4 and labels[4] == 4
    # Foreign samples predicted as a target class get an auxiliary index instead.
    assert labels[5] in AUXILIARY and labels[6] in AUXILIARY


def test_integer_class_counts_and_pixel_maps(rng):
    # target_classes=3 means [0, 3), auxiliary_classes=2 the indices [3, 5).
    y_true = rng.integers(0, 8, size=(2, 6, 7))
    predicted = rng.integers(0, 5, size=(2, 6, 7))
    labels = ops.convert_to_numpy(auxiliary_class_labels(
        y_true[..., None], _scores(predicted, rng=None), 3, 2, seed=0))
    assert labels.shape == (2, 6, 7)
    target = y_true < 3
    np.testing.assert_array_equal(labels[target], y_true[target])
    kept = ~target & (predicted >= 3)
    np.testing.assert_array_equal(labels[kept], predicted[kept])
    replaced = ~target & (predicted < 3)
    assert replaced.any() and np.isin(labels[replaced], [3, 4]).all()


def test_random_indices_are_uniform_and_reproducible_under_a_seed():
    n = 6000
    y_true = np.full(n, 99)
    logits = _scores(np.zeros(n, "int64"))  # every prediction is a target class
    first, second = (AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(True),
                                        TARGETS, AUXILIARY, seed=11) for _ in range(2))
    draws_a = [ops.convert_to_numpy(first.relabel(y_true, logits)) for _ in range(3)]
    draws_b = [ops.convert_to_numpy(second.relabel(y_true, logits)) for _ in range(3)]
    for a, b in zip(draws_a, draws_b):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(draws_a[0], draws_a[1])  # new draws on every call
    other = AuxiliaryClassLoss("sparse_categorical_crossentropy", TARGETS, AUXILIARY, seed=12)
    assert not np.array_equal(ops.convert_to_numpy(other.relabel(y_true, logits)), draws_a[0])
    share = np.mean(draws_a[0] == 3)
    assert abs(share - 0.5) < 5 * np.sqrt(0.25 / n)
    assert set(np.unique(np.concatenate(draws_a))) == {3, 4}


def test_loss_value_equals_base_loss_on_relabelled_targets(rng):
    y_true = np.array([0, 5, 6, 2, 7, 1])
    logits = rng.normal(size=(6, 5)).astype("float32") * 3
    logits[1, 3] = logits[2, 4] = logits[4, 0] = 50.0  # auxiliary, auxiliary, target
    loss = AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              TARGETS, AUXILIARY, seed=5)
    twin = AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              TARGETS, AUXILIARY, seed=5)
    labels = ops.convert_to_numpy(twin.relabel(y_true, logits))
    assert labels[1] == 3 and labels[2] == 4 and labels[4] in AUXILIARY
    expected = _sparse_ce(labels, logits).mean()
    np.testing.assert_allclose(float(loss(y_true, logits)), expected, rtol=1e-5, atol=1e-6)
    # The second call draws anew; the twin's second relabelling gives the same draws.
    weights = rng.random(6).astype("float32")
    weighted = float(loss(y_true, logits, sample_weight=weights))
    labels = ops.convert_to_numpy(twin.relabel(y_true, logits))
    np.testing.assert_allclose(weighted, (_sparse_ce(labels, logits) * weights).sum() / 6,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_give_finite_values_and_gradients(rng, dtype):
    import tensorflow as tf

    y_true = np.array([0, 9, 9, 2])
    logits = tf.Variable(tf.cast(rng.normal(size=(4, 5)) * 100, dtype))
    loss = AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              TARGETS, AUXILIARY, seed=0)
    with tf.GradientTape() as tape:
        value = loss(y_true, logits)
    assert value.dtype == "float32"
    gradient = tape.gradient(value, logits)
    assert np.isfinite(float(value)) and np.all(np.isfinite(gradient.numpy()))


def test_config_round_trip_and_keras_file(tmp_path):
    loss = AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              TARGETS, AUXILIARY, seed=4)
    clone = AuxiliaryClassLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert isinstance(clone.base_loss, keras.losses.SparseCategoricalCrossentropy)
    assert clone.base_loss.from_logits is True

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    model.compile(optimizer="sgd", loss=loss)
    path = tmp_path / "aux.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, kse.losses.AuxiliaryClassLoss)
    assert loaded.loss.target_classes == TARGETS and loaded.loss.auxiliary_classes == AUXILIARY
    assert loaded.loss.seed == 4


def test_trains_inside_model_fit(rng):
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, size=64)
    y[::2] = 17  # half the samples come from the "other" data set, told apart by x[:, 0]
    x[:, 0] = np.where(y == 17, 3.0, -3.0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(5)(inputs))
    loss = AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              3, 2, seed=1)
    state_before = ops.convert_to_numpy(loss.seed_generator.state)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 8 and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert not np.array_equal(ops.convert_to_numpy(loss.seed_generator.state), state_before)
    # Foreign samples end up predicted as auxiliary classes, target samples as targets.
    predicted = model.predict(x, verbose=0).argmax(-1)
    assert np.mean(np.isin(predicted[::2], [3, 4])) > 0.9
    assert np.mean(np.isin(predicted[1::2], [0, 1, 2])) > 0.9


def test_errors_name_the_argument():
    base = keras.losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match=r"AuxiliaryClassLoss: `auxiliary_classes`.*\[2\]"):
        AuxiliaryClassLoss(base, [0, 1, 2], [2, 3])
    with pytest.raises(ValueError, match=r"AuxiliaryClassLoss: `target_classes`.*-1"):
        AuxiliaryClassLoss(base, [-1, 0], 2)
    with pytest.raises(ValueError, match=r"AuxiliaryClassLoss: `auxiliary_classes`.*0"):
        AuxiliaryClassLoss(base, 3, 0)
    with pytest.raises(ValueError, match=r"AuxiliaryClassLoss: `base_loss`"):
        AuxiliaryClassLoss(42, 3, 2)
    loss = AuxiliaryClassLoss(base, 3, 2)
    with pytest.raises(ValueError, match=r"`y_pred`.*more than 4 channels"):
        loss.relabel(np.zeros(2), np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match=r"`y_true`.*not one-hot"):
        loss.relabel(np.zeros((2, 5)), np.zeros((2, 5), "float32"))
