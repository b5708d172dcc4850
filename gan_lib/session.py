"""Building the Spark session: master, Hive metastore, Arrow, work folders.

On this machine (no ``--master``) the session runs ``local-cluster``: a master and separate
executor JVMs started from the pyspark package, so that the distributed code paths (one
TensorFlow node per executor, Python workers per executor) are the ones YARN runs. On a
cluster the same code runs with ``--master yarn``.

The embedded Hive metastore is a Derby database under the local state folder; a cluster
points at its own metastore with ``metastore_uri``, and separate processes can share one
Derby network server through ``metastore_jdbc_url``.
"""

import dataclasses
import fcntl
import logging
import os
import sys
from pathlib import Path

from gan_lib import storage
from gan_lib.config import Settings
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


def spark_conf(settings: Settings, app_name: str, training: bool = False) -> dict:
    """Every Spark setting the project relies on, as a dictionary (also used by the YARN and
    Oozie tooling so that both paths agree)."""
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
        # image files are small: count each as 64 KB, not 4 MB, when packing read partitions
        "spark.sql.files.openCostInBytes": str(64 * 1024),
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
    if is_local(master):
        conf.update(_local_conf(settings, state))
    if training:
        conf.update(training_conf(settings))
    conf.update({key: str(value) for key, value in settings.extra_spark_conf.items()})
    return conf


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


def check_metastore_free(settings: Settings) -> None:
    """Fail in one line when another process has the embedded metastore open.

    Embedded Derby lets one process open a database at a time and holds an exclusive lock on
    ``dbex.lck`` while it does; without this check Spark fails much later with a long chain of
    Hive errors. Metastores given by URL or URI are shared by design and not checked.
    """
    if settings.metastore_jdbc_url or settings.metastore_uri:
        return
    lock = settings.local_state_dir / "metastore_db" / "dbex.lck"
    try:
        handle = open(lock, "r+b")
    except OSError:
        return  # no database yet, or nothing to lock: Derby will create it
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise MetastoreBusy(
                f"the embedded metastore {lock.parent} is in use by another process (a running "
                "job, hdp-gan sql-server or a pyspark shell on this root); Derby serves one "
                "process at a time: wait for it to finish, or give every process a shared "
                "metastore with --metastore-jdbc-url") from None
        fcntl.lockf(handle, fcntl.LOCK_UN)


def _local_conf(settings: Settings, state: Path) -> dict:
    executor_memory = max(512, settings.executor_memory_mb - 512)
    java_options = f"-Dderby.system.home={state} -Dlog4j2.configurationFile={_log4j_file(state)}"
    return {
        "spark.executor.memory": f"{executor_memory}m",
        "spark.driver.memory": "2g",
        "spark.local.dir": str(state / "spark-local"),
        "spark.driver.extraJavaOptions": java_options,
        "spark.executor.extraJavaOptions": f"-Dlog4j2.configurationFile={_log4j_file(state)}",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.showConsoleProgress": str(sys.stderr.isatty()).lower(),
        "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1",
    }


def _log4j_file(state: Path) -> Path:
    return state / "conf" / "log4j2.properties"


LOG4J_PROPERTIES = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.hive.name = org.apache.hadoop.hive
logger.hive.level = error
logger.datanucleus.name = DataNucleus
logger.datanucleus.level = error
logger.derby.name = org.apache.derby
logger.derby.level = error
logger.hivelog.name = hive.log
logger.hivelog.level = error
logger.metastore.name = org.apache.hadoop.hive.metastore
logger.metastore.level = error
"""


def prepare_local_machine(settings: Settings) -> None:
    """Create the local state folder and point Spark at it.

    ``local-cluster`` writes executor work folders under ``$SPARK_HOME/work``. To keep them out
    of the installed pyspark package, Spark is given a home under the state folder whose
    entries link to the package's own and whose ``work`` folder is real.
    """
    state = settings.local_state_dir
    for sub in ("conf", "spark-local", "logs"):
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


def build_session(settings: Settings, app_name: str, training: bool = False):
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
    conf = spark_conf(settings, app_name, training=training)
    if is_local(conf["spark.master"]):
        prepare_local_machine(settings)
    if SparkContext._gateway is None:  # this process's JVM may hold the metastore itself
        check_metastore_free(settings)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    logger.info("starting Spark: master %s, root %s", conf["spark.master"], settings.root)
    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def thrift_server_command(settings: Settings, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that starts Spark's HiveServer2-compatible Thrift server over the project's
    metastore and warehouse, for beeline and PyHive (``jdbc:hive2://host:port``)."""
    import pyspark
    conf = spark_conf(settings, "hdp-gan thrift server")
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
