"""The suite's network guard: non-loopback connections fail loudly.

The guard is in conftest.py at the repository root, so it covers the doctests too.
"""

import socket
import urllib.request

import pytest

# conftest's NetworkAccessError subclasses AssertionError (importing conftest again would
# re-run its TensorFlow device setup).
NetworkAccessError = AssertionError


def test_connection_to_the_internet_fails_loudly():
    with pytest.raises(NetworkAccessError, match="must not reach the network.*93.184.216.34"):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    with pytest.raises(NetworkAccessError, match="name lookup of 'example.com'"):
        urllib.request.urlopen("http://example.com", timeout=1)


def test_loopback_stays_open():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    accepted, _ = server.accept()
    client.sendall(b"ok")
    assert accepted.recv(2) == b"ok"
    for handle in (client, accepted, server):
        handle.close()


def test_pydicom_test_files_are_read_locally():
    from pydicom.data import get_testdata_file

    # What tests/data/test_dicom.py asks for exists offline (pydicom-data or pydicom itself).
    assert get_testdata_file("CT_small.dcm", download=False) is not None
