"""Building the Spark session: master, Hive metastore, Arrow, work folders.

On this machine (no ``--master``) the session runs ``local-cluster``: a master and separate
executor JVMs started from the pyspark package, so that the distributed code paths (one
TensorFlow node per executor, Python workers per executor) are the ones YARN runs. On a
cluster the same code runs with ``--master yarn``.

The embedded Hive metastore is a Derby database under the local state folder; a cluster
points at its own metastore with ``metastore_uri``, and separate processes can share one
Derby network server through ``metastore_jdbc_url``.
"""

import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from gan_lib import class_archive, storage
from gan_lib.config import Settings, mask_secrets
from gan_lib.runs import StageError

logger = logging.getLogger(__name__)


class MetastoreBusy(StageError):
    """Another process holds the embedded metastore."""


DERBY_CLIENT_JARS = ("/usr/share/java/derbyclient.jar",)
ARROW_BATCH_ROWS = 1024


def default_master(settings: Settings) -> str:
    """The master for this machine: separate executor JVMs, as on YARN."""
    return (f"local-cluster[{settings.executors},{settings.executor_cores},"
            f"{settings.executor_memory_mb}]")


def is_local(master: str) -> bool:
    return master.startswith("local")


def effective_master(settings: Settings) -> str:
    return settings.master or default_master(settings)


def spark_conf(settings: Settings, app_name: str, training: bool = False,
               server: bool = False, streaming: bool = False) -> dict:
    """Every Spark setting the project relies on, as a dictionary (also used by the YARN and
    Oozie tooling so that both paths agree). ``server``: for a long-lived process (the SQL
    server) rather than one job. ``streaming``: for a job whose executors pass rows through
    without holding them (generate, label)."""
    master = effective_master(settings)
    state = settings.local_state_dir
    conf = {
        "spark.app.name": app_name,
        "spark.master": master,
        "spark.sql.warehouse.dir": storage.join(settings.root, "warehouse"),
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.hadoop.hive.exec.dynamic.partition": "true",
        "spark.hadoop.hive.exec.dynamic.partition.mode": "nonstrict",
        "spark.sql.hive.convertMetastoreParquet": "true",
        "spark.sql.parquet.compression.codec": "snappy",
        "spark.sql.session.timeZone": "UTC",
        # image files are small: count each as 64 KB, not 4 MB, when packing read partitions,
        # and let a task take up to 512 MB so counted (some 8,000 small images, not 2,000):
        # every task costs its Python worker a fixed 0.1-0.2 s, on a cluster as here
        "spark.sql.files.openCostInBytes": str(64 * 1024),
        "spark.sql.files.maxPartitionBytes": str(512 * 1024 ** 2),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS),
        "spark.sql.execution.pandas.convertToArrowArraySafely": "true",
        "spark.dynamicAllocation.enabled": "false",
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2",
        "spark.executorEnv.HDP_GAN_LOG_LEVEL": settings.log_level.upper(),
    }
    if settings.metastore_uri:
        conf["spark.hadoop.hive.metastore.uris"] = settings.metastore_uri
    else:
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = metastore_jdbc_url(settings)
        if settings.metastore_jdbc_url.startswith("jdbc:derby://"):
            conf["spark.hadoop.javax.jdo.option.ConnectionDriverName"] = (
                "org.apache.derby.jdbc.ClientDriver")
            conf["spark.driver.extraClassPath"] = os.pathsep.join(DERBY_CLIENT_JARS)
    if streaming:
        conf.update(STREAMING_WRITES)
    if is_local(master):
        conf.update(_local_conf(settings, state, master, server=server, streaming=streaming))
    if training:
        conf.update(training_conf(settings))
    conf.update({key: str(value) for key, value in settings.extra_spark_conf.items()})
    return conf


# A write into partitions (one run's rows: always one) plans a sort of each task's rows by
# partition, which gathers all of a task's rows before it writes one: the executors of a
# labelling run grew their heaps for it at the end of a 100,000-image run. Without a planned
# sort, Spark keeps up to this many partitions' files open in each task instead and sorts
# only beyond that; the overwrite stays dynamic (staged, then swapped in).
STREAMING_WRITES = {
    "spark.sql.optimizer.plannedWrite.enabled": "false",
    "spark.sql.maxConcurrentOutputFileWriters": "4",
}


def training_conf(settings: Settings) -> dict:
    """What TensorFlowOnSpark needs to neither hang nor train on a partial cluster: one task per
    executor, no dynamic allocation, no retries that would restart half a cluster, and lost
    executors noticed quickly."""
    return {
        "spark.task.cpus": str(settings.executor_cores),
        "spark.executor.cores": str(settings.executor_cores),
        "spark.executor.instances": str(settings.executors),
        "spark.task.maxFailures": "1",
        "spark.yarn.maxAppAttempts": "1",
        "spark.python.worker.reuse": "true",
        "spark.executor.heartbeatInterval": "5s",
        "spark.network.timeout": "60s",
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        "spark.locality.wait": "0s",
        "spark.executorEnv.OMP_NUM_THREADS": str(settings.executor_cores),
    }


def metastore_jdbc_url(settings: Settings) -> str:
    if settings.metastore_jdbc_url:
        return settings.metastore_jdbc_url
    database = settings.local_state_dir / "metastore_db"
    return f"jdbc:derby:;databaseName={database};create=true"


def no_metastore_yet(settings: Settings) -> bool:
    """True when the settings name the embedded metastore and no job has made it yet: no table
    is recorded anywhere, and a command that only reads tables has nothing to start Spark
    for (starting it would make the metastore and the state folder)."""
    return (not settings.metastore_uri and not settings.metastore_jdbc_url
            and not (settings.local_state_dir / "metastore_db").exists())


# How long a wait for the embedded metastore goes unmentioned: the previous command's JVM
# usually lets go of it within a second or two.
QUIET_WAIT_S = 3.0


def check_metastore_free(settings: Settings, wait_s: float = 30.0) -> None:
    """Wait for the embedded metastore to be free, then fail in one line if it is not.

    Embedded Derby lets one process open a database at a time and holds an exclusive lock on
    ``dbex.lck`` while it does; without this check Spark fails much later with a long chain of
    Hive errors. A finished job's JVM can hold the lock for a second or two after the job
    ends, so the check waits up to ``wait_s`` before giving up. Metastores given by URL or URI
    are shared by design and not locked.
    """
    if settings.metastore_jdbc_url or settings.metastore_uri:
        return
    lock = settings.local_state_dir / "metastore_db" / "dbex.lck"
    started = time.monotonic()
    waiting_said = False
    while not _lock_is_free(lock):
        if time.monotonic() >= started + wait_s:
            raise MetastoreBusy(
                f"the embedded metastore {lock.parent} is in use by another process (a running "
                "job, hdp-gan sql-server or a pyspark shell on this root); Derby serves one "
                "process at a time: wait for it to finish, or give every process a shared "
                "metastore with --metastore-jdbc-url")
        if not waiting_said and time.monotonic() >= started + QUIET_WAIT_S:
            logger.info("the embedded metastore is still held by another process (a job that "
                        "just ended releases it within seconds); waiting up to %.0f s for it",
                        wait_s)
            waiting_said = True
        time.sleep(0.5)


def _lock_is_free(lock: Path) -> bool:
    try:
        handle = open(lock, "r+b")
    except OSError:
        return True  # no database yet, or nothing to lock: Derby will create it
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.lockf(handle, fcntl.LOCK_UN)
        return True


DEFAULT_PORTS = {"derby": 1527, "mysql": 3306, "mariadb": 3306, "postgresql": 5432,
                 "oracle": 1521, "sqlserver": 1433, "thrift": 9083}


def check_metastore_reachable(settings: Settings, timeout_s: float = 10.0) -> None:
    """Fail in one line when a metastore database or service given by URL does not answer.

    Without this, Hive's client retries for minutes and prints thousands of lines of Java
    stack traces, some holding the URL with its credentials.
    """
    for option, url in (("--metastore-jdbc-url", settings.metastore_jdbc_url),
                        ("--metastore-uri", settings.metastore_uri)):
        endpoints, failures = _network_endpoints(url), []
        for host, port in endpoints:  # several thrift URIs: one answering is enough
            try:
                socket.create_connection((host, port), timeout=timeout_s).close()
                break
            except OSError as error:
                failures.append(f"{host}:{port} ({error.strerror or type(error).__name__})")
        else:
            if failures:
                raise StageError(
                    f"the metastore does not answer at {', '.join(failures)}; {option} "
                    f"{mask_secrets(url)}: start it, or correct the host and port")


def _network_endpoints(url: str) -> list[tuple[str, int]]:
    """(host, port) pairs of a JDBC URL with a network address or of thrift:// URIs."""
    endpoints = []
    for part in (url or "").split(","):
        match = re.match(r"^(?:jdbc:)?([a-z]+):(?:[a-z]+:)*//(?:[^@/]*@)?([^:/;?]+)(?::(\d+))?",
                         part.strip())
        if match and match.group(1) in DEFAULT_PORTS:
            port = int(match.group(3) or DEFAULT_PORTS[match.group(1)])
            endpoints.append((match.group(2), port))
    return endpoints


# On this machine the JVMs share its few cores with the Python workers that do the real
# work (decoding, TensorFlow), they live for one job, and they mostly move bytes. The
# optimising JIT compiler (C2) took 4.7 and 5.9 CPU-seconds in the two executors of a
# labelling run of 100,000 images; with the quick compiler alone the run's JVMs used about a
# third less CPU time (docs/BENCHMARKS.md).
QUICK_JIT = "-XX:TieredStopAtLevel=1"

# An executor of one core gets the serial collector, the one the JVM itself picks for a
# one-CPU machine: it grows the heap by the data that stays alive, which is little in
# executors that stream. G1 (the default where the JVM sees two or more CPUs) kept growing
# the heap it had committed while the work went on: from 181 MB in each executor of a
# labelling run of 10,000 images to 318 and 361 MB in those of a run of 50,000
# (docs/BENCHMARKS.md).
ONE_CORE_GC = "-XX:+UseSerialGC"

# The executors of jobs that stream rows (generate, label) keep some 40 MB alive. Left to
# itself the JVM starts with a heap of 1/64 of the machine's memory and touches more of it
# the longer a job runs, as garbage that outlived a young collection fills the old
# generation until a full collection: a labelling run's larger executor JVM peaked at 374 MB
# for 10,000 images and 406 MB for 100,000. With a 128 MB heap touched at start-up, grown
# only when what stays alive fills nine tenths of it: 315 and 340 MB (docs/BENCHMARKS.md).
STREAMING_HEAP = "-Xms128m -XX:+AlwaysPreTouch -XX:MinHeapFreeRatio=10"

# Hadoop's checksum layer over file:// looks for a .crc file beside every file read (a stat
# and an open per image) and writes one beside every output; jobs read and write local files
# without it. Not for the SQL server: Hive's sessions ask Hadoop for its checksummed local
# file system by that very type and fail on the raw one.
RAW_LOCAL_FILES = {"spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem"}


def executor_cores_of(master: str, settings: Settings) -> int:
    """Cores per executor: those a ``local-cluster[n,cores,memory]`` master names, otherwise
    the settings'."""
    match = re.fullmatch(r"local-cluster\[\s*\d+\s*,\s*(\d+)\s*,\s*\d+\s*\]", master)
    return int(match.group(1)) if match else settings.executor_cores


def _local_conf(settings: Settings, state: Path, master: str, server: bool = False,
                streaming: bool = False) -> dict:
    executor_memory = max(512, settings.executor_memory_mb - 512)
    jit = "" if server else QUICK_JIT
    log4j = " ".join((_java_property("log4j2.configurationFile", _log4j_file(state)),
                      _java_property(SPARK_LOG_LEVEL_PROPERTY, spark_log_level(settings))))
    classes = class_archive.java_options()  # the executors share the driver's class path
    java_options = " ".join(filter(None, (_java_property("derby.system.home", state), log4j,
                                          jit, classes)))
    collector = ONE_CORE_GC if executor_cores_of(master, settings) == 1 else ""
    heap = STREAMING_HEAP if streaming and collector else ""
    return {
        "spark.executor.memory": f"{executor_memory}m",
        "spark.driver.memory": "2g",
        "spark.local.dir": str(state / "spark-local"),
        "spark.driver.extraJavaOptions": java_options,
        "spark.executor.extraJavaOptions": " ".join(filter(None, (log4j, jit, collector, heap,
                                                                  classes))),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.showConsoleProgress": str(sys.stderr.isatty()).lower(),
        "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1",
        # Hive's session folders, which it would otherwise leave in /tmp after every job
        "spark.hadoop.hive.downloaded.resources.dir": str(state / "hive" / "resources"),
        "spark.hadoop.hive.exec.local.scratchdir": str(state / "hive" / "scratch"),
        **({} if server else RAW_LOCAL_FILES),
    }


def _java_property(name: str, value) -> str:
    """``-Dname=value`` for a Java options string, quoted as Spark splits such strings, so a
    path with spaces stays one option."""
    quoted = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'-D{name}="{quoted}"'


def _log4j_file(state: Path) -> Path:
    return state / "conf" / "log4j2.properties"


# Spark's JVMs log at WARN, or at ERROR under --log-level ERROR (a Java property set below).
# pyspark's JVM takes the level of its gateway's logger for its console; given the root's, it
# prints no note that it set one.
SPARK_LOG_LEVEL_PROPERTY = "hdp_gan.spark.log.level"
LOG4J_PROPERTIES = """\
rootLogger.level = ${sys:hdp_gan.spark.log.level:-warn}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.hive.name = org.apache.hadoop.hive
logger.hive.level = error
logger.datanucleus.name = DataNucleus
logger.datanucleus.level = fatal
logger.derby.name = org.apache.derby
logger.derby.level = error
logger.hivelog.name = hive.log
logger.hivelog.level = error
logger.metastore.name = org.apache.hadoop.hive.metastore
logger.metastore.level = fatal
logger.thriftpool.name = org.apache.thrift.server.TThreadPoolServer
logger.thriftpool.level = fatal
logger.repl.name = org.apache.spark.api.python.PythonGatewayServer
logger.repl.level = ${sys:hdp_gan.spark.log.level:-warn}
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
logger.oneway.name = org.apache.spark.network.server.TransportRequestHandler
logger.oneway.level = ${sys:hdp_gan.spark.log.level:-warn}
logger.oneway.filter.stopped.type = RegexFilter
logger.oneway.filter.stopped.regex = Error while invoking RpcHandler#receive.. for one-way message.*
logger.oneway.filter.stopped.onMatch = DENY
logger.oneway.filter.stopped.onMismatch = NEUTRAL
logger.sparkconf.name = org.apache.spark.SparkConf
logger.sparkconf.level = ${sys:hdp_gan.spark.log.level:-warn}
logger.sparkconf.filter.localdir.type = RegexFilter
logger.sparkconf.filter.localdir.regex = Note that spark.local.dir will be overridden.*
logger.sparkconf.filter.localdir.onMatch = DENY
logger.sparkconf.filter.localdir.onMismatch = NEUTRAL
"""


def spark_log_level(settings: Settings) -> str:
    """The level of Spark's own logging: WARN, or ERROR under --log-level ERROR."""
    return "ERROR" if settings.log_level.upper() == "ERROR" else "WARN"


def prepare_local_machine(settings: Settings) -> None:
    """Create the local state folder and point Spark at it.

    ``local-cluster`` writes executor work folders under ``$SPARK_HOME/work``. To keep them out
    of the installed pyspark package, Spark is given a home under the state folder whose
    entries link to the package's own and whose ``work`` folder is real.
    """
    state = settings.local_state_dir
    for sub in ("conf", "spark-local", "logs", "hive/scratch"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    _log4j_file(state).write_text(LOG4J_PROPERTIES)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if launched_by_spark_submit():
        return  # spark-submit has started the JVM from its own Spark home already
    os.environ["SPARK_HOME"] = str(_spark_home_under(state))
    os.environ["SPARK_LOG_DIR"] = str(state / "logs")


def _spark_home_under(state: Path) -> Path:
    import pyspark
    package = Path(pyspark.__file__).resolve().parent
    home = state / "spark-home"
    (home / "work").mkdir(parents=True, exist_ok=True)
    for entry in package.iterdir():
        link = home / entry.name
        if entry.name == "work" or link.exists() or link.is_symlink():
            continue
        link.symlink_to(entry)
    return home


def launched_by_spark_submit() -> bool:
    """True when spark-submit started this Python process (its JVM is already running)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def stop_unconnected_jvms(grace_s: float = 5.0) -> list[int]:
    """Stop the Spark JVMs this process launched that never connected to it. pyspark's JVM
    ends when the Python process that reads its standard input is gone, but only once it has
    handed that process its connection: one stopped before then runs on, holding the
    embedded metastore. Returns the process ids stopped."""
    launched = [pid for pid in _descendants(os.getpid())
                if b"org.apache.spark" in _command_line(pid)]
    for pid in launched:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_running(pid) for pid in launched):
        time.sleep(0.1)
    for pid in launched:
        with contextlib.suppress(ProcessLookupError):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    return launched


def _descendants(pid: int) -> list[int]:
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # the parent's id follows the command name, which is in parentheses
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, waiting = [], list(children.get(pid, []))
    while waiting:
        child = waiting.pop()
        found.append(child)
        waiting.extend(children.get(child, []))
    return found


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def build_session(settings: Settings, app_name: str, training: bool = False,
                  streaming: bool = False):
    """Start (or join) the Spark session with Hive support for one job.

    Under ``spark-submit`` without ``--master`` on the job's own command line, the master
    that spark-submit was given is kept (``yarn`` on a cluster).
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    if launched_by_spark_submit() and not settings.master:
        submitted = SparkConf().get("spark.master", None)
        if submitted:
            settings = dataclasses.replace(settings, master=submitted)
    conf = spark_conf(settings, app_name, training=training, streaming=streaming)
    if is_local(conf["spark.master"]):
        prepare_local_machine(settings)
    check_metastore_reachable(settings)
    if SparkContext._gateway is None:  # this process's JVM may hold the metastore itself
        check_metastore_free(settings)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    logger.info("starting Spark: master %s, root %s", conf["spark.master"], settings.root)
    try:
        spark = builder.enableHiveSupport().getOrCreate()
    except BaseException:
        if SparkContext._gateway is None:  # stopped (SIGTERM, Ctrl-C) while its JVM started
            stop_unconnected_jvms()
        raise
    spark.sparkContext.setLogLevel(spark_log_level(settings))
    if threading.current_thread() is threading.main_thread():
        # pyspark's SIGINT handler cancels the jobs by calling the JVM from inside the handler,
        # in the middle of the call that Ctrl-C stopped, which breaks that call's connection.
        # Python's own handler only raises KeyboardInterrupt; the jobs stop with the session
        # (and a stage cancels them as it unwinds).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return spark


def thrift_server_command(settings: Settings, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that starts Spark's HiveServer2-compatible Thrift server over the project's
    metastore and warehouse, for beeline and PyHive (``jdbc:hive2://host:port``)."""
    import pyspark
    conf = spark_conf(settings, "hdp-gan thrift server", server=True)
    conf.pop("spark.app.name")
    master = conf.pop("spark.master")
    if is_local(master):
        prepare_local_machine(settings)
    command = [str(Path(os.environ.get("SPARK_HOME", Path(pyspark.__file__).parent),
                        "bin", "spark-submit")),
               "--master", master, "--class",
               "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return command + ["spark-internal", "--hiveconf", f"hive.server2.thrift.port={port}",
                      "--hiveconf", f"hive.server2.thrift.bind.host={host}"]
