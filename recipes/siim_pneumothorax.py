"""SIIM-ACR pneumothorax segmentation, end to end (paper 003 is the specification).

A folder of DICOMs plus ``train-rle.csv`` becomes a submission and a SavedModel:

1. DICOM -> 8-bit PNG with contrast correction (``kse.data.dicom``; resumable, corrupt files
   reported), header fields (patient id, sex, age, view position) to a CSV.
2. ``train-rle.csv`` (SIIM run-length encoding, several rows per image unioned) -> PNG masks
   at the DICOM size.
3. Stratified 85/15 split on "has a mask", grouped by patient id (4.1.1).
4. U-Net++ with an EfficientNet encoder (3.3) trained in the report's five stages (4.1.2,
   4.2): 256 px BCE + Dice; 512 px Dice, then 512 px focal with SWA (the "512" model is kept);
   768 px, then a finer 768 px with SWA from epoch 8 (the "768" model is kept). Albumentations
   in tf.data (4.1.4), gradient accumulation (4.1.3), cosine annealing, Adam; checkpoints of
   every stage on validation loss, IoU and Dice and TensorBoard logs (4.1.8). Resumable.
5. Horizontal-flip TTA; each kept model and their average (the report's ensemble, 3.4.2)
   scored on validation at each image's original size over a grid of thresholds and minimum
   component areas (3.4.1; the author's 2000 px at 1024 px included), streamed.
6. ``submission.csv`` in SIIM RLE at the original size from the submitted model
   (``--submit``, default the ensemble), ``results.json``, ``.keras`` models and a SavedModel
   that serves the submitted model (the ensemble as one graph) for images of any size.

``--demo`` builds a SIIM-shaped dataset from the shipped nuclei sample (DICOMs written with
pydicom, a train-rle.csv) and runs every step with the same five-stage shape at small sizes
on a CPU in minutes. ``--dry-run`` prints the resolved configuration and exits.

Usage:
    python recipes/siim_pneumothorax.py --demo
    python recipes/siim_pneumothorax.py --data-dir /data/siim --output-dir runs/siim --dry-run
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

import siim_evaluation as evaluation  # noqa: E402

# The report's schedule (4.1.2, 4.1.3, 4.2). Given by the report: sizes, epochs, losses of the
# 256 and 512 stages, the learning rates of the 512 Dice stage (1e-3), the 768 stage (5e-4) and
# the 768 fine-tune (1e-5), SWA in the 512 fine-tune and from epoch 8 of the 768 fine-tune,
# batch 4 x accumulation 8 at 512 and 2 x 12 at 768. Chosen here (the report is silent): 256 px
# batch 16 at 1e-3; the 512 fine-tune at 1e-4 with SWA over its last 3 epochs (4.1.7: "SWA
# only for the last 3 epochs"); Dice for the long 768 stage and focal for its fine-tune,
# mirroring the 512 pair ("a long training ..., then a finer and shorter training with a lower
# initial learning rate and a different loss", 4.2).
REPORT_STAGES = [
    {"size": 256, "epochs": 75, "batch_size": 16, "accumulation": 1, "loss": "bce_dice",
     "learning_rate": 1e-3},
    {"size": 512, "epochs": 50, "batch_size": 4, "accumulation": 8, "loss": "dice",
     "learning_rate": 1e-3},
    {"size": 512, "epochs": 10, "batch_size": 4, "accumulation": 8, "loss": "focal",
     "learning_rate": 1e-4, "swa_from_epoch": 8, "keep": True},
    {"size": 768, "epochs": 45, "batch_size": 2, "accumulation": 12, "loss": "dice",
     "learning_rate": 5e-4},
    {"size": 768, "epochs": 19, "batch_size": 2, "accumulation": 12, "loss": "focal",
     "learning_rate": 1e-5, "swa_from_epoch": 8, "keep": True},
]
# The same five-stage shape at the demo's small sizes (128 px DICOMs): 64 -> 96 -> 128 px.
DEMO_STAGES = [
    {"size": 64, "epochs": 8, "batch_size": 8, "accumulation": 1, "loss": "bce_dice",
     "learning_rate": 3e-3},
    {"size": 96, "epochs": 3, "batch_size": 4, "accumulation": 2, "loss": "dice",
     "learning_rate": 1e-3},
    {"size": 96, "epochs": 2, "batch_size": 4, "accumulation": 2, "loss": "focal",
     "learning_rate": 3e-4, "swa_from_epoch": 1, "keep": True},
    {"size": 128, "epochs": 3, "batch_size": 4, "accumulation": 2, "loss": "dice",
     "learning_rate": 5e-4},
    {"size": 128, "epochs": 2, "batch_size": 4, "accumulation": 2, "loss": "focal",
     "learning_rate": 1e-4, "swa_from_epoch": 1, "keep": True},
]
STAGE_KEYS = {"size", "epochs", "batch_size", "accumulation", "loss", "learning_rate",
              "swa_from_epoch", "keep"}
LOSSES = ("bce_dice", "dice", "focal", "lovasz")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
# Minimum component areas in pixels at 1024 x 1024 (scaled to each image's size); 2000 is the
# report author's setting.
MIN_AREAS = (0, 500, 1000, 2000, 3000, 4000)
OWNER = "siim_pneumothorax"


def _floats(text):
    return [float(v) for v in text.split(",")] if isinstance(text, str) else list(text)


#: File or folder name of each serving format in the output directory.
EXPORT_FILES = {"tf_saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}


def export_artifacts(served, output_dir, formats, threshold, multiple=1):
    """Write ``served`` with ``threshold`` inside in each of ``formats``.

    The recipe's submitted model already holds the h-flip TTA and each member's resize in its
    graph, so every input size is served as it is (``multiple=1``; a bare U-Net++ needs 32);
    each artifact is checked against Keras by its own runtime at export time. Component
    removal is NumPy/OpenCV and stays outside (``kse.inference.postprocess_at_size``).
    """
    import keras_seg_extras as kse

    paths = {}
    for fmt in formats:
        paths[fmt] = os.path.join(output_dir, EXPORT_FILES[fmt])
        kse.export_model(served, paths[fmt], format=fmt, threshold=threshold,
                         multiple=multiple)
        print(f"[export] {fmt} with threshold {threshold} -> {paths[fmt]}")
    return paths


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON file whose keys are these flags (dashes or "
                                         "underscores); flags given on the command line win")
    parser.add_argument("--demo", action="store_true",
                        help="build a SIIM-shaped dataset from the shipped nuclei sample and "
                             "run every step at small sizes")
    parser.add_argument("--demo-image-size", type=int, default=128,
                        help="side of the demo's DICOMs (128; 1024 gives SIIM-sized files)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved configuration (stages included) as JSON and "
                             "exit without reading or writing anything")
    parser.add_argument("--data-dir", help="folder with dicom-images-train/, "
                                           "dicom-images-test/ and train-rle.csv")
    parser.add_argument("--output-dir", default="runs/siim")
    parser.add_argument("--encoder", default="efficientnet_b4")
    parser.add_argument("--encoder-weights", default=None,
                        help="local weights file for the encoder (nothing is downloaded)")
    parser.add_argument("--decoder-filters", default=None,
                        help="five comma-separated decoder filter counts (strides 16 to 1); "
                             "default: the model's, (64,48,32,16,8) in --demo")
    parser.add_argument("--bn-momentum", type=float, default=None,
                        help="BatchNorm momentum of every layer (default: keep the model's "
                             "0.99; 0.9 in --demo, whose few hundred updates would leave "
                             "0.99's moving statistics near their initial values)")
    parser.add_argument("--stages", default=None,
                        help="JSON list of stages (keys size, epochs, batch_size, accumulation, "
                             "loss in bce_dice|dice|focal|lovasz, learning_rate, "
                             "swa_from_epoch (1-based epoch of the stage where SWA starts), "
                             "keep (keep the model at the end of the stage, named by its "
                             "size)); default: the report's five stages")
    parser.add_argument("--submit", default="ensemble",
                        help="the kept model to submit and export, by size (512 or 768 by "
                             "default), or 'ensemble' (the average of all kept models)")
    parser.add_argument("--thresholds", default=THRESHOLDS,
                        help="comma-separated probability thresholds searched on validation")
    parser.add_argument("--min-areas", default=MIN_AREAS,
                        help="comma-separated minimum component areas searched on validation, "
                             "in pixels at 1024 x 1024 (scaled to each image's size); a "
                             "component is kept when strictly larger")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side of the converted PNGs (default: keep the DICOM size)")
    parser.add_argument("--clahe", action="store_true", help="CLAHE after windowing")
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="cap on micro-batches per epoch (default: the whole train set)")
    parser.add_argument("--predict-batch-size", type=int, default=4,
                        help="images per prediction batch in evaluation and submission")
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
    args.thresholds, args.min_areas = _floats(args.thresholds), _floats(args.min_areas)
    if args.demo:
        args.encoder = "efficientnet_b0" if args.encoder == "efficientnet_b4" else args.encoder
        args.decoder_filters = args.decoder_filters or [64, 48, 32, 16, 8]
        args.bn_momentum = 0.9 if args.bn_momentum is None else args.bn_momentum
        args.stages = args.stages or DEMO_STAGES
        args.data_dir = args.data_dir or os.path.join(
            args.output_dir, f"demo-data-{args.demo_image_size}px")
    elif not args.data_dir:
        parser.error("give --data-dir (a SIIM folder) or --demo")
    args.stages = check_stages(args.stages or REPORT_STAGES, parser.error)
    kept = kept_names(args.stages)
    if args.submit not in kept + ["ensemble"]:
        parser.error(f"--submit {args.submit}: must be one of {kept + ['ensemble']} "
                     "(the sizes of the stages with keep, or ensemble)")
    if args.submit == "ensemble" and len(kept) < 2:
        parser.error(f"--submit ensemble needs two kept models; the stages keep {kept}")
    return args


def check_stages(stages, error):
    """Validated copies of the stage dicts; ``error(message)`` reports a bad one (exits)."""
    if not isinstance(stages, list) or not stages:
        error(f"--stages: must be a non-empty JSON list of stages; received {stages!r}")
    checked = []
    for number, spec in enumerate(stages, 1):
        if not isinstance(spec, dict):
            error(f"--stages: stage {number} must be a JSON object; received {spec!r}")
        unknown = set(spec) - STAGE_KEYS
        missing = {"size", "epochs", "batch_size", "loss", "learning_rate"} - set(spec)
        if unknown or missing:
            error(f"--stages: stage {number} has unknown keys {sorted(unknown)} or lacks "
                  f"{sorted(missing)}; the keys are {sorted(STAGE_KEYS)}")
        spec = dict(spec)
        for key, default in (("accumulation", 1), ("swa_from_epoch", None), ("keep", False)):
            spec.setdefault(key, default)
        if spec["loss"] not in LOSSES:
            error(f"--stages: stage {number} `loss` must be one of {list(LOSSES)}; "
                  f"received {spec['loss']!r}")
        swa = spec["swa_from_epoch"]
        if swa is not None and not (isinstance(swa, int) and 1 <= swa <= int(spec["epochs"])):
            error(f"--stages: stage {number} `swa_from_epoch` must be an epoch of the stage, "
                  f"1 to {spec['epochs']}; received {swa!r}")
        checked.append(spec)
    kept = kept_names(checked)
    if len(set(kept)) != len(kept):
        error(f"--stages: keep at most one model per size; kept sizes {kept}")
    return checked


def kept_names(stages):
    return [str(spec["size"]) for spec in stages if spec.get("keep")]


def resolved_config(args):
    """Every setting of the run as JSON-ready values (what --dry-run prints)."""
    config = {k: v for k, v in vars(args).items() if k not in ("config", "dry_run")}
    config["kept_models"] = kept_names(args.stages)
    config["min_area_reference_size"] = 1024
    return config


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


def record(image_id, row):
    return {"id": image_id, "image": row["png"], "patient": row["PatientID"] or image_id,
            "shape": (int(row["Rows"]), int(row["Columns"]))}


def write_masks(args, headers, rles):
    """Decode the RLE rows to PNG masks at the DICOM (original) size; one record per image."""
    import keras_seg_extras as kse

    folder = os.path.join(args.output_dir, "png", "masks")
    os.makedirs(folder, exist_ok=True)
    records = []
    for image_id, strings in rles.items():
        row = headers.get(image_id)
        if row is None:
            print(f"[masks] {image_id}: in train-rle.csv but no converted DICOM; left out")
            continue
        entry = record(image_id, row)
        entry["mask"] = os.path.join(folder, f"{image_id}.png")
        if not os.path.exists(entry["mask"]):
            mask = kse.data.rle.decode_siim(strings, entry["shape"], image_id=image_id)
            kse.data.dicom.write_png(entry["mask"], (mask > 0).astype("uint8") * 255)
            entry["has_mask"] = bool(mask.any())
        else:
            entry["has_mask"] = bool(evaluation.read_png(entry["mask"]).any())
        records.append(entry)
    return records


def data_paths(data_dir):
    return {"train_dir": os.path.join(data_dir, "dicom-images-train"),
            "test_dir": os.path.join(data_dir, "dicom-images-test"),
            "rle_csv": os.path.join(data_dir, "train-rle.csv")}


def prepare(args):
    """Convert the DICOMs, decode the masks and split: ``(headers, train, val)``."""
    paths = data_paths(args.data_dir)
    headers = convert(args, paths)
    records = write_masks(args, headers, read_rle_csv(paths["rle_csv"]))
    train, val = split(args, records)
    return headers, train, val


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
    return losses[name]()


def build_model(args):
    import keras_seg_extras as kse

    model = kse.models.UNetPlusPlus(encoder=args.encoder, classes=1, activation="sigmoid",
                                    encoder_weights=args.encoder_weights,
                                    decoder_filters=args.decoder_filters)
    if args.bn_momentum is not None:
        from keras_seg_extras.training.accumulation import _batchnorm_layers

        for layer in _batchnorm_layers(model):
            layer.momentum = args.bn_momentum
    return model


def kept_path(args, name):
    return os.path.join(args.output_dir, "models", f"model_{name}.weights.npz")


def save_model_weights(model, path):
    """The model's own weights alone, as an ``.npz`` of ``model.get_weights()``.

    ``save_weights`` of the compiled model would add the Adam moments, the accumulation
    buffers and the SWA averages (7-8x the size: 232 MB instead of 27 MB for the demo's B0
    model, 2.6 GB for the demo's 15 best-epoch files).
    """
    np.savez(path, **{f"w{i:04d}": w for i, w in enumerate(model.get_weights())})


def keep_model_callback(path):
    """A callback that saves the weights at the end of its stage (after SWA swapped them in)."""
    import keras

    class KeepModel(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            save_model_weights(self.model, path)

    return KeepModel()


def best_weights_callback(path, monitor, mode):
    """A callback that saves the weights (as :func:`save_model_weights`) whenever ``monitor``
    reaches its best value so far (``mode`` "min" or "max"); warns once if it is never logged."""
    import warnings

    import keras

    class BestWeights(keras.callbacks.Callback):
        best = float("inf") if mode == "min" else -float("inf")
        warned = False

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is None:
                if not self.warned:
                    warnings.warn(f"best-weights checkpoint {path}: `{monitor}` is not in the "
                                  f"logs, so nothing is saved", stacklevel=2)
                    self.warned = True
                return
            value = float(value)
            if (value < self.best) if mode == "min" else (value > self.best):
                self.best = value
                save_model_weights(self.model, path)

    return BestWeights()


def stage_callbacks(args, index, spec, first_epoch, train_data):
    """SWA (when asked), the kept-model save after it, and the stage's three checkpoints."""
    import keras

    import keras_seg_extras as kse

    callbacks = []
    if spec["swa_from_epoch"] is not None:
        # BatchNorm statistics of the averaged weights: 16 augmented batches of 4.
        callbacks.append(kse.callbacks.StochasticWeightAveraging(
            start_epoch=first_epoch + spec["swa_from_epoch"] - 1,
            bn_data=train_data(spec["size"], 4).take(16), name=f"stage{index + 1}"))
    if spec["keep"]:
        os.makedirs(os.path.join(args.output_dir, "models"), exist_ok=True)
        callbacks.append(keep_model_callback(kept_path(args, spec["size"])))
    # Per stage: the loss changes from stage to stage, so its best value is only comparable
    # within one (the report checkpointed each training run on loss, IoU and Dice, 4.1.8).
    folder = os.path.join(args.output_dir, "best", f"stage{index + 1}_{spec['size']}px")
    os.makedirs(folder, exist_ok=True)
    for monitor, mode in (("val_loss", "min"), ("val_iou", "max"), ("val_dice", "max")):
        callbacks.append(best_weights_callback(
            os.path.join(folder, f"best_{monitor[4:]}.weights.npz"), monitor, mode))
    return callbacks


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

    stages, first = [], 0
    for index, spec in enumerate(args.stages):
        lr = float(spec["learning_rate"])
        steps = args.steps_per_epoch or -(-len(train) // int(spec["batch_size"]))
        stages.append(kse.training.Stage(
            image_size=int(spec["size"]), epochs=int(spec["epochs"]),
            batch_size=int(spec["batch_size"]), accumulation_steps=int(spec["accumulation"]),
            loss=make_loss(spec["loss"]),
            learning_rate=lambda total, lr=lr: kse.training.CosineAnnealingWithWarmup(lr, total),
            callbacks=stage_callbacks(args, index, spec, first, train_data),
            steps_per_epoch=steps,
            name=f"stage{index + 1}_{spec['size']}px_{spec['loss']}"))
        first += int(spec["epochs"])
    callbacks = [keras.callbacks.TensorBoard(os.path.join(args.output_dir, "logs")),
                 keras.callbacks.CSVLogger(os.path.join(args.output_dir, "history.csv"),
                                           append=True)]
    metrics = [kse.metrics.DiceCoefficient(name="dice"), kse.metrics.IoUScore(name="iou")]
    return kse.training.ProgressiveTrainer(
        model, stages, train_data=train_data, validation_data=validation_data,
        callbacks=callbacks, metrics=metrics, strategy=strategy,
        checkpoint_dir=os.path.join(args.output_dir, "checkpoints"), verbose=2)


def load_kept_models(args, strategy):
    """{name: model} rebuilt from the weights saved at the end of each kept stage."""
    models = {}
    for name in kept_names(args.stages):
        with strategy.scope():
            model = build_model(args)
        with np.load(kept_path(args, name)) as saved:
            model.set_weights([saved[key] for key in sorted(saved.files)])
        models[name] = model
    return models


# ----------------------------------------------------------------------------- outputs


def served_models(args, models):
    """{name: served model} of each kept model (TTA, resized to its size in the graph)."""
    return {name: evaluation.served_member(model, int(name)) for name, model in models.items()}


def submitted_model(args, models):
    """The served model of ``--submit``: one kept model, or the ensemble as one graph."""
    if args.submit == "ensemble":
        names = list(models)
        return evaluation.served_ensemble([models[n] for n in names], [int(n) for n in names])
    return evaluation.served_member(models[args.submit], int(args.submit))


def export(args, served, threshold):
    """The export step: the submitted model in each of ``--export-formats``."""
    print(f"[export] '{args.submit}' (h-flip TTA inside the graph)")
    return export_artifacts(served, args.output_dir, args.export_formats, threshold)


# ----------------------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    config = resolved_config(args)
    if args.dry_run:
        print(json.dumps(config, indent=2))
        return config
    started = time.time()
    os.makedirs(args.output_dir, exist_ok=True)
    if args.demo:
        from siim_demo_data import build_demo_dataset

        demo = build_demo_dataset(args.data_dir, seed=args.seed, size=args.demo_image_size)
        print(f"[demo] SIIM-shaped data in {args.data_dir}: {demo['train_images']} train "
              f"images ({demo['train_positive']} with a mask), {demo['test_images']} test, "
              f"{args.demo_image_size} px")
    with open(os.path.join(args.output_dir, "config.json"), "w") as handle:
        json.dump(config, handle, indent=2)

    import keras

    import keras_seg_extras as kse

    keras.utils.set_random_seed(args.seed)
    headers, train, val = prepare(args)

    strategy = kse.training.distribute.strategy()
    with strategy.scope():
        model = build_model(args)
    trainer = build_trainer(args, model, train, val, strategy)
    histories = trainer.fit()
    # fit() returns the histories of the stages it ran (all of them, or the rest on resume).
    for stage, history in zip(trainer.stages[len(trainer.stages) - len(histories):], histories):
        logs = {k: v[-1] for k, v in history.history.items()}
        print(f"[train] {stage.name}: train Dice {logs.get('dice', float('nan')):.4f}, "
              f"validation Dice {logs.get('val_dice', float('nan')):.4f}, "
              f"IoU {logs.get('val_iou', float('nan')):.4f} (Keras metrics, model size, "
              "threshold 0.5)")
    memory = {"training_peak_mib": round(evaluation.peak_memory_mib())}

    models = load_kept_models(args, strategy)
    served = served_models(args, models)
    preview_ids = evaluation.largest_masks(val, args.preview_count)
    searches, baseline, previews = evaluation.evaluate(served, val, args, preview_ids)
    memory["evaluation_peak_mib"] = round(evaluation.peak_memory_mib())
    scores = {name: evaluation.summary(search) for name, search in searches.items()}
    chosen = scores[args.submit]
    results = {"models": scores, "baseline": baseline, "submitted": args.submit,
               "threshold": chosen["threshold"], "min_area": chosen["min_area"],
               "min_area_reference_size": 1024, "dice": chosen["dice"], "iou": chosen["iou"],
               "validation_images": len(val)}
    print(f"[validation] {len(val)} images at original size, h-flip TTA; all-empty baseline: "
          f"Dice {baseline['dice']:.4f}, IoU {baseline['iou']:.4f}")
    for name, score in scores.items():
        print(f"[validation] {name}: Dice {score['dice']:.4f}, IoU {score['iou']:.4f} at "
              f"threshold {score['threshold']}, min area {score['min_area']:g} px at 1024")

    test = [record(uid, row) for uid, row in headers.items() if row["part"] == "test"]
    submitted = submitted_model(args, models)
    results["submission"] = evaluation.write_submission(
        os.path.join(args.output_dir, "submission.csv"), submitted, test,
        chosen["threshold"], chosen["min_area"], args.predict_batch_size)
    memory["submission_peak_mib"] = round(evaluation.peak_memory_mib())
    print(f"[submission] '{args.submit}': {len(test)} test images -> {results['submission']}")
    for name, kept in models.items():
        kept.save(os.path.join(args.output_dir, "models", f"model_{name}.keras"))
    submitted.save(os.path.join(args.output_dir, "model.keras"))
    export(args, submitted, chosen["threshold"])
    preview = evaluation.save_preview(os.path.join(args.output_dir, "validation_predictions.png"),
                                      val, previews, args.submit, chosen["threshold"],
                                      chosen["min_area"])
    if preview:
        print(f"[preview] {preview}")
    results["peak_memory"] = memory
    results["seconds"] = round(time.time() - started, 1)
    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"[memory] peak resident MiB after training {memory['training_peak_mib']}, "
          f"evaluation {memory['evaluation_peak_mib']}, submission "
          f"{memory['submission_peak_mib']}")
    print(f"[done] in {results['seconds']:.0f} s; outputs in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
