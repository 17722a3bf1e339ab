"""Validation scores, submission and preview of the SIIM recipe, streamed at original size.

Every prediction goes through the model that is exported: each kept model wrapped in
horizontal-flip TTA and resized to its training size inside the graph
(``kse.inference.ensemble([with_tta(model)], resolutions=[(s, s)])``), so it takes a PNG at its
stored size and returns probabilities at that size; the ensemble is the mean of the members'
probabilities, what ``kse.inference.ensemble`` computes as one graph. Probabilities are then
resized to the image's original (DICOM) size, thresholded there, and components of at most
the minimum area (given at 1024 px, scaled to the image) are removed
(``kse.inference.PostprocessingSearch`` / ``postprocess_at_size``).

Nothing holds all images: batches of ``batch_size`` PNGs are predicted, scored or encoded,
and dropped; what stays is a few integers per image and setting.
"""

import csv

import numpy as np

PREVIEW_COLUMNS = ("image", "truth", "prediction")


def read_png(path, flags=None):
    import cv2

    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE if flags is None else flags)
    if image is None:
        raise ValueError(f"siim_pneumothorax: cannot read image {path!r}")
    return image


def served_member(model, size):
    """``model`` with h-flip TTA, resized to ``size`` inside the graph: any input size."""
    import keras_seg_extras as kse

    return kse.inference.ensemble([kse.inference.with_tta(model, "hflip")],
                                  resolutions=[(size, size)], name=f"{model.name}_served")


def served_ensemble(models, sizes):
    """The mean of ``models`` (TTA, each at its size) as one graph for any input size."""
    import keras_seg_extras as kse

    return kse.inference.ensemble([kse.inference.with_tta(m, "hflip") for m in models],
                                  resolutions=[(s, s) for s in sizes], name="siim_ensemble")


def predictions(served, records, batch_size):
    """Yield ``(record, {name: probabilities (h, w) at the PNG's size})`` one image at a time.

    ``served`` maps names to served models. Consecutive images of the same size are
    predicted as one batch of at most ``batch_size``.
    """
    batch, shape = [], None

    def flush():
        images = np.stack([image for _, image in batch]).astype("float32")
        images = np.repeat(images[..., None], 3, axis=-1)
        outputs = {name: np.asarray(model.predict_on_batch(images))[..., 0]
                   for name, model in served.items()}
        for i, (record, _) in enumerate(batch):
            yield record, {name: out[i] for name, out in outputs.items()}

    for record in records:
        image = read_png(record["image"])
        if batch and (image.shape != shape or len(batch) == batch_size):
            yield from flush()
            batch = []
        batch.append((record, image))
        shape = image.shape
    if batch:
        yield from flush()


def evaluate(served, val, args, preview_ids=()):
    """Score every kept model and their mean on validation over the post-processing grid.

    Returns:
        ``(scores, previews)``: ``scores[name]`` is a ``PostprocessingSearch`` per model and
        for ``"ensemble"``; ``scores["baseline"]`` the all-empty prediction's Dice and IoU;
        ``previews[id] = {name: probabilities}`` for the ids in ``preview_ids``.
    """
    import keras_seg_extras as kse

    names = list(served) + (["ensemble"] if len(served) > 1 else [])
    searches = {name: kse.inference.PostprocessingSearch(args.thresholds, args.min_areas)
                for name in names}
    empty, previews = [], {}
    for record, outputs in predictions(served, val, args.predict_batch_size):
        truth = (read_png(record["mask"]) > 127).astype(np.uint8)
        if len(served) > 1:
            outputs["ensemble"] = np.mean(list(outputs.values()), axis=0)
        for name in names:
            searches[name].update(outputs[name], truth)
        empty.append(not truth.any())
        if record["id"] in preview_ids:
            previews[record["id"]] = outputs
    baseline = float(np.mean(empty)) if empty else float("nan")
    # Predicting nothing scores 1 on a healthy image and 0 elsewhere, in Dice and IoU alike.
    return searches, {"dice": baseline, "iou": baseline}, previews


def summary(search, plain_threshold=0.5):
    """Best setting of one model, and its plain score (threshold 0.5, no removal) if gridded."""
    out = search.best()
    if plain_threshold in search.thresholds and 0 in search.min_areas:
        out["at_threshold_0.5_no_removal"] = search.score(plain_threshold, 0)
    return out


def write_submission(path, served, test, threshold, min_area, batch_size):
    """``submission.csv`` (SIIM RLE) at each test image's original size, streamed.

    ``served`` is the submitted model (one kept model or the ensemble as one graph).
    """
    import keras_seg_extras as kse

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "EncodedPixels"])
        for record, outputs in predictions({"submitted": served}, test, batch_size):
            mask = kse.inference.postprocess_at_size(outputs["submitted"], record["shape"],
                                                     threshold, min_area)
            writer.writerow([record["id"], kse.data.rle.encode_siim(mask)])
    return path


def save_preview(path, val, previews, name, threshold, min_area):
    """Image, truth and post-processed prediction of the previewed validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import keras_seg_extras as kse

    shown = [r for r in val if r["id"] in previews]
    if not shown:
        return None
    figure, axes = plt.subplots(len(shown), 3, figsize=(7.5, 2.5 * len(shown)), squeeze=False)
    for row, record in enumerate(shown):
        truth = read_png(record["mask"])
        predicted = kse.inference.postprocess_at_size(previews[record["id"]][name], truth.shape,
                                                      threshold, min_area)
        for col, picture in enumerate((read_png(record["image"]), truth, predicted)):
            axes[row, col].imshow(picture, cmap="gray")
            axes[row, col].set_title(PREVIEW_COLUMNS[col] if row == 0 else "")
            axes[row, col].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def largest_masks(val, count):
    """Ids of the ``count`` validation images with the most mask pixels (previewed)."""
    areas = [(int((read_png(r["mask"]) > 127).sum()), r["id"]) for r in val]
    return {image_id for _, image_id in sorted(areas, reverse=True)[:count]}


def peak_memory_mib():
    """Peak resident memory of this process so far (Linux ``ru_maxrss``), in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
