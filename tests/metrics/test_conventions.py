"""Conventions every public metric follows (issue 16, item 3), checked over all of them.

The classes come from ``kse.metrics.__all__``, so a new metric is covered without an edit:
boolean arguments are real booleans (``"no"``, 1 and None are refused with the package's
message), every ``from_logits`` defaults to False (probabilities), the class count is called
``num_classes``, and ``get_config`` round-trips through ``from_config`` and Keras
serialisation.
"""

import inspect

import keras
import pytest

import keras_seg_extras as kse

CLASSES = [getattr(kse.metrics, name) for name in kse.metrics.__all__
           if inspect.isclass(getattr(kse.metrics, name))
           and issubclass(getattr(kse.metrics, name), keras.metrics.Metric)]


def _parameters(cls):
    return {name: p for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self"}


def _required(cls):
    """The smallest valid arguments: every required one is the class count."""
    required = [n for n, p in _parameters(cls).items() if p.default is inspect.Parameter.empty]
    assert set(required) <= {"num_classes"}, (cls.__name__, required)
    return {name: 3 for name in required}


def _flags(cls):
    return [(cls, name) for name, p in _parameters(cls).items() if isinstance(p.default, bool)]


def test_the_table_holds_every_public_metric():
    assert {c.__name__ for c in CLASSES} >= {
        "ConfusionMatrixIoU", "DiceCoefficient", "FairnessIoU", "IoUScore", "PerClassIoU",
        "PerClassDice", "LabelRankingAveragePrecision", "MeanAveragePrecision"}


@pytest.mark.parametrize("cls, argument", [pair for cls in CLASSES for pair in _flags(cls)],
                         ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("value", ["no", 1, None])
def test_boolean_arguments_refuse_anything_but_a_bool(cls, argument, value):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: `{argument}` must be True or "
                       rf"False; received {value!r}"):
        cls(**_required(cls), **{argument: value})


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_one_default_story_and_one_class_count_name(cls):
    parameters = _parameters(cls)
    if "from_logits" in parameters:
        assert parameters["from_logits"].default is False
    assert not {"classes", "n_classes", "num_labels"} & set(parameters)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_config_round_trips(cls):
    metric = cls(**_required(cls), name="renamed")
    config = metric.get_config()
    assert config["name"] == "renamed" and "dtype" in config  # chained through super()
    assert cls.from_config(config).get_config() == config
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(again) is cls and again.get_config() == config
