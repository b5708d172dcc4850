"""Serve the project's tables to beeline and JDBC/ODBC clients (the HiveServer2 protocol).

    hdp-gan sql-server --root /data/gan --port 10000
    beeline -u jdbc:hive2://127.0.0.1:10000/hdp_gan -e "SELECT count(*) FROM labels"

Starts Spark's Thrift server (it ships with pyspark) over the project's metastore and
warehouse, in the foreground until Ctrl-C. On a cluster with its own HiveServer2, point
beeline at that instead: the tables are registered in the cluster's metastore.

The embedded metastore (Derby, the default) serves one process at a time: while this server
runs, other jobs on the same root wait up to 30 s for it, then fail in one line saying so.
Give --metastore-jdbc-url to share a metastore between the server and running jobs.
"""

import argparse
import errno
import signal
import socket
import subprocess
import sys
import time

from gan_lib import report, session
from gan_lib.config import ConfigError
from jobs import common


def build_parser():
    parser = common.new_parser("sql-server", __doc__.splitlines()[0])
    parser.add_argument("--port", type=_port, default=10000,
                        help="port for HiveServer2 clients (default 10000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; the "
                             "server has no authentication, so expose it only behind one)")
    return parser


def _port(text: str) -> int:
    port = common.positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return port


def check_port_free(host: str, port: int) -> None:
    """Fail in one line when something already listens on ``host:port``. (Connections of a
    server stopped a moment ago may linger in TIME_WAIT; they do not stop Java's server
    socket, which binds with SO_REUSEADDR, so neither do they stop this check.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is in use (another HiveServer2 or Thrift server?); "
                    f"stop it (ss -ltnp 'sport = :{port}' shows which process) or pass "
                    "--port with a free one") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def server_command(args, settings) -> list[str]:
    """The Thrift server's command: Spark inside its own JVM (``local[2]``, as the other
    commands that only read tables) unless --master is given."""
    return session.thrift_server_command(report.table_reader_settings(settings), args.port,
                                         args.host)


def run(args, settings):
    check_port_free(args.host, args.port)
    session.check_metastore_reachable(settings)
    session.check_metastore_free(settings)
    command = server_command(args, settings)
    url = f"jdbc:hive2://{args.host}:{args.port}/{settings.database}"
    print(f"starting Spark's Thrift server on {args.host}:{args.port} ...", file=sys.stderr,
          flush=True)
    # Its own process group: Ctrl-C in a terminal reaches this process only, which stops
    # the server once (SIGTERM) rather than the terminal signalling both.
    # Killed outright (SIGKILL), this process takes the server with it: left running, it
    # would hold the embedded metastore with no hdp-gan process left to stop.
    server = subprocess.Popen(command, process_group=0,
                              preexec_fn=common.terminate_with_parent)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        server.terminate()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)  # the terminal closed: it would not reach the server
    try:
        if _wait_until_listening(server, args.host, args.port):
            print(f"serving {settings.database} on {url} (Ctrl-C stops); "
                  f"try: beeline -u {url} -e 'SHOW TABLES'", file=sys.stderr, flush=True)
        code = server.wait()
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)
        code = server.wait(timeout=60)
    return 0 if stopping else code


def _wait_until_listening(server, host: str, port: int) -> bool:
    """Wait until the server accepts connections (True) or has exited (False)."""
    address = ("127.0.0.1" if host in ("", "0.0.0.0") else host, port)
    while server.poll() is None:
        try:
            with socket.create_connection(address, timeout=1):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def main(argv=None):
    return common.run_printing(build_parser(), "sql-server", run, argv)


if __name__ == "__main__":
    sys.exit(main())
