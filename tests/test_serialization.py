"""A compiled model using every overlap loss and metric round-trips through `.keras`."""

import keras
import numpy as np

import keras_seg_extras as kse
L, M = kse.losses, kse.metrics


def build_model():
    # Two convolutions keep graph tracing cheap; the U-Net adds nothing to what is tested here.
    image = keras.Input((16, 16, 1), name="image")
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    mask = keras.layers.Conv2D(1, 1, name="mask")(features)
    classes = keras.layers.Conv2D(3, 1, name="classes")(features)
    model = keras.Model(image, [mask, classes])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        jit_compile=False,
        loss={
            "mask": L.CombinedLoss([
                L.DiceLoss("binary", from_logits=True),
                L.JaccardLoss("binary", from_logits=True, per_image=True),
                L.LovaszHingeLoss(),
                L.SymmetricLovaszLoss(per_image=False),
                L.BCEDiceLoss(from_logits=True, dice_weight=0.5),
            ], weights=[1.0, 0.5, 0.25, 0.25, 1.0]),
            "classes": L.CombinedLoss([
                L.DiceLoss("multiclass", from_logits=True, ignore_index=255),
                L.JaccardLoss("multiclass", from_logits=True, per_image=True, ignore_index=255),
                L.LovaszSoftmaxLoss(average_over="present", per_image=True, ignore_index=255),
            ]),
        },
        metrics={
            "mask": [M.DiceCoefficient(from_logits=True), M.IoUScore(from_logits=True,
                                                                     per_image=False)],
            "classes": [M.ConfusionMatrixIoU(3, ignore_index=255)],
        },
    )
    return model


def test_model_with_every_loss_and_metric_round_trips(tmp_path, rng):
    x = rng.normal(size=(4, 16, 16, 1)).astype("float32")
    mask = (x > 0.5).astype("float32")
    labels = np.digitize(x[..., 0], [-0.5, 0.5]).astype("int32")
    labels[:, :2] = 255
    targets = {"mask": mask, "classes": labels}
    model = build_model()
    model.optimizer.build(model.trainable_variables)  # saved with its slots, as after fit
    path = tmp_path / "overlap.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    predictions = dict(zip(("mask", "classes"), model.predict(x, verbose=0)))
    for got, want in zip(loaded.predict(x, verbose=0), predictions.values()):
        np.testing.assert_array_equal(got, want)

    # The reloaded model, evaluated in graph mode, against the original objects called eagerly.
    after = loaded.evaluate(x, targets, batch_size=4, verbose=0, return_dict=True)
    expected = {f"{k}_loss": float(model.loss[k](targets[k], predictions[k])) for k in targets}
    expected["loss"] = expected["mask_loss"] + expected["classes_loss"]
    fresh = {"mask": [M.DiceCoefficient(from_logits=True),
                      M.IoUScore(from_logits=True, per_image=False)],
             "classes": [M.ConfusionMatrixIoU(3, ignore_index=255)]}
    for key, metrics in fresh.items():
        for metric in metrics:
            metric.update_state(targets[key], predictions[key])
            expected[f"{key}_{metric.name}"] = float(metric.result())
    assert sorted(after) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(after[key], expected[key], rtol=1e-5, err_msg=key)
    assert 0 < expected["classes_confusion_matrix_iou"] < 1

    mask_loss = loaded.loss["mask"]
    assert isinstance(mask_loss, L.CombinedLoss)
    assert [type(m).__name__ for m in mask_loss.losses] == [
        "DiceLoss", "JaccardLoss", "LovaszHingeLoss", "SymmetricLovaszLoss", "BCEDiceLoss"]
    assert mask_loss.weights == [1.0, 0.5, 0.25, 0.25, 1.0]
    assert loaded.loss["classes"].get_config() == model.loss["classes"].get_config()
