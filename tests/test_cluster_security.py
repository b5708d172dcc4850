"""The narrowed TensorFlowOnSpark reservation server: loopback or driver address only, plain
data only, bounded messages."""

import os
import pickle
import socket
import struct

import pytest

from gan_lib import cluster


@pytest.fixture
def server(monkeypatch):
    from tensorflowonspark import reservation
    monkeypatch.setenv("TFOS_SERVER_HOST", "127.0.0.1")
    cluster._patch_library()
    instance = reservation.Server(1)
    address = instance.start()
    yield instance, address
    instance.stop()


def _send(address, payload: bytes) -> socket.socket:
    connection = socket.create_connection(address, timeout=5)
    connection.sendall(struct.pack(">I", len(payload)) + payload)
    return connection


def _receive(connection):
    from tensorflowonspark import reservation
    return reservation.MessageSocket().receive(connection)


def _dropped(connection) -> bool:
    """The server closed the connection instead of answering."""
    connection.settimeout(3)
    try:
        return connection.recv(16) == b""
    except ConnectionResetError:
        return True
    finally:
        connection.close()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_server_listens_on_the_given_address_only(server):
    _, address = server
    assert address[0] == "127.0.0.1"


def test_a_pickle_that_would_run_code_is_refused(server, tmp_path):
    _, address = server
    marker = str(tmp_path / "pwned")
    connection = _send(address, pickle.dumps({"type": "REG", "data": _RunsCode(marker)}))
    assert _dropped(connection)
    assert not os.path.exists(marker)


def test_plain_registration_messages_still_work(server):
    instance, address = server
    connection = _send(address, pickle.dumps({"type": "REG", "data": {"host": "127.0.0.1",
                                                                      "executor_id": 0}}))
    assert _receive(connection) == "OK"
    connection.close()
    assert instance.reservations.done()


def test_oversized_messages_are_refused_before_they_are_read(server):
    _, address = server
    connection = socket.create_connection(address, timeout=5)
    connection.sendall(struct.pack(">I", 50 * 1024 * 1024) + b"x" * 1024)
    assert _dropped(connection)


def test_worker_error_extraction_names_the_exception_line():
    text = ("org.apache.spark.SparkException: Job aborted\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in f\nRuntimeError: injected failure at step 3\n\n\tat org')
    assert cluster._failure_message(text) == (
        "a TensorFlow worker failed: RuntimeError: injected failure at step 3")


def test_lost_executor_message_names_the_executor():
    text = ("Job aborted due to stage failure: Task 1 in stage 3.0 failed 1 times, most recent "
            "failure: Lost task 1.0 in stage 3.0 (TID 4) (127.0.0.1 executor 1): "
            "ExecutorLostFailure (executor 1 exited caused by one of the running tasks) "
            "Reason: Command exited with code 137\n")
    assert cluster._failure_message(text) == (
        "TensorFlow worker on executor 1 was lost: Command exited with code 137")
