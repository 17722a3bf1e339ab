"""Pick the right ``tf.distribute`` strategy for the machine (TensorFlow only).

TensorFlow is imported inside :func:`strategy`, so importing ``keras_seg_extras.training``
does not load it.
"""

import json
import os

from keras_seg_extras._common import fail

_OWNER = "strategy"


def _cluster_size(raw):
    """Number of tasks (chief + workers) in a TF_CONFIG string; raises on malformed JSON."""
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        fail(_OWNER, "TF_CONFIG", raw, f"must be JSON ({error})")
    if not isinstance(config, dict):
        fail(_OWNER, "TF_CONFIG", raw, "must be a JSON object")
    cluster = config.get("cluster") or {}
    if not isinstance(cluster, dict):
        fail(_OWNER, "TF_CONFIG", raw, "must have a `cluster` object")
    tasks = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if tasks > 1 and not isinstance(config.get("task"), dict):
        fail(_OWNER, "TF_CONFIG", raw, "must name this process's `task` (type and index)")
    return tasks


def strategy(communication="auto"):
    """The distribution strategy for this process.

    - ``MultiWorkerMirroredStrategy`` when the ``TF_CONFIG`` environment variable describes
      a cluster of more than one task (chief/workers): synchronous data parallelism across
      machines (or processes), gradients all-reduced each step.
    - ``MirroredStrategy`` over all visible GPUs when there are more than one.
    - The default (no-op) strategy otherwise: one CPU or one GPU.

    Build and compile the model inside ``strategy().scope()`` and give ``fit`` the global
    batch (per replica x ``num_replicas_in_sync``). Every worker runs the same script; the
    chief (worker 0) should be the only one that writes checkpoints and logs.

    Args:
        communication: ``"auto"``, ``"ring"`` or ``"nccl"``, the collective implementation
            for the multi-worker case.

    Returns:
        A ``tf.distribute.Strategy``.

    Example:
        >>> import keras
        >>> with strategy().scope():   # one CPU here: the default strategy
        ...     inputs = keras.Input((3,))
        ...     model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        ...     model.compile(optimizer="adam", loss="mse")
        >>> strategy().num_replicas_in_sync >= 1
        True
    """
    import tensorflow as tf

    choices = {"auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
               "ring": tf.distribute.experimental.CommunicationImplementation.RING,
               "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}
    if communication not in choices:
        fail(_OWNER, "communication", communication, "must be one of 'auto', 'ring', 'nccl'")
    raw = os.environ.get("TF_CONFIG", "").strip()
    if raw and _cluster_size(raw) > 1:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=choices[communication])
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
