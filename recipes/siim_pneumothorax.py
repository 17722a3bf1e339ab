"""SIIM-ACR pneumothorax segmentation, end to end (paper 003 is the specification).

A folder of DICOMs plus ``train-rle.csv`` becomes a submission and a SavedModel:

1. DICOM -> 8-bit PNG with contrast correction (``kse.data.dicom``; resumable, corrupt files
   reported), header fields (patient id, sex, age, view position) to a CSV.
2. ``train-rle.csv`` (SIIM run-length encoding, several rows per image unioned) -> PNG masks.
3. Stratified 85/15 split on "has a mask", grouped by patient id (4.1.1).
4. U-Net++ with an EfficientNet encoder (3.3), trained in resolution stages (4.1.2) with
   albumentations in tf.data (4.1.4): BCE + Dice, then Dice, then focal with SWA over the
   last epochs (4.1.6, 4.1.7), gradient accumulation (4.1.3), cosine annealing, Adam;
   checkpoints on validation IoU and Dice and TensorBoard logs (4.1.8). Resumable.
5. Horizontal-flip TTA, small-component removal and a threshold chosen on validation (3.4).
6. ``submission.csv`` in SIIM RLE for the test DICOMs, a ``.keras`` model and a SavedModel
   that serves images of any size (with the TTA and the threshold built in).

``--demo`` builds a SIIM-shaped dataset from the shipped nuclei sample (DICOMs written with
pydicom, a train-rle.csv) and runs every step at small sizes on a CPU in about 10 minutes.

Usage:
    python recipes/siim_pneumothorax.py --demo
    python recipes/siim_pneumothorax.py --data-dir /data/siim --output-dir runs/siim
    python recipes/siim_pneumothorax.py --config my_run.json     # flags as JSON keys
"""

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The report's schedule (4.1.2, 4.2): 256 px with BCE + Dice, 512 px with Dice (batch 4,
# accumulation 8 = effective 32), 768 px with focal loss and SWA over the last 3 epochs
# (batch 2, accumulation 12); cosine annealing from each stage's initial learning rate.
REPORT_STAGES = [
    {"size": 256, "epochs": 75, "batch_size": 16, "accumulation": 1, "loss": "bce_dice",
     "learning_rate": 1e-3},
    {"size": 512, "epochs": 50, "batch_size": 4, "accumulation": 8, "loss": "dice",
     "learning_rate": 1e-3},
    {"size": 768, "epochs": 45, "batch_size": 2, "accumulation": 12, "loss": "focal",
     "learning_rate": 5e-4, "swa_epochs": 3},
]
DEMO_STAGES = [
    {"size": 64, "epochs": 8, "batch_size": 8, "accumulation": 1, "loss": "bce_dice",
     "learning_rate": 3e-3},
    {"size": 96, "epochs": 3, "batch_size": 4, "accumulation": 2, "loss": "dice",
     "learning_rate": 1e-3},
    {"size": 128, "epochs": 3, "batch_size": 4, "accumulation": 2, "loss": "focal",
     "learning_rate": 5e-4, "swa_epochs": 2},
]
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_AREAS = (0, 16, 64, 256)


#: File or folder name of each serving format in the output directory.
EXPORT_FILES = {"tf_saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}


def export_artifacts(model, output_dir, formats, threshold):
    """Write ``model`` with h-flip TTA and ``threshold`` inside in each of ``formats``."""
    import keras_seg_extras as kse

    paths = {}
    for fmt in formats:
        paths[fmt] = os.path.join(output_dir, EXPORT_FILES[fmt])
        kse.export_model(model, paths[fmt], format=fmt, tta="hflip", threshold=threshold)
        print(f"[export] {fmt} with h-flip TTA and threshold {threshold} -> {paths[fmt]}")
    return paths


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file whose keys are these flags (dashes or "
                                         "underscores); flags given on the command line win")
    parser.add_argument("--demo", action="store_true",
                        help="build a SIIM-shaped dataset from the shipped nuclei sample and "
                             "run every step at small sizes")
    parser.add_argument("--data-dir", help="folder with dicom-images-train/, "
                                           "dicom-images-test/ and train-rle.csv")
    parser.add_argument("--output-dir", default="runs/siim")
    parser.add_argument("--encoder", default="efficientnet_b4")
    parser.add_argument("--encoder-weights", default=None,
                        help="local weights file for the encoder (nothing is downloaded)")
    parser.add_argument("--decoder-filters", default=None,
                        help="five comma-separated decoder filter counts (strides 16 to 1); "
                             "default: the model's (256,128,64,32,16), (64,48,32,16,8) in --demo")
    parser.add_argument("--bn-momentum", type=float, default=None,
                        help="BatchNorm momentum of every layer (default: keep the model's "
                             "0.99; 0.9 in --demo, whose few hundred updates would leave "
                             "0.99's moving statistics near their initial values)")
    parser.add_argument("--stages", default=None,
                        help="JSON list of stages (keys size, epochs, batch_size, accumulation, "
                             "loss in bce_dice|dice|focal|lovasz, learning_rate, swa_epochs); "
                             "default: the report's 256 -> 512 -> 768 schedule")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the converted PNGs (default: keep the DICOM size)")
    parser.add_argument("--clahe", action="store_true", help="CLAHE after windowing")
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="cap on micro-batches per epoch (default: the whole train set)")
    parser.add_argument("--workers", type=int, default=None, help="DICOM conversion processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview-count", type=int, default=4)
    parser.add_argument("--export-formats", nargs="+", default=["tf_saved_model"],
                        choices=sorted(EXPORT_FILES),
                        help="serving artifacts to write (h-flip TTA and the chosen threshold "
                             "inside, each checked against Keras): tf_saved_model onnx litert")
    args = parser.parse_args(argv)
    if args.config:
        with open(args.config) as handle:
            config = {k.replace("-", "_"): v for k, v in json.load(handle).items()}
        unknown = set(config) - set(vars(args))
        if unknown:
            parser.error(f"--config {args.config}: unknown keys {sorted(unknown)}")
        parser.set_defaults(**config)
        args = parser.parse_args(argv)
    if isinstance(args.stages, str):
        args.stages = json.loads(args.stages)
    if isinstance(args.decoder_filters, str):
        args.decoder_filters = [int(v) for v in args.decoder_filters.split(",")]
    if args.demo:
        args.encoder = "efficientnet_b0" if args.encoder == "efficientnet_b4" else args.encoder
        args.decoder_filters = args.decoder_filters or [64, 48, 32, 16, 8]
        args.bn_momentum = 0.9 if args.bn_momentum is None else args.bn_momentum
        args.stages = args.stages or DEMO_STAGES
    elif not args.data_dir:
        parser.error("give --data-dir (a SIIM folder) or --demo")
    args.stages = args.stages or REPORT_STAGES
    return args


# ----------------------------------------------------------------------------- data


def convert(args, paths):
    """DICOM -> PNG for train and test; returns {SOPInstanceUID: header row}."""
    import keras_seg_extras as kse

    headers = {}
    for part in ("train", "test"):
        source = paths[f"{part}_dir"]
        if not os.path.isdir(source):
            continue
        target = os.path.join(args.output_dir, "png", part)
        summary = kse.data.dicom.convert_dicom_folder(
            source, target, workers=args.workers, size=args.image_size, clahe=args.clahe,
            csv_path=os.path.join(args.output_dir, f"{part}_headers.csv"))
        print(f"[convert] {part}: {summary.converted} converted, {summary.skipped} already "
              f"done, {len(summary.failed)} failed (see {summary.log_path})")
        for row in summary.rows:
            if row["status"] != "failed":
                headers[row["SOPInstanceUID"]] = dict(row, part=part)
    return headers


def read_rle_csv(path):
    """{ImageId: [rle strings]} from SIIM's train-rle.csv (its header may read ' EncodedPixels')."""
    rows = {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader)]
        if header[:2] != ["ImageId", "EncodedPixels"]:
            raise ValueError(f"{path}: expected the columns ImageId, EncodedPixels; "
                             f"found {header}")
        for image_id, rle in reader:
            rows.setdefault(image_id.strip(), []).append(rle.strip())
    return rows


def write_masks(args, headers, rles):
    """Decode the RLE rows at the DICOM size, resize like the image, write PNG masks."""
    import cv2

    import keras_seg_extras as kse

    folder = os.path.join(args.output_dir, "png", "masks")
    os.makedirs(folder, exist_ok=True)
    records = []
    for image_id, strings in rles.items():
        row = headers.get(image_id)
        if row is None:
            print(f"[masks] {image_id}: in train-rle.csv but no converted DICOM; left out")
            continue
        mask_path = os.path.join(folder, f"{image_id}.png")
        png = cv2.imread(row["png"], cv2.IMREAD_GRAYSCALE)
        if not os.path.exists(mask_path):
            shape = (int(row["Rows"]), int(row["Columns"]))
            mask = kse.data.rle.decode_siim(strings, shape, image_id=image_id)
            if mask.shape != png.shape:
                mask = cv2.resize(mask, png.shape[::-1], interpolation=cv2.INTER_NEAREST)
            kse.data.dicom.write_png(mask_path, (mask > 0).astype("uint8") * 255)
            has_mask = bool(mask.any())
        else:
            has_mask = bool(cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE).any())
        records.append({"id": image_id, "image": row["png"], "mask": mask_path,
                        "patient": row["PatientID"] or image_id, "has_mask": has_mask})
    return records


def split(args, records):
    import keras_seg_extras as kse

    has_mask = np.array([r["has_mask"] for r in records])
    groups = np.array([r["patient"] for r in records])
    train_idx, val_idx = kse.data.split.stratified_split(
        has_mask, validation_fraction=args.validation_fraction, groups=groups, seed=args.seed)
    train, val = [records[i] for i in train_idx], [records[i] for i in val_idx]
    for name, part in (("train", train), ("validation", val)):
        print(f"[split] {name}: {len(part)} images, {sum(r['has_mask'] for r in part)} "
              f"with pneumothorax, {len({r['patient'] for r in part})} patients")
    return train, val


def read_images(paths, size):
    """PNG files -> uint8 (N, size, size, 3)."""
    import cv2

    out = np.empty((len(paths), size, size, 3), "uint8")
    for i, path in enumerate(paths):
        image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        out[i] = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)[..., None]
    return out


# ----------------------------------------------------------------------------- training


def make_loss(name):
    import keras

    import keras_seg_extras as kse

    losses = {
        "bce_dice": lambda: kse.losses.BCEDiceLoss(),
        "dice": lambda: kse.losses.DiceLoss("binary"),
        "focal": lambda: keras.losses.BinaryFocalCrossentropy(gamma=2.0),
        "lovasz": lambda: kse.losses.SymmetricLovaszLoss(),
    }
    if name not in losses:
        raise ValueError(f"siim_pneumothorax: unknown loss {name!r}; use one of {list(losses)}")
    return losses[name]()


def build_trainer(args, model, train, val, strategy):
    import keras

    import keras_seg_extras as kse

    pipeline = kse.data.pipeline

    def train_data(size, batch_size):
        return pipeline.segmentation_dataset(
            [r["image"] for r in train], [r["mask"] for r in train], batch_size=batch_size,
            image_size=size, augment=kse.data.augment.siim_preset(size), shuffle=True,
            seed=args.seed, repeat=True)

    def validation_data(size, batch_size):
        return pipeline.segmentation_dataset(
            [r["image"] for r in val], [r["mask"] for r in val], batch_size=batch_size,
            image_size=size, shuffle=False)

    bn_batches = lambda size: train_data(size, 4).take(16)  # noqa: E731
    stages = []
    for i, spec in enumerate(args.stages):
        callbacks = []
        epochs, swa_epochs = int(spec["epochs"]), int(spec.get("swa_epochs", 0))
        if swa_epochs:
            first = sum(int(s["epochs"]) for s in args.stages[:i])
            callbacks.append(kse.callbacks.StochasticWeightAveraging(
                start_epoch=first + epochs - swa_epochs, bn_data=bn_batches(spec["size"])))
        lr = float(spec["learning_rate"])
        steps = args.steps_per_epoch or -(-len(train) // int(spec["batch_size"]))
        stages.append(kse.training.Stage(
            image_size=int(spec["size"]), epochs=epochs, batch_size=int(spec["batch_size"]),
            accumulation_steps=int(spec.get("accumulation", 1)), loss=make_loss(spec["loss"]),
            learning_rate=lambda total, lr=lr: kse.training.CosineAnnealingWithWarmup(
                lr, total), callbacks=callbacks, steps_per_epoch=steps))
    best = os.path.join(args.output_dir, "best")
    os.makedirs(best, exist_ok=True)
    callbacks = [
        # Weights only: the optimizer state (two Adam moments per weight) would triple them.
        keras.callbacks.ModelCheckpoint(os.path.join(best, "best_iou.weights.h5"),
                                        monitor="val_iou", mode="max", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.ModelCheckpoint(os.path.join(best, "best_dice.weights.h5"),
                                        monitor="val_dice", mode="max", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.TensorBoard(os.path.join(args.output_dir, "logs")),
        keras.callbacks.CSVLogger(os.path.join(args.output_dir, "history.csv"), append=True),
    ]
    metrics = [kse.metrics.DiceCoefficient(name="dice"), kse.metrics.IoUScore(name="iou")]
    return kse.training.ProgressiveTrainer(
        model, stages, train_data=train_data, validation_data=validation_data,
        callbacks=callbacks, metrics=metrics, strategy=strategy,
        checkpoint_dir=os.path.join(args.output_dir, "checkpoints"), verbose=2)


# ----------------------------------------------------------------------------- evaluation


def predict(model, paths, size, batch=32):
    """Probabilities (N, size, size) for PNG files, predicted in chunks."""
    out = []
    for start in range(0, len(paths), batch):
        images = read_images(paths[start:start + batch], size).astype("float32")
        out.append(model.predict(images, verbose=0)[..., 0])
    return np.concatenate(out) if out else np.zeros((0, size, size), "float32")


def choose_postprocessing(probabilities, masks):
    """The (threshold, min_area) with the best per-image Dice (SIIM rule) on validation."""
    import keras_seg_extras as kse

    scores = {}
    for threshold in THRESHOLDS:
        for min_area in MIN_AREAS:
            predicted = kse.inference.postprocess(probabilities, threshold=threshold,
                                                  min_area=min_area)
            scores[(threshold, min_area)] = dice_score(masks, predicted)
    best = max(scores, key=scores.get)
    return best, scores[best]


def dice_score(masks, predicted):
    """Mean per-image Dice with the competition's empty-mask rule."""
    import keras_seg_extras as kse

    metric = kse.metrics.DiceCoefficient(threshold=0.5, per_image=True)
    metric.update_state(masks[..., None].astype("float32"),
                        predicted[..., None].astype("float32"))
    return float(metric.result())


def iou_score(masks, predicted):
    import keras_seg_extras as kse

    metric = kse.metrics.IoUScore(threshold=0.5, per_image=True)
    metric.update_state(masks[..., None].astype("float32"),
                        predicted[..., None].astype("float32"))
    return float(metric.result())


def write_submission(args, model, headers, size, threshold, min_area):
    import cv2

    import keras_seg_extras as kse

    test = [(uid, row) for uid, row in headers.items() if row["part"] == "test"]
    path = os.path.join(args.output_dir, "submission.csv")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "EncodedPixels"])
        for start in range(0, len(test), 32):
            chunk = test[start:start + 32]
            probabilities = predict(model, [row["png"] for _, row in chunk], size)
            masks = kse.inference.postprocess(probabilities, threshold=threshold,
                                              min_area=min_area)
            for (uid, row), mask in zip(chunk, masks):
                shape = (int(row["Columns"]), int(row["Rows"]))
                full = cv2.resize(mask.astype("uint8"), shape, interpolation=cv2.INTER_NEAREST)
                writer.writerow([uid, kse.data.rle.encode_siim(full)])
    print(f"[submission] {len(test)} test images -> {path}")
    return path


def save_preview(args, val, probabilities, predicted, masks):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(args.preview_count, len(val))
    if not count:
        return None
    order = sorted(range(len(val)), key=lambda i: -int(masks[i].sum()))[:count]
    size = probabilities.shape[1]
    images = read_images([val[i]["image"] for i in order], size)
    figure, axes = plt.subplots(count, 3, figsize=(7.5, 2.5 * count), squeeze=False)
    for row, i in enumerate(order):
        for col, (title, picture) in enumerate((("image", images[row, ..., 0]),
                                                ("truth", masks[i]),
                                                ("prediction", predicted[i]))):
            axes[row, col].imshow(picture, cmap="gray")
            axes[row, col].set_title(title if row == 0 else "")
            axes[row, col].axis("off")
    path = os.path.join(args.output_dir, "validation_predictions.png")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


# ----------------------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    os.makedirs(args.output_dir, exist_ok=True)
    if args.demo:
        from siim_demo_data import build_demo_dataset

        args.data_dir = args.data_dir or os.path.join(args.output_dir, "demo-data")
        demo = build_demo_dataset(args.data_dir, seed=args.seed)
        print(f"[demo] SIIM-shaped data in {args.data_dir}: {demo['train_images']} train "
              f"images ({demo['train_positive']} with a mask), {demo['test_images']} test")
    paths = {"train_dir": os.path.join(args.data_dir, "dicom-images-train"),
             "test_dir": os.path.join(args.data_dir, "dicom-images-test"),
             "rle_csv": os.path.join(args.data_dir, "train-rle.csv")}
    with open(os.path.join(args.output_dir, "config.json"), "w") as handle:
        json.dump(vars(args), handle, indent=2)

    import keras

    import keras_seg_extras as kse

    keras.utils.set_random_seed(args.seed)
    headers = convert(args, paths)
    records = write_masks(args, headers, read_rle_csv(paths["rle_csv"]))
    train, val = split(args, records)

    strategy = kse.training.distribute.strategy()
    with strategy.scope():
        model = kse.models.UNetPlusPlus(encoder=args.encoder, classes=1,
                                        activation="sigmoid",
                                        encoder_weights=args.encoder_weights,
                                        decoder_filters=args.decoder_filters)
    if args.bn_momentum is not None:
        from keras_seg_extras.training.accumulation import _batchnorm_layers

        for layer in _batchnorm_layers(model):
            layer.momentum = args.bn_momentum
    trainer = build_trainer(args, model, train, val, strategy)
    histories = trainer.fit()
    # fit() returns the histories of the stages it ran (all of them, or the rest on resume).
    for stage, history in zip(trainer.stages[len(trainer.stages) - len(histories):], histories):
        logs = {k: v[-1] for k, v in history.history.items()}
        print(f"[train] {stage.name}: validation Dice {logs.get('val_dice', float('nan')):.4f}, "
              f"IoU {logs.get('val_iou', float('nan')):.4f} (Keras metrics, threshold 0.5)")

    size = int(args.stages[-1]["size"])
    tta_model = kse.inference.with_tta(model, "hflip")
    masks = (read_images([r["mask"] for r in val], size)[..., 0] > 127).astype("uint8")
    probabilities = predict(tta_model, [r["image"] for r in val], size)
    plain = (probabilities > 0.5).astype("uint8")
    (threshold, min_area), best = choose_postprocessing(probabilities, masks)
    predicted = kse.inference.postprocess(probabilities, threshold=threshold,
                                          min_area=min_area)
    empty = np.zeros_like(masks)
    results = {
        "baseline_dice": dice_score(masks, empty), "baseline_iou": iou_score(masks, empty),
        "tta_dice": dice_score(masks, plain), "tta_iou": iou_score(masks, plain),
        "dice": best, "iou": iou_score(masks, predicted),
        "threshold": threshold, "min_area": min_area,
    }
    print(f"[validation] all-empty baseline: Dice {results['baseline_dice']:.4f}, "
          f"IoU {results['baseline_iou']:.4f}")
    print(f"[validation] TTA, threshold 0.5: Dice {results['tta_dice']:.4f}, "
          f"IoU {results['tta_iou']:.4f}")
    print(f"[validation] TTA, threshold {threshold}, min_area {min_area}: "
          f"Dice {results['dice']:.4f}, IoU {results['iou']:.4f}")

    results["submission"] = write_submission(args, tta_model, headers, size, threshold,
                                             min_area)
    model.save(os.path.join(args.output_dir, "model.keras"))
    export_artifacts(model, args.output_dir, args.export_formats, threshold)
    preview = save_preview(args, val, probabilities, predicted, masks)
    if preview:
        print(f"[preview] {preview}")
    results["seconds"] = round(time.time() - started, 1)
    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"[done] in {results['seconds']:.0f} s; outputs in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
