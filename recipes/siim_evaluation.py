"""Validation scores, submission and preview of the SIIM recipe, streamed at original size.

Every prediction goes through the served model (``kse.inference.served_model``: h-flip TTA
and each member's training size inside the graph, the ensemble as the members' mean), which is
what is saved and exported. Probabilities are resized to each image's original size, then
thresholded and cleaned there (``kse.inference.PostprocessingSearch``, ``postprocess_at_size``);
with an image-level head, its probability gates the empty-mask rule
(``kse.inference.apply_image_gate``). Nothing holds all images (``kse.inference.predict_stream``).
"""

import numpy as np

import keras_seg_extras as kse

PREVIEW_COLUMNS = ("image", "truth", "prediction")


def served_models(models, head=False):
    """{name: served model} of each kept model (TTA, resized to its size in the graph), and
    with the head {name: its served "has a mask" probability} (else None)."""
    output = "mask" if head else None
    served = {n: kse.inference.served_model(m, int(n), output=output) for n, m in models.items()}
    return served, ({n: kse.inference.served_classifier(m, int(n)) for n, m in models.items()}
                    if head else None)


def submitted_model(models, submit, head=False):
    """The served model of ``submit`` (a kept model's name, or "ensemble": the members' mean as
    one graph) and the served head probability of the same members (None without the head)."""
    members = list(models) if submit == "ensemble" else [submit]
    chosen, sizes = [models[n] for n in members], [int(n) for n in members]
    ensemble = len(members) > 1
    served = kse.inference.served_model(chosen if ensemble else chosen[0], sizes,
                                        name="siim_ensemble" if ensemble else None,
                                        output="mask" if head else None)
    return served, (kse.inference.served_classifier(chosen, sizes) if head else None)


def _images(records):
    return (kse.data.read_grayscale_png(r["image"]) for r in records)


def _truth(record):
    return (kse.data.read_grayscale_png(record["mask"]) > 127).astype(np.uint8)


def evaluate(served, val, thresholds, min_areas, batch_size, preview_ids=(), heads=None,
             gates=None):
    """Score each served model, and their mean, on validation over the post-processing grid.

    Args:
        served: ``{name: served model}``; with several, ``"ensemble"`` (their mean) is scored
            as well.
        heads: optional ``{name: image-level classifier}`` of the same names, searched over
            ``gates`` (the ensemble's probability is the heads' mean).

    Returns:
        ``(searches, baseline, previews)``: a ``PostprocessingSearch`` per name; the
        all-empty prediction's ``{"dice", "iou"}``; ``{id: {name: probabilities}}`` for the
        ids in ``preview_ids``.
    """
    names = list(served) + (["ensemble"] if len(served) > 1 else [])
    searches = {name: kse.inference.PostprocessingSearch(
        thresholds, min_areas, gates=gates if heads else None) for name in names}
    models = dict(served, **{f"head:{name}": head for name, head in (heads or {}).items()})
    truth_pixels, previews = [], {}
    for record, outputs in zip(val, kse.inference.predict_stream(models, _images(val),
                                                                  batch_size)):
        truth = _truth(record)
        if len(served) > 1:
            outputs["ensemble"] = np.mean([outputs[n] for n in served], axis=0)
            if heads:
                outputs["head:ensemble"] = np.mean([outputs[f"head:{n}"] for n in served])
        for name in names:
            gate = {"image_probability": float(outputs[f"head:{name}"])} if heads else {}
            searches[name].update(outputs[name], truth, **gate)
        truth_pixels.append(int(truth.sum()))
        if record["id"] in preview_ids:
            previews[record["id"]] = outputs
    dice, iou = kse.inference.per_image_dice_iou(0, 0, np.asarray(truth_pixels))
    return searches, {"dice": float(dice.mean()), "iou": float(iou.mean())}, previews


def summary(search, plain_threshold=0.5):
    """Best setting of one search, its plain score (threshold 0.5, no removal) if gridded,
    and, with gates, its best setting without the gate (the segmentation-only rule)."""
    out = search.best()
    ungated = {} if search.gates is None else {"gate": 0.0}
    if plain_threshold in search.thresholds and 0 in search.min_areas \
            and (not ungated or 0.0 in search.gates):
        out["at_threshold_0.5_no_removal"] = search.score(plain_threshold, 0, **ungated)
    if ungated:  # the best setting with the gate off (g = 0) and with it on (g > 0)
        for key, rows in (("segmentation_only", search.gates == 0),
                          ("best_with_gate", search.gates > 0)):
            if not rows.any():
                continue
            dice = np.where(rows[:, None, None], search.dice(), -1.0)
            g, t, a = np.unravel_index(int(np.argmax(dice)), dice.shape)
            setting = {"gate": float(search.gates[g]), "threshold": float(search.thresholds[t]),
                       "min_area": float(search.min_areas[a])}
            out[key] = dict(setting, **search.score(setting["threshold"], setting["min_area"],
                                                    gate=setting["gate"]))
    return out


def results(searches, baseline, submit, count):
    """The run's validation results (``results.json``'s scores) for the ``submit`` model."""
    scores = {name: summary(search) for name, search in searches.items()}
    chosen = scores[submit]
    print(f"[validation] {count} images at original size, h-flip TTA; all-empty baseline: "
          f"Dice {baseline['dice']:.4f}, IoU {baseline['iou']:.4f}")
    for name, score in scores.items():
        print(f"[validation] {name}: Dice {score['dice']:.4f}, IoU {score['iou']:.4f} at "
              f"threshold {score['threshold']}, min area {score['min_area']:g} px at 1024")
    if "gate" in chosen:
        for key in ("segmentation_only", "best_with_gate"):
            score = chosen.get(key, {})
            print(f"[validation] {submit} {key}: Dice {score.get('dice', float('nan')):.4f}, "
                  f"IoU {score.get('iou', float('nan')):.4f} (gate {score.get('gate')})")
    return {"models": scores, "baseline": baseline, "submitted": submit,
            **({"gate": chosen["gate"]} if "gate" in chosen else {}),
            "threshold": chosen["threshold"], "min_area": chosen["min_area"],
            "min_area_reference_size": 1024, "dice": chosen["dice"], "iou": chosen["iou"],
            "validation_images": count}


def write_submission(path, served, test, threshold, min_area, batch_size, head=None,
                     gate=0.0):
    """``submission.csv`` (SIIM RLE) at each test image's original size, streamed."""
    models = {"mask": served, **({"head": head} if head is not None else {})}

    def masks():
        for record, out in zip(test, kse.inference.predict_stream(models, _images(test),
                                                                  batch_size)):
            mask = kse.inference.postprocess_at_size(out["mask"], record["shape"], threshold,
                                                     min_area)
            if head is not None:
                mask = kse.inference.apply_image_gate(mask, float(out["head"]), gate)
            yield record["id"], mask

    kse.data.write_siim_submission(path, masks())
    return path


def save_preview(path, val, previews, name, threshold, min_area):
    """Image, truth and post-processed prediction of the previewed validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in val if r["id"] in previews]
    if not shown:
        return None
    figure, axes = plt.subplots(len(shown), 3, figsize=(7.5, 2.5 * len(shown)), squeeze=False)
    for row, record in enumerate(shown):
        truth = kse.data.read_grayscale_png(record["mask"])
        predicted = kse.inference.postprocess_at_size(previews[record["id"]][name], truth.shape,
                                                      threshold, min_area)
        image = kse.data.read_grayscale_png(record["image"])
        for col, picture in enumerate((image, truth, predicted)):
            axes[row, col].imshow(picture, cmap="gray")
            axes[row, col].set_title(PREVIEW_COLUMNS[col] if row == 0 else "")
            axes[row, col].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def largest_masks(val, count):
    """Ids of the ``count`` validation images with the most mask pixels (previewed)."""
    areas = [(int(_truth(r).sum()), r["id"]) for r in val]
    return {image_id for _, image_id in sorted(areas, reverse=True)[:count]}


def peak_memory_mib():
    """Peak resident memory of this process so far (Linux ``ru_maxrss``), in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
