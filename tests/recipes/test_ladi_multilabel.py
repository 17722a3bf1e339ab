"""recipes/ladi_multilabel.py: a tiny CSV run, a learning CSV run and a tiny brain run."""

import importlib.util
import os

import cv2
import keras
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "recipes", "ladi_multilabel.py")


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("ladi_multilabel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_csv_run(recipe, tmp_path, rng, capsys):
    names = ["flood", "smoke", "none"]
    rows = []
    for i in range(10):
        image = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"img{i}.png"), image)
        for _ in range(3):
            rows.append(f"img{i}.png,{names[rng.integers(0, 3)]}")
    (tmp_path / "votes.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    results = recipe.main([
        "--csv", str(tmp_path / "votes.csv"), "--backbone", "small", "--image-size", "32",
        "--epochs", "2", "--batch-size", "4", "--losses", "reduced", "--drop-worst", "1",
        "--none-classes", "none", "--none-multiplier", "0.1", "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert "8 training and 2 validation images, 3 classes" in printed
    assert "[reduced] epoch 2: val LRAP" in printed
    assert "loss            val LRAP   val mAP" in printed
    assert 0.0 <= results["reduced"]["lrap"] <= 1.0 and np.isfinite(results["reduced"]["map"])
    assert results["reduced"]["checkpoints"] == ["epoch_001.keras", "epoch_002.keras"]
    snapshot = keras.saving.load_model(out / "reduced" / "epoch_002.keras")
    # Classes sorted by name: flood, none, smoke; DropWorst(ReducedFocalLoss) with x0.1 on none.
    assert snapshot.loss.loss.class_weights == [1.0, 0.1, 1.0]


def _coloured_votes(folder, rng, count, stray_vote=False):
    """Images coloured by their class, 3 agreeing votes each (and one stray vote for the next
    class when ``stray_vote``: a soft label of 1/3 that binarises to 0). Returns the CSV."""
    names = ["flood", "smoke", "none"]
    rows = []
    for i in range(count):
        label = i % 3
        image = rng.integers(0, 60, (16, 16, 3))
        image[..., label] += 180
        cv2.imwrite(str(folder / f"img{i}.png"), image.astype(np.uint8)[..., ::-1])
        rows += [f"img{i}.png,{names[label]}"] * 3
        rows += [f"img{i}.png,{names[(label + 1) % 3]}"] if stray_vote else []
    (folder / "votes.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    return str(folder / "votes.csv")


def test_csv_run_learns_what_the_images_show(recipe, tmp_path, rng):
    """Each image is coloured by its class (3 agreeing votes): a model that learns anything
    ranks its class first (LRAP near 1); one that ignores its input gets the constant prior's
    LRAP (about (1 + 1/2 + 1/3) / 3 for three balanced classes)."""
    results = recipe.main([
        "--csv", _coloured_votes(tmp_path, rng, 60), "--backbone", "small", "--image-size", "16",
        "--epochs", "3", "--batch-size", "8", "--losses", "focal",
        "--output-dir", str(tmp_path / "run")])
    focal = results["focal"]
    assert 0.5 < focal["prior_lrap"] < 0.75
    assert focal["lrap"] > focal["prior_lrap"] + 0.2
    assert focal["map"] > focal["prior_map"] + 0.2


def test_symmetric_lovasz_is_selectable_and_learns(recipe, tmp_path, rng):
    """Issue 17 item 2: the (B, C) multi-label symmetric Lovász hinge from the loss flag,
    trained on targets >= 0.5, beats the constant prior on images coloured by their class."""
    csv_path, out = _coloured_votes(tmp_path, rng, 48, stray_vote=True), tmp_path / "run"
    results = recipe.main([
        "--csv", csv_path, "--backbone", "small", "--image-size", "16",
        "--epochs", "3", "--batch-size", "8", "--losses", "symmetric-lovasz",
        "--jaccard-set", "class", "--output-dir", str(out)])
    lovasz = results["symmetric-lovasz"]
    assert lovasz["lrap"] > lovasz["prior_lrap"] + 0.2
    snapshot = keras.saving.load_model(out / "symmetric-lovasz" / "epoch_003.keras")
    assert type(snapshot.loss).__name__ == "SymmetricLovaszLoss"
    assert snapshot.loss.get_config()["jaccard_set"] == "class"
    with pytest.raises(ValueError, match="`--none-classes` weights do not apply"):
        recipe.main(["--csv", csv_path, "--backbone", "small",
                     "--image-size", "16", "--epochs", "1", "--losses", "symmetric-lovasz",
                     "--none-classes", "none", "--none-multiplier", "0.1",
                     "--output-dir", str(out)])


def test_tiny_brain_run(recipe, tmp_path, capsys):
    (x_train, y_train), (x_val, y_val), names = recipe.load_brain(32)
    assert len(names) == 116 and y_train.shape == (len(x_train), 116)
    both = np.concatenate([y_train, y_val])
    assert both.min() == 0.0 and both.max() == 1.0
    present = both.max(axis=0) > 0
    np.testing.assert_allclose(both.max(axis=0)[present], 1.0)
    results = recipe.main(["--image-size", "32", "--epochs", "1", "--losses", "class-balanced",
                           "--batch-size", "64", "--output-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "backbone small" in printed and "class-balanced" in printed
    assert "constant prior" in printed
    # One epoch already ranks images per region much better than the constant prior (mean
    # average precision over the regions: ~0.48 against ~0.26). Label ranking (LRAP) needs
    # longer runs to pass the prior on these 116 regions (docs/multilabel.md); it starts there.
    result = results["class-balanced"]
    assert result["map"] > result["prior_map"] + 0.1
    assert result["lrap"] > result["prior_lrap"] - 0.05


def test_efficientnet_classifier_reads_local_weights_only(recipe, tmp_path):
    model = recipe.build_classifier(5, 32, 1, "efficientnetb0")
    assert model.output_shape == (None, 5)
    encoder = model.get_layer("efficientnetb0")
    path = str(tmp_path / "encoder.weights.h5")
    encoder.save_weights(path)
    again = recipe.build_classifier(5, 32, 1, "efficientnetb0", weights=path)
    for a, b in zip(encoder.weights, again.get_layer("efficientnetb0").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match=r"`--weights` must be an existing local file"):
        recipe.build_classifier(5, 32, 1, "efficientnetb0", weights="imagenet")
