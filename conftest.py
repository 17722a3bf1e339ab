"""Test-session setup shared by the whole suite: the tests under tests/ and the doctests of
keras_seg_extras/ (at the repository root so that both get it, also when only one is run).

Two logical CPU devices are configured before TensorFlow initialises, so that tests can
compare a 2-replica ``tf.distribute.MirroredStrategy`` against one device on any machine.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf  # noqa: E402

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )


# ----------------------------------------------------------------------------- no network
# No test may reach the network (a download would make the suite slow, flaky and dependent on
# third parties). Any connection to an address outside the loopback interface fails loudly
# with NetworkAccessError, also when the code catches OSError and would fall back silently.
# Loopback stays open: TensorFlow's collectives and local servers use it.

import socket  # noqa: E402


class NetworkAccessError(AssertionError):
    """Raised when a test tries to connect to a non-loopback address."""


def _is_loopback(address):
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # Unix-domain sockets (str / bytes paths) never leave the machine
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).lower()
    return (host in ("localhost", "ip6-localhost", "::1", "0.0.0.0", "")
            or host.startswith("127.") or host.startswith("::ffff:127."))


def _guarded(original):
    def connect(self, address, *args, **kwargs):
        if not _is_loopback(address):
            raise NetworkAccessError(
                f"tests must not reach the network: a connection to {address!r} was attempted")
        return original(self, address, *args, **kwargs)

    return connect


socket.socket.connect = _guarded(socket.socket.connect)
socket.socket.connect_ex = _guarded(socket.socket.connect_ex)
_original_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    """Name resolution of anything but loopback names is a network access too (DNS)."""
    if host is not None and not _is_loopback((host,)):
        raise NetworkAccessError(
            f"tests must not reach the network: a name lookup of {host!r} was attempted")
    return _original_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo


# ----------------------------------------------------------------------------- collection
# --doctest-modules (setup.cfg) imports every .py file under the testpaths. Under tests/ only
# the test files are collected: the helpers are imported by the tests that need them, and some
# must not be imported in this process (tests/backends/local_adaptive_check.py runs in a
# subprocess under another Keras backend).

import pathlib  # noqa: E402

_TESTS = pathlib.Path(__file__).resolve().parent / "tests"


def pytest_ignore_collect(collection_path, config):
    path = pathlib.Path(collection_path).resolve()
    if (path.suffix == ".py" and _TESTS in path.parents and not path.name.startswith("test_")
            and path.name != "conftest.py"):
        return True
    return None


@pytest.fixture
def rng():
    """A seeded NumPy generator, fresh for each test."""
    return np.random.default_rng(20261123)
