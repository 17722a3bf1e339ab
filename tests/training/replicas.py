"""One 2-replica MirroredStrategy (the 2 logical CPUs of conftest.py) shared by the tests.

Several MirroredStrategy objects in one process can hand out colliding collective instance
keys (TensorFlow then aborts with "Shape mismatch in the collective instance"), so every test
of this package that needs two replicas takes this one.
"""

import functools


@functools.lru_cache(maxsize=None)
def two_cpu_replicas():
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
