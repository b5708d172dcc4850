"""The TensorFlowOnSpark lifecycle: pre-flight checks, launch, fail fast, shutdown.

TensorFlowOnSpark starts one TensorFlow node per executor (a chief and workers) from a
background Spark job and exports ``TF_CONFIG`` so that ``MultiWorkerMirroredStrategy`` finds
its peers. Left to itself it can hang for a long time when something goes wrong: a node
without data waits for its peers until a 600 s feed timeout per attempt, its shutdown waits
up to three days, and it ends the driver with ``sys.exit``. This module wraps it:

* ``preflight`` checks, before anything starts, what would otherwise hang: as many
  executors registered as nodes wanted, one task per executor, dynamic allocation off,
  task retries off.
* ``run`` launches the nodes in TENSORFLOW input mode (each node reads its shard of the
  Parquet dataset itself, so every node runs the same number of synchronous steps), then
  supervises the Spark job: a node that raises, or an executor that dies, fails the job at
  once (``spark.task.maxFailures=1``), Spark kills the other tasks, and the worker's own
  error message is raised on the driver as a StageError. A run that exceeds its time limit
  is cancelled the same way.
* The reservation server is narrowed (see ``_patch_library``): it binds to the driver's
  address only, not every interface; it decodes messages with an unpickler that refuses every
  class and function (the messages are plain dicts, lists, strings, numbers and bytes), so a
  crafted message cannot run code; it refuses messages over 1 MiB; and it stops as soon as
  every node has fetched the cluster description, instead of living as long as the job.
"""

import io
import logging
import os
import pickle
import re
import socket
import struct
import threading
import time

from gan_lib.config import python_error_line
from gan_lib.runs import StageError

logger = logging.getLogger(__name__)

EXECUTOR_WAIT_S = float(os.environ.get("HDP_GAN_EXECUTOR_WAIT_S", "120"))
POLL_S = 1.0
MAX_MESSAGE_BYTES = 1 << 20


def registered_executors(sc) -> int:
    """Executors currently registered with the driver (the driver itself not counted)."""
    return max(0, sc._jsc.sc().getExecutorMemoryStatus().size() - 1)


def wait_for_executors(sc, wanted: int, timeout_s: float = EXECUTOR_WAIT_S) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        count = registered_executors(sc)
        if count >= wanted or time.monotonic() > deadline:
            return count
        time.sleep(POLL_S)


def preflight(sc, nodes: int, timeout_s: float = EXECUTOR_WAIT_S) -> None:
    """Refuse a configuration under which synchronous training would hang."""
    conf = sc.getConf()
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        raise StageError("spark.dynamicAllocation.enabled is true; TensorFlow nodes need a fixed "
                         "set of executors: set it to false")
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    executor_cores = int(conf.get("spark.executor.cores", str(task_cpus)))
    if executor_cores != task_cpus:
        raise StageError(
            f"spark.executor.cores={executor_cores} but spark.task.cpus={task_cpus}: two "
            "TensorFlow nodes could land on one executor and block each other; make them equal")
    if int(conf.get("spark.task.maxFailures", "4")) != 1:
        raise StageError("spark.task.maxFailures must be 1 for training: a retried node would "
                         "join a cluster that has moved on")
    available = wait_for_executors(sc, nodes, timeout_s)
    if available < nodes:
        raise StageError(
            f"{nodes} TensorFlow workers need {nodes} executors but only {available} registered "
            f"within {timeout_s:.0f} s; lower --executors or give the application more "
            "executors (spark.executor.instances)")


def _bind_host() -> str:
    return os.environ.get("SPARK_LOCAL_IP") or socket.gethostbyname(socket.getfqdn())


def _node_address() -> str:
    """The address a TensorFlow node announces: ``SPARK_LOCAL_IP`` when set (one machine or
    a pinned interface), otherwise the host's resolved address. Unlike the library's default
    this sends no packet towards a public address to find out."""
    return os.environ.get("SPARK_LOCAL_IP") or socket.gethostbyname(socket.getfqdn())


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused {module}.{name}: the reservation protocol "
                                     "carries plain data only")


def _receive_plain_message(self, sock):
    """Read one length-prefixed message, bounded in size, decoded as plain data only."""
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            raise ConnectionError("socket closed")
        header += chunk
    length = struct.unpack(">I", header)[0]
    if length > MAX_MESSAGE_BYTES:
        raise ConnectionError(f"refused a {length}-byte reservation message (limit "
                              f"{MAX_MESSAGE_BYTES})")
    data = bytearray()
    while len(data) < length:
        chunk = sock.recv(min(65536, length - len(data)))
        if not chunk:
            raise ConnectionError("socket closed")
        data += chunk
    return _PlainDataUnpickler(io.BytesIO(bytes(data))).load()


def _patch_library():
    """Narrow what TensorFlowOnSpark exposes (see the module's docstring)."""
    from tensorflowonspark import TFSparkNode, reservation, util

    util.get_ip_address = _node_address
    reservation.MessageSocket.receive = _receive_plain_message
    if getattr(reservation.Server, "_hdp_gan_patched", False):
        return

    original_run = TFSparkNode.run
    original_handle = reservation.Server._handle_message

    def run_with_address(*args, **kwargs):
        node_main = original_run(*args, **kwargs)

        def start_node(iterator):
            patch_executor()
            return node_main(iterator)
        return start_node

    def start_listening_socket(self):
        host = os.environ.get("TFOS_SERVER_HOST") or _bind_host()
        server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server_socket.bind((host, int(os.environ.get("TFOS_SERVER_PORT", "0"))))
        server_socket.listen(10)
        return server_socket

    def handle_message(self, sock, message):
        original_handle(self, sock, message)
        if message.get("type") == "QINFO" and self.reservations.done():
            self.descriptions_served = getattr(self, "descriptions_served", 0) + 1

    TFSparkNode.run = run_with_address
    reservation.Server.start_listening_socket = start_listening_socket
    reservation.Server._handle_message = handle_message
    reservation.Server._hdp_gan_patched = True


def _stop_reservations_when_served(server, address, nodes: int, timeout_s: float = 120):
    """Stop the reservation server once every node has fetched the cluster description."""
    def wait_then_stop():
        deadline = time.monotonic() + timeout_s
        while (getattr(server, "descriptions_served", 0) < nodes
               and time.monotonic() < deadline):
            time.sleep(0.2)
        server.stop()
        try:  # wake the listener so that it closes its socket now, not at its next poll
            socket.create_connection(tuple(address), timeout=5).close()
        except OSError:
            pass
        logger.info("reservation server stopped")
    threading.Thread(target=wait_then_stop, daemon=True).start()


def patch_executor():
    """Runs on each executor before its node starts."""
    from tensorflowonspark import reservation, util
    util.get_ip_address = _node_address
    reservation.MessageSocket.receive = _receive_plain_message


def run(sc, main_fn, options, nodes: int, timeout_s: float, progress=None) -> None:
    """Start ``nodes`` TensorFlow nodes running ``main_fn(options, ctx)`` and wait for them.

    Returns when every node finished; raises StageError with the failing node's own message
    when one fails, an executor is lost, or ``timeout_s`` passes. ``progress``, when given, is
    called every few seconds while the nodes run.
    """
    from tensorflowonspark import TFCluster, TFSparkNode

    _patch_library()
    os.environ.setdefault("TFOS_SERVER_HOST", _bind_host())
    TFCluster.tf_status.clear()
    started = time.monotonic()
    try:
        cluster = TFCluster.run(sc, main_fn, options, num_executors=nodes, num_ps=0,
                                input_mode=TFCluster.InputMode.TENSORFLOW, master_node="chief",
                                reservation_timeout=EXECUTOR_WAIT_S, log_dir=None)
    except SystemExit:
        raise StageError(_failure_message(TFCluster.tf_status.get("error", "")) or
                         "the TensorFlow nodes did not all start") from None
    _stop_reservations_when_served(cluster.server, cluster.cluster_meta["server_addr"], nodes)
    logger.info("TensorFlow cluster of %d nodes started in %.0f s", nodes,
                time.monotonic() - started)
    try:
        _supervise(sc, TFCluster.tf_status, started, timeout_s, progress)
    except StageError:
        sc.cancelAllJobs()
        raise
    _stop_node_managers(sc, cluster, TFSparkNode)


def _supervise(sc, status: dict, started: float, timeout_s: float, progress=None) -> None:
    tracker = sc.statusTracker()
    while True:
        if progress:  # every poll, so that the chief's lines arrive as they are written
            progress()
        if "error" in status:
            raise StageError(_failure_message(status["error"]))
        if not tracker.getActiveJobsIds():
            time.sleep(POLL_S)  # let the background thread record a late failure
            if progress:
                progress()
            if "error" in status:
                raise StageError(_failure_message(status["error"]))
            return
        if time.monotonic() - started > timeout_s:
            raise StageError(f"training did not finish within {_minutes(timeout_s)} "
                             "(--timeout-minutes); it was cancelled")
        time.sleep(POLL_S)


def _minutes(seconds: float) -> str:
    """A time limit in minutes as the user gave it: "0.75 minutes", "1 minute", "240 minutes"."""
    minutes = f"{seconds / 60:.6f}".rstrip("0").rstrip(".")
    return f"{minutes} minute" + ("" if minutes == "1" else "s")


def _stop_node_managers(sc, cluster, TFSparkNode) -> None:
    """Ask each executor to stop its node's manager process, within a bounded time."""
    nodes = len(cluster.cluster_info)
    done = threading.Event()

    def stop():
        try:
            sc.parallelize(range(nodes), nodes).foreachPartition(
                TFSparkNode.shutdown(cluster.cluster_info, 0, cluster.queues))
        except Exception as error:  # the training result stands; only clean-up failed
            logger.warning("could not stop the TensorFlow node managers: %s",
                           _failure_message(str(error)))
        finally:
            done.set()

    threading.Thread(target=stop, daemon=True).start()
    if not done.wait(60):
        sc.cancelAllJobs()
        logger.warning("stopping the TensorFlow node managers took over 60 s; cancelled")


def _failure_message(text: str) -> str:
    """The line a person needs from a Spark job failure: the worker's own exception, or the
    executor that was lost and why."""
    text = str(text)
    lost = re.search(r"(ExecutorLostFailure \(executor (\S+)[^)]*\))[^\n]*?Reason: ([^\n]+)",
                     text)
    if lost:
        return (f"TensorFlow worker on executor {lost.group(2)} was lost: "
                f"{lost.group(3).strip()}")
    python = python_error_line(text)
    if python:
        return f"a TensorFlow worker failed: {python}"
    for marker in ("Reason:", "most recent failure:", "SparkException:"):
        if marker in text:
            return "training failed: " + text.split(marker, 1)[1].strip().splitlines()[0][:500]
    return "training failed: " + (text.strip().splitlines() or ["unknown error"])[0][:500]
