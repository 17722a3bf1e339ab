"""keras_seg_extras.datasets: small real sample sets shipped with the package.

- ``nuclei``: fluorescence microscopy nuclei (BBBC038, CC0), binary masks, spatial split.
- ``brain``: T1 MRI with the 116-region AAL atlas (mricron-data, BSD-3-Clause), split by slab.

Provenance and licences: ``PROVENANCE.md`` in this folder.
"""

from keras_seg_extras.datasets import brain  # noqa: F401
from keras_seg_extras.datasets import nuclei  # noqa: F401
