"""Reading a callback's saved state straight from a ``.keras`` or ``.weights.h5`` file.

Keras restores a callback's state (attached to the model as a saveable attribute) only into a
model that already carries it; a model built or loaded fresh does not, so a resumed run would
silently start over. Callbacks take ``resume_from=<file>`` and read their entries here.
"""

import io
import os
import zipfile

import numpy as np

from keras_seg_extras._common import fail


def read_saved_entries(owner, path, attribute, what):
    """``{key: array}`` saved under the model attribute ``attribute`` in ``path``.

    Args:
        owner: the callback's name, for errors.
        path: a ``.keras`` archive or a ``.weights.h5`` file.
        attribute: the model attribute holding the state (its group in the HDF5 file).
        what: what the state is, for the error when the file lacks it.

    Raises:
        ValueError: naming the file when it is missing, not a Keras weights file, or
            holds no such state.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        fail(owner, "resume_from", path, "must be an existing .keras or .weights.h5 file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                fail(owner, "resume_from", path, "is a .keras file without model.weights.h5")
            handle = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    else:
        try:
            handle = h5py.File(path, "r")
        except OSError:
            fail(owner, "resume_from", path, "must be a .keras or .weights.h5 file")
    with handle:
        group = handle.get(f"{attribute}/vars")
        if group is None:
            fail(owner, "resume_from", path, f"holds no {what} (saved by a run with this "
                 "callback, after it attached its state)")
        return {key: np.asarray(group[key]) for key in group.keys()}
