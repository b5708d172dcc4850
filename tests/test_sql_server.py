"""hdp-gan sql-server on the embedded default: beeline-compatible clients reach the project's
tables, and what people hit in practice (a port in use, the embedded metastore held by the
server) fails in one line that says what to do."""

import collections
import signal
import socket

import pytest
from pyarrow import dataset

from jobs import sql_server
from services import ThriftServer, free_port, wait_for_port_closed


@pytest.fixture(scope="module")
def served_root(fashion_root, tmp_path_factory):
    """The fashion root's embedded metastore, served by hdp-gan sql-server."""
    log = tmp_path_factory.mktemp("sql-server") / "server.log"
    server = ThriftServer(["--root", fashion_root, "--executors", 1], log).start()
    yield fashion_root, server
    server.stop()


def test_sql_server_answers_hiveserver2_clients_from_the_embedded_metastore(served_root):
    from pyhive import hive

    root, server = served_root
    stored = dataset.dataset(root / "warehouse" / "hdp_gan.db" / "images",
                             partitioning="hive").to_table(columns=["split"])
    wanted = sorted(collections.Counter(stored.column("split").to_pylist()).items())
    connection = hive.connect(host="127.0.0.1", port=server.port, auth="NONE",
                              username="analyst", database="hdp_gan")
    cursor = connection.cursor()
    cursor.execute("SELECT split, count(*) FROM images GROUP BY split ORDER BY split")
    rows = cursor.fetchall()
    connection.close()
    assert rows == wanted and len(wanted) == 2


def test_a_job_on_a_root_whose_embedded_metastore_is_held_fails_in_one_line(served_root, job):
    root, _ = served_root
    result = job("sql", "--root", root, "SELECT 1")
    assert result.code == 1
    assert "embedded metastore" in result.last_error_line
    assert "in use by another process" in result.last_error_line
    assert "--metastore-jdbc-url" in result.last_error_line
    assert "Traceback" not in result.stderr


def test_sql_server_refuses_a_port_in_use_in_one_line(job, tmp_path):
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        result = job("sql-server", "--root", tmp_path, "--port", port)
    assert result.code == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.last_error_line
    assert "--port" in result.last_error_line
    assert not (tmp_path / "_local" / "metastore_db").exists()


def test_a_port_whose_last_connections_linger_in_time_wait_is_free_to_serve_on(job, tmp_path):
    port = free_port()
    with socket.socket() as listener:  # a server stopped a moment ago, a client still on it
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Java's sockets
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first: its end waits in TIME_WAIT
        client.close()
    sql_server.check_port_free("127.0.0.1", port)


def test_sql_server_stops_the_thrift_server_when_its_terminal_hangs_up(tmp_path):
    server = ThriftServer(["--root", tmp_path, "--executors", 1], tmp_path / "server.log")
    server.start()
    try:
        server.process.send_signal(signal.SIGHUP)
        assert server.process.wait(timeout=60) == 0
        wait_for_port_closed(server.port, 60)
    finally:
        server.stop()


def test_a_sql_server_killed_outright_takes_its_thrift_server_with_it(tmp_path):
    """SIGKILL leaves the command no chance to stop the server; left running, the server
    held the embedded metastore, and every later job on the root waited and failed."""
    server = ThriftServer(["--root", tmp_path, "--executors", 1], tmp_path / "server.log")
    server.start()
    try:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=60)
        wait_for_port_closed(server.port, 60)
    finally:
        server.stop()


def test_a_metastore_that_does_not_answer_fails_in_one_line_without_its_password(job, tmp_path):
    port = free_port()  # nothing listens there
    url = f"jdbc:derby://127.0.0.1:{port}/metastore;user=app;password=TOPSECRET"
    result = job("runs", "--root", tmp_path, "--metastore-jdbc-url", url)
    assert result.code == 1
    assert f"the metastore does not answer at 127.0.0.1:{port}" in result.last_error_line
    assert "TOPSECRET" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) < 5


def test_a_job_waits_for_a_metastore_lock_that_is_released_soon(job, tmp_path):
    """A finished job's JVM can hold Derby's lock for a moment: the next command waits."""
    import subprocess
    import sys

    first = job("sql", "--root", tmp_path, "SHOW TABLES")
    assert first.code == 0, first.stderr[-2000:]
    lock = tmp_path / "_local" / "metastore_db" / "dbex.lck"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "handle = open(sys.argv[1], 'r+b'); fcntl.lockf(handle, fcntl.LOCK_EX)\n"
         "print('held', flush=True); time.sleep(8)", str(lock)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"

    second = job("sql", "--root", tmp_path, "SHOW TABLES")
    holder.wait(timeout=30)
    assert second.code == 0, second.stderr[-2000:]
    assert "waiting up to" in second.stderr


def test_sql_server_runs_spark_inside_its_own_jvm_unless_a_master_is_given(tmp_path):
    from gan_lib.config import Settings, with_overrides
    from jobs import sql_server

    args = sql_server.build_parser().parse_args(["--port", "10123"])
    settings = Settings(root=str(tmp_path / "r"))
    default = sql_server.server_command(args, settings)
    on_yarn = sql_server.server_command(args, with_overrides(settings, master="yarn"))
    assert default[default.index("--master") + 1] == "local[2]"
    assert on_yarn[on_yarn.index("--master") + 1] == "yarn"
