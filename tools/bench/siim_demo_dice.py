"""Why the SIIM demo's training Dice stays near 0.5: per-image Dice on the images of a
kept demo model, healthy and positive images apart, with and without augmentation, in
inference and in training mode (what fit's metric sees).

    PYTHONPATH=. python tools/bench/siim_demo_dice.py runs/siim-demo 96

(a finished demo run's output folder, and the size of one of its kept models).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "recipes"))
import siim_pneumothorax as recipe  # noqa: E402

out, name = sys.argv[1], sys.argv[2]
args = recipe.parse_args(["--demo", "--output-dir", out, "--workers", "1"])
import keras_seg_extras as kse  # noqa: E402

_, train, val = recipe.training.prepare(args.data_dir, args.output_dir, args.workers)
model = recipe.load_kept_models(args, kse.training.strategy())[name]
size = int(name)


def dataset(part, augment):
    return kse.data.segmentation_dataset(
        [r["image"] for r in part], [r["mask"] for r in part], batch_size=8, image_size=size,
        augment=kse.data.siim_preset(size) if augment else None, shuffle=False,
        seed=1, repeat=False)


def per_image(ds, training):
    healthy, positive, stray = [], [], []
    for x, y in ds:
        p = np.asarray(model(x, training=training))[..., 0] > 0.5
        t = np.asarray(y)[..., 0] > 0.5
        for pi, ti in zip(p, t):
            inter, total = (pi & ti).sum(), pi.sum() + ti.sum()
            score = 1.0 if total == 0 else 2 * inter / total
            (positive if ti.any() else healthy).append(score)
            if not ti.any():
                stray.append(int(pi.sum()))
    return np.mean(healthy), np.mean(positive), np.mean(healthy + positive), np.median(stray)


rows = []
for training in (False, True):
    for part_name, part in (("train", train), ("validation", val)):
        for augment in (False, True):
            if part_name == "validation" and augment:
                continue
            h, p, a, s = per_image(dataset(part, augment), training)
            rows.append(f"| {part_name} | {'yes' if augment else 'no'} | "
                        f"{'training' if training else 'inference'} | {h:.3f} | {p:.3f} | "
                        f"{a:.3f} | {s:g} |")
print("| images | augmented | mode | healthy Dice | positive Dice | mean | median stray px |")
print("|---|---|---|---|---|---|---|")
print("\n".join(rows))
