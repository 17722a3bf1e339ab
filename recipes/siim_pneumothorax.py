"""SIIM-ACR pneumothorax segmentation, end to end, as the work report did it (docs/siim.md).

DICOMs + ``train-rle.csv`` -> PNGs and masks (``kse.data.prepare_siim``) -> stratified split
grouped by patient -> U-Net++ (EfficientNet encoder) in the report's five stages (256 -> 512
-> 768 px, accumulation, SWA; the 512 and 768 models kept; best-epoch checkpoints on loss, IoU
and Dice) -> h-flip TTA, each kept model and their ensemble scored on validation at original
size over thresholds x minimum areas -> ``submission.csv``, ``results.json``, ``.keras`` models
and the ``--export-formats`` artifacts of the ``--submit`` model. ``--demo`` runs it on a
SIIM-shaped dataset built from the shipped nuclei sample; ``--dry-run`` prints the config.

    python recipes/siim_pneumothorax.py --demo
    python recipes/siim_pneumothorax.py --data-dir /data/siim --output-dir runs/siim [--dry-run]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import siim_evaluation as evaluation  # noqa: E402
import siim_training as training  # noqa: E402

import keras_seg_extras as kse  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_AREAS = (0, 500, 1000, 2000, 3000, 4000)  # px at 1024 x 1024; 2000 is the author's
GATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # head probability; 0: no gate
EXPORT_FILES = {"tf_saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite"}


def _floats(text):
    return [float(v) for v in text.split(",")] if isinstance(text, str) else list(text)


def export_artifacts(served, output_dir, formats, threshold, multiple=1):
    """``served`` with ``threshold`` inside in each of ``formats`` (each checked by its runtime;
    the submitted model resizes inside its graph, so ``multiple=1``)."""
    paths = {fmt: os.path.join(output_dir, EXPORT_FILES[fmt]) for fmt in formats}
    for fmt, path in paths.items():
        kse.export_model(served, path, format=fmt, threshold=threshold, multiple=multiple)
        print(f"[export] {fmt} with threshold {threshold} -> {path}")
    return paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--config", help="JSON file of these flags (command-line flags win)")
    add("--demo", action="store_true", help="SIIM-shaped data from the nuclei sample, small sizes")
    add("--demo-image-size", type=int, default=128, help="side of the demo's DICOMs")
    add("--dry-run", action="store_true", help="print the resolved configuration and exit")
    add("--data-dir", help="folder with dicom-images-train/, dicom-images-test/, train-rle.csv")
    add("--output-dir", default="runs/siim")
    add("--encoder", default="efficientnet_b4")
    add("--encoder-weights", default=None, help="local encoder weights file (no download)")
    add("--decoder-filters", default=None, help="five comma-separated counts (demo 64,...,8)")
    add("--bn-momentum", type=float, default=None, help="BatchNorm momentum (demo 0.9)")
    add("--stages", default=None, help=f"JSON list of stages with keys {list(training.STAGE_KEYS)}")
    add("--submit", default="ensemble", help="kept model (its size) or 'ensemble'")
    add("--thresholds", default=THRESHOLDS, help="comma-separated thresholds searched")
    add("--min-areas", default=MIN_AREAS, help="comma-separated areas at 1024 px searched")
    add("--image-size", type=int, default=None, help="side of the converted PNGs")
    add("--clahe", action="store_true", help="CLAHE after windowing")
    add("--validation-fraction", type=float, default=0.15)
    add("--steps-per-epoch", type=int, default=None, help="cap on micro-batches per epoch")
    add("--predict-batch-size", type=int, default=4)
    add("--workers", type=int, default=None, help="DICOM conversion processes")
    add("--seed", type=int, default=0)
    add("--preview-count", type=int, default=4)
    add("--classification-head", action="store_true",
        help="train an image-level 'has a mask' head (BCE) whose probability gates the masks")
    add("--gates", default=GATES, help="comma-separated head gates searched (with the head)")
    add("--export-formats", nargs="+", default=["tf_saved_model"], choices=sorted(EXPORT_FILES))
    args = p.parse_args(argv)
    if args.config:
        with open(args.config) as handle:
            config = {k.replace("-", "_"): v for k, v in json.load(handle).items()}
        if set(config) - set(vars(args)):
            p.error(f"--config {args.config}: unknown keys {sorted(set(config) - set(vars(args)))}")
        p.set_defaults(**config)
        args = p.parse_args(argv)
    args.stages = json.loads(args.stages) if isinstance(args.stages, str) else args.stages
    if isinstance(args.decoder_filters, str):
        args.decoder_filters = [int(v) for v in args.decoder_filters.split(",")]
    args.thresholds, args.min_areas = _floats(args.thresholds), _floats(args.min_areas)
    args.gates = _floats(args.gates)
    if args.demo:
        args.encoder = "efficientnet_b0" if args.encoder == "efficientnet_b4" else args.encoder
        args.decoder_filters = args.decoder_filters or [64, 48, 32, 16, 8]
        args.bn_momentum = 0.9 if args.bn_momentum is None else args.bn_momentum
        args.stages = args.stages or training.DEMO_STAGES
        args.data_dir = args.data_dir or os.path.join(args.output_dir,
                                                      f"demo-data-{args.demo_image_size}px")
    elif not args.data_dir:
        p.error("give --data-dir (a SIIM folder) or --demo")
    stages = args.stages or training.REPORT_STAGES
    if not isinstance(stages, list):
        p.error(f"--stages: must be a non-empty JSON list of stages; received {stages!r}")
    args.stages = [training.check_stage(n, spec, p.error) for n, spec in enumerate(stages, 1)]
    kept = [str(s["size"]) for s in args.stages if s["keep"]]
    if len(set(kept)) != len(kept):
        p.error(f"--stages: keep at most one model per size; kept sizes {kept}")
    if args.submit not in kept + ["ensemble"]:
        p.error(f"--submit {args.submit}: must be one of {kept + ['ensemble']} "
                "(the sizes of the stages with keep, or ensemble)")
    if args.submit == "ensemble" and len(kept) < 2:
        p.error(f"--submit ensemble needs two kept models; the stages keep {kept}")
    return args


def resolved_config(args):
    """Every setting of the run as JSON-ready values (what --dry-run prints)."""
    config = {k: v for k, v in vars(args).items() if k not in ("config", "dry_run")}
    return dict(config, kept_models=training.kept_names(args.stages), min_area_reference_size=1024)


def build_model(args):
    return training.build_model(args.encoder, args.encoder_weights, args.decoder_filters,
                                args.bn_momentum, args.classification_head)


def load_kept_models(args, strategy):
    return training.load_kept_models(args.stages, args.output_dir, lambda: build_model(args),
                                     strategy)


def main(argv=None):
    args = parse_args(argv)
    config = resolved_config(args)
    if args.dry_run:
        print(json.dumps(config, indent=2))
        return config
    started = time.time()
    os.makedirs(args.output_dir, exist_ok=True)
    if args.demo:
        demo = kse.data.build_siim_demo_dataset(args.data_dir, seed=args.seed,
                                                size=args.demo_image_size)
        print(f"[demo] SIIM-shaped data in {args.data_dir}: {demo['train_images']} train "
              f"images ({demo['train_positive']} with a mask), {demo['test_images']} test, "
              f"{args.demo_image_size} px")
    with open(os.path.join(args.output_dir, "config.json"), "w") as handle:
        json.dump(config, handle, indent=2)
    keras.utils.set_random_seed(args.seed)
    test, train, val = training.prepare(args.data_dir, args.output_dir, args.workers,
                                        args.image_size, args.clahe, args.validation_fraction,
                                        args.seed)
    strategy = kse.training.strategy()
    with strategy.scope():
        model = build_model(args)
    trainer = training.build_trainer(model, args.stages, train, val, args.output_dir, args.seed,
                                     args.steps_per_epoch, strategy, args.classification_head)
    training.print_last_epochs(trainer, trainer.fit())
    memory = {"training_peak_mib": round(evaluation.peak_memory_mib())}

    models = load_kept_models(args, strategy)
    served, heads = evaluation.served_models(models, args.classification_head)
    searches, baseline, previews = evaluation.evaluate(
        served, val, args.thresholds, args.min_areas, args.predict_batch_size,
        evaluation.largest_masks(val, args.preview_count), heads=heads, gates=args.gates)
    memory["evaluation_peak_mib"] = round(evaluation.peak_memory_mib())
    results = evaluation.results(searches, baseline, args.submit, len(val))
    chosen = results["models"][args.submit]

    submitted, head = evaluation.submitted_model(models, args.submit, args.classification_head)
    results["submission"] = evaluation.write_submission(
        os.path.join(args.output_dir, "submission.csv"), submitted, test, chosen["threshold"],
        chosen["min_area"], args.predict_batch_size, head, chosen.get("gate", 0.0))
    memory["submission_peak_mib"] = round(evaluation.peak_memory_mib())
    print(f"[submission] '{args.submit}': {len(test)} test images -> {results['submission']}")
    for name, kept in models.items():
        kept.save(os.path.join(args.output_dir, "models", f"model_{name}.keras"))
    submitted.save(os.path.join(args.output_dir, "model.keras"))
    print(f"[export] '{args.submit}' (h-flip TTA inside the graph)")
    export_artifacts(submitted, args.output_dir, args.export_formats, chosen["threshold"])
    preview = evaluation.save_preview(os.path.join(args.output_dir, "validation_predictions.png"),
                                      val, previews, args.submit, chosen["threshold"],
                                      chosen["min_area"])
    results.update(peak_memory=memory, seconds=round(time.time() - started, 1))
    with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"[preview] {preview}\n[memory] peak resident MiB after training "
          f"{memory['training_peak_mib']}, evaluation {memory['evaluation_peak_mib']}, "
          f"submission {memory['submission_peak_mib']}\n[done] in {results['seconds']:.0f} s; "
          f"outputs in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
