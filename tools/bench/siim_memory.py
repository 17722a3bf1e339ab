"""Peak memory of the SIIM recipe's evaluation and submission steps on 1024 px DICOMs.

Builds the demo dataset at SIIM's size (1024 px DICOMs, ``kse.data.build_siim_demo_dataset``),
converts it with the recipe's own steps, and runs the recipe's streamed evaluation (two
kept models and their ensemble over the post-processing grid at original size) and its
submission with two untrained demo-sized models (EfficientNet-B0, decoder (64, 48, 32, 16, 8)),
reading the process's peak resident memory (``ru_maxrss``) after each step. Evaluating 8
and then 56 images shows whether memory grows with the number of images (streamed: it must
not). Untrained weights change no memory figure.

    PYTHONPATH=. python tools/bench/siim_memory.py [--workdir /tmp/siim-memory]
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "recipes"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--member-sizes", default="256,384",
                        help="the two kept models' sizes (the recipe's default: 512,768)")
    cli = parser.parse_args()
    workdir = cli.workdir or tempfile.mkdtemp(prefix="siim-memory-")
    sizes = [int(s) for s in cli.member_sizes.split(",")]

    import siim_evaluation as evaluation
    import siim_pneumothorax as recipe

    import keras_seg_extras as kse

    stages = [{"size": s, "epochs": 1, "batch_size": 2, "loss": "dice", "learning_rate": 1e-3,
               "keep": True} for s in sizes]
    import json

    args = recipe.parse_args(["--demo", "--demo-image-size", "1024", "--output-dir", workdir,
                              "--workers", "1", "--stages", json.dumps(stages)])
    kse.data.build_siim_demo_dataset(args.data_dir, size=1024)
    test, train, val = recipe.training.prepare(args.data_dir, args.output_dir, args.workers)
    models = {str(s): recipe.build_model(args) for s in sizes}
    served, _ = evaluation.served_models(models, args.classification_head)
    rows = [("models built", None, evaluation.peak_memory_mib())]
    for label, part in (("evaluation, 8 validation images", val[:8]),
                        ("evaluation, 56 images (validation + train)", val + train)):
        started = time.time()
        searches, _, _ = evaluation.evaluate(served, part, args.thresholds, args.min_areas,
                                             args.predict_batch_size)
        assert all(search.count == len(part) for search in searches.values())
        rows.append((label, time.time() - started, evaluation.peak_memory_mib()))
    started = time.time()
    submitted, _ = evaluation.submitted_model(models, args.submit, args.classification_head)
    evaluation.write_submission(os.path.join(workdir, "submission.csv"), submitted, test, 0.5,
                                2000, args.predict_batch_size)
    rows.append((f"submission, {len(test)} test images (ensemble)", time.time() - started,
                 evaluation.peak_memory_mib()))
    print(f"\n1024 px DICOMs, members at {sizes} px, prediction batch "
          f"{args.predict_batch_size}, grid {len(args.thresholds)} x {len(args.min_areas)}\n")
    print("| step | seconds | peak resident MiB so far |")
    print("|---|---|---|")
    for label, seconds, peak in rows:
        print(f"| {label} | {'' if seconds is None else f'{seconds:.0f}'} | {peak:.0f} |")


if __name__ == "__main__":
    main()
