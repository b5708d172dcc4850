"""A class-data archive for the Spark JVMs of jobs on this machine.

A job's driver JVM spends seconds of its start loading and verifying the same classes every
time: Spark's, Hive's metastore client and DataNucleus; each executor JVM many of the same.
The JVM can keep those classes, parsed and verified, in an archive file it maps at start
(Java's application class-data sharing). ``build()`` makes one by running a short Spark
session with Hive support that records the classes its driver loaded; ``java_options()``
points later drivers and executors (which have the same class path) at it.
The archive belongs to one Java installation and one pyspark: its name carries a key made
of both, so another Java or pyspark simply finds none and starts as before.

``scripts/setup_env.sh`` builds the archive once per virtualenv (about 30 s); jobs on a local
master use it when it is there. ``HDP_GAN_CLASS_ARCHIVE=off`` turns it off (the start-up
benchmark compares the two), and ``HDP_GAN_CLASS_ARCHIVE_DIR`` moves it (default
``~/.cache/hdp-gan/jvm``).

    python -m gan_lib.class_archive          # build it unless it is there
"""

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

ENABLED_ENV = "HDP_GAN_CLASS_ARCHIVE"
FOLDER_ENV = "HDP_GAN_CLASS_ARCHIVE_DIR"
# The JVM would otherwise warn on every start whose class path differs from the archive's
# (extra jars for a metastore's database), and once per class it cannot archive.
QUIET = "-Xlog:cds*=off -Xlog:class+path=off"


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "on").lower() not in ("off", "0", "false", "no")


def folder() -> Path:
    return Path(os.environ.get(FOLDER_ENV) or Path.home() / ".cache" / "hdp-gan" / "jvm")


def java_executable() -> Path | None:
    """The java pyspark starts: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home, "bin", "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def archive_path() -> Path | None:
    """Where the archive of this Java and this pyspark lives (whether it exists or not); None
    without a java."""
    import pyspark
    java = java_executable()
    if java is None:
        return None
    jars = _pyspark_jars()
    stat = java.stat()
    identity = "\n".join([str(java), str(stat.st_size), str(int(stat.st_mtime)),
                          pyspark.__version__, str(jars),
                          *sorted(entry.name for entry in jars.glob("*.jar"))])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return folder() / f"spark-classes-{key}.jsa"


def built() -> Path | None:
    """The archive of this Java and this pyspark when it has been built, else None."""
    path = archive_path()
    return path if path is not None and path.is_file() else None


def _pyspark_jars() -> Path:
    import pyspark
    return Path(pyspark.__file__).resolve().parent / "jars"


def java_options() -> str:
    """The JVM options that map the archive, or "" when it is off or not built."""
    path = built() if enabled() else None
    return f"-XX:SharedArchiveFile={path} {QUIET}" if path else ""


def build(force: bool = False) -> Path | None:
    """Make the archive unless it is there: a short Spark session in a child process records
    the classes its JVM loads and writes them at exit to a temporary file, which a JVM must
    then start with before it takes the archive's name. Returns its path; None when no Java
    is found or the build failed (jobs then start without it)."""
    path = archive_path()
    if path is None:
        logger.warning("no java found: the class archive is not built")
        return None
    if path.is_file() and not force:
        if not _owner_file(path).is_file():  # recorded before archives named their owner
            _owner_file(path).write_text(str(_pyspark_jars()))
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
    try:
        recorded = work / "classes.jsa"
        session = subprocess.run(
            [sys.executable, "-m", "gan_lib.class_archive", "--record", str(recorded),
             str(work)], capture_output=True, text=True, timeout=600)
        if session.returncode != 0 or not recorded.is_file():
            logger.warning("the class archive was not built: the recording session failed "
                           "(%s)", (session.stderr.strip().splitlines() or ["no output"])[-1])
            return None
        if not starts_with(recorded):
            logger.warning("the class archive was not built: a JVM could not start with it")
            return None
        _owner_file(path).write_text(str(_pyspark_jars()))
        os.replace(recorded, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _remove_replaced(path)
    return path


def starts_with(archive: Path) -> bool:
    """Whether a JVM starts with this archive (a partly written one stops the JVM)."""
    java = java_executable()
    with tempfile.TemporaryDirectory(prefix="hdp-gan-archive-check-") as scratch:
        # A JVM that fails to map the archive crashes; its crash report goes to the scratch
        # folder rather than into the caller's working folder.
        check = subprocess.run([str(java), f"-XX:SharedArchiveFile={archive}", *QUIET.split(),
                                f"-XX:ErrorFile={scratch}/hs_err_%p.log",
                                "-XX:-CreateCoredumpOnCrash", "-version"],
                               capture_output=True, timeout=120, cwd=scratch)
    return check.returncode == 0


def _owner_file(archive: Path) -> Path:
    """Beside each archive: the pyspark jars folder it was recorded from."""
    return archive.with_suffix(".jars")


def _remove_replaced(keep: Path) -> None:
    """Archives whose pyspark was replaced since, each some 180 MB: those of the same jars
    folder (another pyspark or Java installed under it), or of a folder that is gone. The
    archives of other virtualenvs on the machine stay theirs."""
    mine = _owner_file(keep).read_text()
    for other in keep.parent.glob("spark-classes-*.jsa"):
        owner = _owner_file(other)
        recorded_from = owner.read_text() if owner.is_file() else ""
        if other != keep and (not recorded_from or recorded_from == mine
                              or not Path(recorded_from).is_dir()):
            other.unlink(missing_ok=True)
            owner.unlink(missing_ok=True)


def _record(target: str, work: str) -> None:
    """The recording session: the classes a job's driver loads to start Spark with Hive
    support on the embedded metastore, create, write and read a Parquet table."""
    from gan_lib.config import Settings
    from gan_lib import session

    os.environ[ENABLED_ENV] = "off"
    settings = Settings(root=Path(work, "root").as_uri(), master="local[1]")
    conf = session.spark_conf(settings, "hdp-gan class archive")
    conf["spark.driver.extraJavaOptions"] += f" -XX:ArchiveClassesAtExit={target} {QUIET}"
    session.prepare_local_machine(settings)
    # The archive names the jars it was recorded from, which must still exist when a JVM
    # maps it: pyspark's own, not this temporary root's links to them. Each job's driver
    # reaches the same files through its own Spark home's links, and the JVM compares files.
    import pyspark
    os.environ["SPARK_HOME"] = str(Path(pyspark.__file__).resolve().parent)
    from pyspark.sql import SparkSession
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.enableHiveSupport().getOrCreate()
    spark.sql("CREATE DATABASE IF NOT EXISTS warm_up")
    spark.range(100).selectExpr("id", "CAST(id AS STRING) AS name", "id % 2 AS part") \
        .write.partitionBy("part").format("parquet").saveAsTable("warm_up.t")
    spark.sql("SELECT part, count(*), max(name) FROM warm_up.t GROUP BY part").collect()
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    # the JVM writes the archive as it exits, which it does once its standard input closes
    jvm.stdin.close()
    jvm.wait(timeout=300)


def main(argv=None) -> int:
    """Build the archive (--force: again); --built only tells by the exit code whether it is
    there."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--record"]:
        _record(args[1], args[2])
        return 0
    if args == ["--built"]:
        return 0 if built() else 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = build(force="--force" in args)
    if path:
        print(path)
    return 0 if path else 1


if __name__ == "__main__":
    sys.exit(main())
