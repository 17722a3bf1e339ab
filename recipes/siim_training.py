"""Training of the SIIM recipe: the report's five stages as ``kse.training.Stage`` objects.

Each stage (a JSON-friendly dict) becomes a stage of ``kse.training.ProgressiveTrainer`` with
its loss, cosine-annealed learning rate, gradient accumulation, stochastic weight averaging
from a given epoch, the kept-model weights at its end and best-epoch checkpoints on
validation loss, IoU and Dice (``kse.callbacks.WeightsCheckpoint``; the work report "SIIM-ACR
Pneumothorax Segmentation", 2019, sections 4.1.2-4.1.8 and 4.2).
"""

import os

import keras

import keras_seg_extras as kse

# (size, epochs, batch, accumulation, loss, learning rate, SWA from epoch, keep). The report
# (4.1.2, 4.1.3, 4.2) gives the sizes, epochs, the 256/512 losses, the 1e-3 / 5e-4 / 1e-5
# rates, SWA in the 512 and 768 fine-tunes and the batches; chosen here: 256 px batch 16 at
# 1e-3, the 512 fine-tune at 1e-4 with SWA over its last 3 epochs (4.1.7), Dice then focal at
# 768 mirroring the 512 pair. The demo keeps that shape at 64 -> 96 -> 128 px.
STAGE_KEYS = ("size", "epochs", "batch_size", "accumulation", "loss", "learning_rate",
              "swa_from_epoch", "keep")
REPORT_STAGES = [dict(zip(STAGE_KEYS, row)) for row in [
    (256, 75, 16, 1, "bce_dice", 1e-3, None, False), (512, 50, 4, 8, "dice", 1e-3, None, False),
    (512, 10, 4, 8, "focal", 1e-4, 8, True), (768, 45, 2, 12, "dice", 5e-4, None, False),
    (768, 19, 2, 12, "focal", 1e-5, 8, True)]]
DEMO_STAGES = [dict(zip(STAGE_KEYS, row)) for row in [
    (64, 8, 8, 1, "bce_dice", 3e-3, None, False), (96, 3, 4, 2, "dice", 1e-3, None, False),
    (96, 2, 4, 2, "focal", 3e-4, 1, True), (128, 3, 4, 2, "dice", 5e-4, None, False),
    (128, 2, 4, 2, "focal", 1e-4, 1, True)]]
LOSSES = {"bce_dice": kse.losses.BCEDiceLoss, "dice": lambda: kse.losses.DiceLoss("binary"),
          "focal": lambda: keras.losses.BinaryFocalCrossentropy(gamma=2.0),
          "lovasz": kse.losses.SymmetricLovaszLoss}


def check_stage(number, spec, error):
    """A validated copy of one stage dict; ``error(message)`` exits on a bad one."""
    if not isinstance(spec, dict):
        error(f"--stages: stage {number} must be a JSON object; received {spec!r}")
    unknown = set(spec) - set(STAGE_KEYS)
    missing = {"size", "epochs", "batch_size", "loss", "learning_rate"} - set(spec)
    if unknown or missing:
        error(f"--stages: stage {number} has unknown keys {sorted(unknown)} or lacks "
              f"{sorted(missing)}; the keys are {sorted(STAGE_KEYS)}")
    spec = {"accumulation": 1, "swa_from_epoch": None, "keep": False, **spec}
    if spec["loss"] not in LOSSES:
        error(f"--stages: stage {number} `loss` must be one of {list(LOSSES)}; "
              f"received {spec['loss']!r}")
    swa = spec["swa_from_epoch"]
    if swa is not None and not (isinstance(swa, int) and 1 <= swa <= int(spec["epochs"])):
        error(f"--stages: stage {number} `swa_from_epoch` must be an epoch of the stage, "
              f"1 to {spec['epochs']}; received {swa!r}")
    return spec


def kept_names(stages):
    return [str(spec["size"]) for spec in stages if spec["keep"]]


def prepare(data_dir, output_dir, workers=None, image_size=None, clahe=False,
            validation_fraction=0.15, seed=0):
    """Convert the DICOMs, write the masks and split (stratified on "has a mask", grouped by
    patient, 4.1.1): ``(test, train, val)`` records."""
    data = kse.data.prepare_siim(data_dir, output_dir, workers=workers, image_size=image_size,
                                 clahe=clahe, progress=True)
    for part, s in data.conversions.items():
        print(f"[convert] {part}: {s.converted} converted, {s.skipped} already done, "
              f"{len(s.failed)} failed (see {s.log_path})")
    for image_id in data.unmatched:
        print(f"[masks] {image_id}: in train-rle.csv but no converted DICOM; left out")
    train_idx, val_idx = kse.data.stratified_split(
        [r["has_mask"] for r in data.train], validation_fraction=validation_fraction,
        groups=[r["patient"] for r in data.train], seed=seed)
    train, val = [data.train[i] for i in train_idx], [data.train[i] for i in val_idx]
    for name, part in (("train", train), ("validation", val)):
        print(f"[split] {name}: {len(part)} images, {sum(r['has_mask'] for r in part)} "
              f"with pneumothorax, {len({r['patient'] for r in part})} patients")
    return data.test, train, val


def build_model(encoder, encoder_weights=None, decoder_filters=None, bn_momentum=None,
                head=False):
    """The report's U-Net++ (one sigmoid channel; with ``head``, also the image-level "has a
    mask" logit: outputs ``{"mask", "classification"}``); ``bn_momentum`` on every BatchNorm."""
    model = kse.models.UNetPlusPlus(encoder=encoder, num_classes=1, activation="sigmoid",
                                    encoder_weights=encoder_weights,
                                    decoder_filters=decoder_filters,
                                    classification_head=1 if head else None)
    if bn_momentum is not None:
        kse.training.set_batchnorm_momentum(model, bn_momentum)
    return model


def kept_path(output_dir, name):
    """The weights file of the model kept at the end of the stage of size ``name``."""
    return os.path.join(output_dir, "models", f"model_{name}.weights.npz")


def stage_callbacks(output_dir, index, spec, first_epoch, train_data, prefix=""):
    """SWA (when asked), the kept-model save after it, and the stage's three checkpoints
    (per stage: the loss changes between stages; the report checkpointed each run, 4.1.8)."""
    callbacks = []
    if spec["swa_from_epoch"] is not None:  # BN statistics of the average: 16 batches of 4
        callbacks.append(kse.callbacks.StochasticWeightAveraging(
            start_epoch=first_epoch + spec["swa_from_epoch"] - 1,
            bn_data=train_data(spec["size"], 4).take(16), name=f"stage{index + 1}"))
    if spec["keep"]:
        callbacks.append(kse.callbacks.WeightsCheckpoint(kept_path(output_dir, spec["size"]),
                                                         monitor=None))
    folder = os.path.join(output_dir, "best", f"stage{index + 1}_{spec['size']}px")
    for metric, mode in (("loss", "min"), ("iou", "max"), ("dice", "max")):
        callbacks.append(kse.callbacks.WeightsCheckpoint(
            os.path.join(folder, f"best_{metric}.weights.npz"),
            f"val_{'' if metric == 'loss' else prefix}{metric}", mode))
    return callbacks


def _with_head_target(images, masks):
    """The head's target: 1 when the (augmented) mask is non-empty."""
    import tensorflow as tf

    has_mask = tf.reduce_max(tf.cast(masks, tf.float32), axis=[1, 2, 3]) > 0.5
    has_mask = tf.cast(has_mask, tf.float32)[:, None]
    return images, {"mask": masks, "classification": has_mask}


def build_trainer(model, stages, train, val, output_dir, seed=0, steps_per_epoch=None,
                  strategy=None, head=False):
    """A ``ProgressiveTrainer`` of ``model`` over the checked ``stages`` on the records; with
    ``head``, the "classification" output is trained with BCE on "mask non-empty"."""
    def dataset(part, size, batch_size, training):
        data = kse.data.segmentation_dataset(
            [r["image"] for r in part], [r["mask"] for r in part], batch_size=batch_size,
            image_size=size, augment=kse.data.siim_preset(size) if training else None,
            shuffle=training, seed=seed, repeat=training)
        return data.map(_with_head_target) if head else data

    def loss(name):
        if not head:
            return LOSSES[name]()
        return {"mask": LOSSES[name](),
                "classification": keras.losses.BinaryCrossentropy(from_logits=True)}

    def train_data(size, batch_size):
        return dataset(train, size, batch_size, True)

    trainer_stages, first = [], 0
    for index, spec in enumerate(stages):
        lr = float(spec["learning_rate"])
        trainer_stages.append(kse.training.Stage(
            image_size=int(spec["size"]), epochs=int(spec["epochs"]),
            batch_size=int(spec["batch_size"]), accumulation_steps=int(spec["accumulation"]),
            loss=loss(spec["loss"]),
            learning_rate=lambda total, lr=lr: kse.training.CosineAnnealingWithWarmup(lr, total),
            callbacks=stage_callbacks(output_dir, index, spec, first, train_data,
                                      "mask_" if head else ""),
            steps_per_epoch=steps_per_epoch or -(-len(train) // int(spec["batch_size"])),
            name=f"stage{index + 1}_{spec['size']}px_{spec['loss']}"))
        first += int(spec["epochs"])
    metrics = [kse.metrics.DiceCoefficient(name="dice"), kse.metrics.IoUScore(name="iou")]
    logs = [keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")),
            keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True)]
    return kse.training.ProgressiveTrainer(
        model, trainer_stages, train_data=train_data, callbacks=logs, strategy=strategy,
        validation_data=lambda size, batch: dataset(val, size, batch, False), verbose=2,
        metrics={"mask": metrics} if head else metrics,
        checkpoint_dir=os.path.join(output_dir, "checkpoints"))


def load_kept_models(stages, output_dir, build, strategy):
    """{name: model}: ``build()`` in ``strategy``'s scope, with each kept stage's weights."""
    models = {}
    for name in kept_names(stages):
        with strategy.scope():
            models[name] = kse.callbacks.load_weights_npz(build(), kept_path(output_dir, name))
    return models


def print_last_epochs(trainer, histories):
    """The last epoch's Keras metrics of each stage ``trainer.fit()`` ran (all, or the rest)."""
    for stage, history in zip(trainer.stages[len(trainer.stages) - len(histories):], histories):
        logs = {k.replace("mask_", ""): v[-1] for k, v in history.history.items()}
        print(f"[train] {stage.name}: train Dice {logs.get('dice', float('nan')):.4f}, "
              f"validation Dice {logs.get('val_dice', float('nan')):.4f}, IoU "
              f"{logs.get('val_iou', float('nan')):.4f} (Keras metrics, model size, 0.5)")
