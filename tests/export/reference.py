"""The NumPy reference every export test compares served outputs with."""

import numpy as np


def padded_prediction(model, images, multiple=32):
    """Zero-pad bottom/right to a multiple of 32 (NumPy), predict with Keras, crop back."""
    height, width = images.shape[1:3]
    padded = np.zeros((images.shape[0], -(-height // multiple) * multiple,
                       -(-width // multiple) * multiple, images.shape[3]), np.float32)
    padded[:, :height, :width] = images
    return np.asarray(model(padded, training=False))[:, :height, :width]


def import_blocker(*names):
    """Python source that makes a fresh process unable to import ``names`` (a meta-path finder
    that raises on them, ahead of every other finder, the editable install's included), then
    tries each and records in ``blocked`` those whose import failed."""
    return f"""
import importlib, importlib.abc, sys

BLOCKED = {names!r}


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this process")
        return None


sys.meta_path.insert(0, Block())
blocked = []
for name in BLOCKED:
    try:
        importlib.import_module(name)
    except ImportError:
        blocked.append(name)
"""
