"""Services the cluster-protocol tests start on loopback: Derby's network server (a metastore
database that several Spark processes share, as a cluster's metastore is shared) and Spark's
Thrift server (a HiveServer2 endpoint for beeline and PyHive)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DERBY_JARS = ("/usr/share/java/derbynet.jar", "/usr/share/java/derby.jar",
              "/usr/share/java/derbytools.jar", "/usr/share/java/derbyclient.jar")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} after {timeout_s} s")


class DerbyNetworkServer:
    """Derby's network server on 127.0.0.1 with its databases under ``home``."""

    def __init__(self, home: Path):
        self.home, self.port, self.process = Path(home), free_port(), None

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:derby://127.0.0.1:{self.port}/metastore;create=true"

    def start(self):
        missing = [jar for jar in DERBY_JARS[:2] if not Path(jar).exists()]
        if missing:
            raise RuntimeError(f"Derby is missing ({missing}): scripts/test.sh installs the "
                               "Debian packages libderby-java and libderbyclient-java")
        self.home.mkdir(parents=True, exist_ok=True)
        classpath = os.pathsep.join(jar for jar in DERBY_JARS if Path(jar).exists())
        self.process = subprocess.Popen(
            ["java", f"-Dderby.system.home={self.home}", "-cp", classpath,
             "org.apache.derby.drda.NetworkServerControl", "start", "-h", "127.0.0.1",
             "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 60, self.process)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_for_port_closed(port: int, timeout_s: float) -> None:
    """Wait until nothing accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.5)
    raise AssertionError(f"port {port} still answers after {timeout_s} s")


class ThriftServer:
    """``hdp-gan sql-server``: Spark's HiveServer2-compatible Thrift server over the project's
    metastore, started with the product's own command and the given shared options."""

    def __init__(self, options: list, log_path: Path):
        self.options, self.port, self.log_path, self.process = options, free_port(), log_path, None

    def start(self):
        command = [sys.executable, "-m", "jobs.cli", "sql-server", *map(str, self.options),
                   "--port", str(self.port)]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=REPO, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
        self._wait_for_serving_line(240)
        return self

    def _wait_for_serving_line(self, timeout_s: float) -> None:
        """The command says "serving" only once the port answers: connect at once."""
        deadline = time.monotonic() + timeout_s
        while "serving " not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sql-server did not start: {self.log_path.read_text()}")
            time.sleep(0.2)
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
