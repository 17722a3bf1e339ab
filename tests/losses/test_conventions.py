"""One convention for every public loss class: strict flags, Keras base config, old names.

Every class of ``keras_seg_extras.losses.__all__`` must appear in ``REQUIRED`` (its required
constructor arguments), so a new loss is checked here as soon as it is exported.
"""

import inspect
import warnings

import keras
import numpy as np
import pytest

from keras_seg_extras import _common
from keras_seg_extras import losses as L

REQUIRED = {
    "AuxiliaryClassLoss": lambda: dict(
        base_loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        target_classes=2, auxiliary_classes=1),
    "BCEDiceLoss": dict,
    "ClassBalancedFocalLoss": lambda: dict(class_counts=[10, 3]),
    "CombinedLoss": lambda: dict(losses=[L.DiceLoss("binary"), L.LovaszHingeLoss()]),
    "DiceLoss": lambda: dict(mode="binary"),
    "DropWorst": lambda: dict(loss=L.SoftFocalLoss()),
    "JaccardLoss": lambda: dict(mode="multiclass"),
    "LocallyAdaptiveLoss": dict,
    "LovaszHingeLoss": dict,
    "LovaszSoftmaxLoss": dict,
    "ReducedFocalLoss": dict,
    "SoftFocalLoss": dict,
    "SymmetricLovaszLoss": dict,
    "TiltedCrossEntropy": dict,
}


def _public_loss_classes():
    return sorted(name for name in L.__all__
                  if inspect.isclass(getattr(L, name))
                  and issubclass(getattr(L, name), keras.losses.Loss))


def _flags(cls):
    return [name for name, parameter in inspect.signature(cls).parameters.items()
            if isinstance(parameter.default, bool)]


def test_every_public_loss_class_is_covered():
    assert _public_loss_classes() == sorted(REQUIRED)
    assert sum(len(_flags(getattr(L, name))) for name in REQUIRED) >= 12


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_boolean_arguments_are_strict(name):
    cls = getattr(L, name)
    for flag in _flags(cls):
        for value in ("no", 1, None):
            with pytest.raises(ValueError, match=rf"{name}: `{flag}` must be True or False; "
                                                 rf"received {value!r}"):
                cls(**REQUIRED[name](), **{flag: value})
        for value in (True, False):
            assert getattr(cls(**REQUIRED[name](), **{flag: value}), flag) is value


FUNCTION_INPUTS = {  # (kind of inputs, required arguments) of each public loss function
    "bce_dice_loss": ("maps", {}),
    "class_balanced_focal_loss": ("labels", dict(class_counts=[10, 3, 1])),
    "dice_loss": ("maps", dict(mode="binary")),
    "jaccard_loss": ("maps", dict(mode="binary")),
    "locally_adaptive_loss": ("classes", dict(kernel_size=3)),
    "lovasz_hinge": ("maps", {}),
    "lovasz_softmax": ("classes", {}),
    "reduced_focal_loss": ("labels", {}),
    "soft_focal_loss": ("labels", {}),
    "symmetric_lovasz": ("maps", {}),
    "tilted_cross_entropy": ("classes", {}),
}


def _function_inputs(kind):
    if kind == "maps":
        return np.array([[[1.0, 0.0], [0.0, 1.0]]]), np.zeros((1, 2, 2, 1), "float32")
    if kind == "labels":
        return np.array([[1.0, 0.0, 0.5]]), np.array([[0.7, 0.2, 0.5]])
    return np.array([[[0, 1], [2, 1]]]), np.zeros((1, 2, 2, 3), "float32")


@pytest.mark.parametrize("name", sorted(FUNCTION_INPUTS))
def test_boolean_arguments_of_the_functions_are_strict(name):
    function = getattr(L, name)
    flags = [flag for flag, parameter in inspect.signature(function).parameters.items()
             if isinstance(parameter.default, bool)]
    assert flags, name
    kind, arguments = FUNCTION_INPUTS[name]
    for flag in flags:
        with pytest.raises(ValueError, match=rf"`{flag}` must be True or False; received 'no'"):
            function(*_function_inputs(kind), **arguments, **{flag: "no"})
    with pytest.raises(ValueError, match=r"`normalize` must be True or False; received 1"):
        L.class_balanced_weights([10, 3], normalize=1)


def test_every_public_loss_function_is_covered():
    functions = {name for name in L.__all__ if inspect.isfunction(getattr(L, name))}
    helpers = {"auxiliary_class_labels", "chessboard_weights", "class_balanced_weights"}
    assert functions - helpers == set(FUNCTION_INPUTS)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_config_chains_the_keras_base_and_round_trips(name):
    loss = getattr(L, name)(**REQUIRED[name]())
    config = loss.get_config()
    base = keras.losses.Loss(name=loss.name).get_config()
    assert set(base) <= set(config), sorted(set(base) - set(config))
    assert config["name"] == loss.name
    restored = type(loss).from_config(config)
    assert restored.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(revived) is type(loss) and revived.get_config() == config


def test_losses_without_a_reduction_refuse_another_one():
    for cls, arguments in ((L.TiltedCrossEntropy, {}),
                           (L.CombinedLoss, REQUIRED["CombinedLoss"]())):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: `reduction` must be one of "
                                             r"'sum_over_batch_size'; received 'sum'"):
            cls(**arguments, reduction="sum")


def test_lovasz_softmax_classes_is_renamed_average_over_and_old_configs_load():
    labels = np.array([[[0, 1], [2, 2]]])
    logits = np.random.default_rng(0).normal(size=(1, 2, 2, 3)).astype("float32")
    expected = float(L.LovaszSoftmaxLoss(average_over=[0, 2])(labels, logits))
    with pytest.warns(DeprecationWarning, match=r"`classes` is renamed `average_over`"):
        old = L.LovaszSoftmaxLoss(classes=[0, 2])
    assert old.average_over == [0, 2] and float(old(labels, logits)) == expected
    with pytest.warns(DeprecationWarning, match=r"lovasz_softmax: `classes` is renamed"):
        value = L.lovasz_softmax(labels, logits, classes=[0, 2])
    assert float(value) == expected
    saved = {"name": "lovasz_softmax_loss", "reduction": "sum_over_batch_size", "dtype": None,
             "classes": "all", "per_image": True, "ignore_index": None, "from_logits": True}
    with pytest.warns(DeprecationWarning):
        revived = L.LovaszSoftmaxLoss.from_config(saved)
    assert revived.average_over == "all" and "classes" not in revived.get_config()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.LovaszSoftmaxLoss(average_over="all")  # the new name does not warn


def test_one_epsilon_follows_keras_config():
    original = keras.config.epsilon()
    try:
        keras.config.set_epsilon(1e-3)
        assert _common.epsilon() == 1e-3
        # BCE + Dice on probabilities clips p to [eps, 1 - eps]: p = 0 with y = 1 costs -log eps.
        value = L.bce_dice_loss(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 1)), dice_weight=0.0)
        np.testing.assert_allclose(float(value[0]), -np.log(1e-3), rtol=1e-5)
    finally:
        keras.config.set_epsilon(original)
    assert _common.epsilon() == original
