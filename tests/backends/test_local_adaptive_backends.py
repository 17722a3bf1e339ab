"""LocallyAdaptiveLoss on JAX and PyTorch, each in a subprocess (keras fixes its backend at
import): see local_adaptive_check.py for what is checked."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_locally_adaptive_loss_on_backend_matches_numpy_on_compiled_paths(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, os.path.join(HERE, "local_adaptive_check.py")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{backend} backend ok" in result.stderr
