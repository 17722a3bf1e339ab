"""keras_seg_extras.datasets: small real sample sets shipped with the package (no download).

- nuclei (``nuclei.py``): fluorescence microscopy nuclei (BBBC038, CC0), binary masks, split by
  quadrant: :func:`load_nuclei`, :func:`load_nuclei_image`;
- brain (``brain.py``): T1 MRI with the 116-region AAL atlas (mricron-data, BSD-3-Clause),
  split by slab: :func:`load_brain`, :func:`load_brain_volume`, :func:`brain_region_names`,
  :func:`fold_brain_regions`, :func:`brain_slab_split`, :func:`brain_labelled_slices`.

The modules keep Keras's ``keras.datasets.<name>.load_data`` spelling
(``kse.datasets.brain.load_data`` is :func:`load_brain`); the flat names carry the data set's
name so that both fit in one namespace. Provenance and licences: ``PROVENANCE.md`` here.
"""

from keras_seg_extras.datasets.brain import fold_regions as fold_brain_regions
from keras_seg_extras.datasets.brain import labelled_slices as brain_labelled_slices
from keras_seg_extras.datasets.brain import load_data as load_brain
from keras_seg_extras.datasets.brain import load_volume as load_brain_volume
from keras_seg_extras.datasets.brain import region_names as brain_region_names
from keras_seg_extras.datasets.brain import slab_split as brain_slab_split
from keras_seg_extras.datasets.nuclei import load_data as load_nuclei
from keras_seg_extras.datasets.nuclei import load_image as load_nuclei_image

__all__ = [
    "brain_labelled_slices", "brain_region_names", "brain_slab_split", "fold_brain_regions",
    "load_brain", "load_brain_volume", "load_nuclei", "load_nuclei_image",
]
