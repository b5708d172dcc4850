"""Bringing the project to a YARN cluster: the Spark settings of a cluster submission, the
Oozie application folder, and the Python environment archive that travels with every job.

Three things leave this machine for a cluster:

- ``env.tar.gz``: a virtualenv holding the project and its dependencies. YARN unpacks it in
  every container as ``./env`` (``--archives env.tar.gz#env``), and the driver and the
  executors run ``./env/bin/python``.
- the Oozie application folder: ``workflow.xml``, ``coordinator.xml``, ``lib/`` with the job
  files and PySpark's ``pyspark.zip`` and py4j zip, and the env archive beside ``lib/`` (inside
  ``lib/`` every Oozie launcher would download it as a plain file).
- the settings of a submission (:func:`submit_conf`), used by ``scripts/submit_yarn.sh`` and
  compared with ``oozie/workflow.xml`` by the tests, so that both ways of submitting agree.

The archive is a virtualenv made with ``--copies``: its interpreter still loads the standard
library of the Python it was made from, so every node needs that Python (same version, same
path: ``home`` in ``env/pyvenv.cfg``). TensorFlow's wheels also need glibc 2.27 or later on
the nodes.

The module is run by the shell scripts (``python -m gan_lib.deploy COMMAND``); the commands
are listed in :func:`main`.
"""

import argparse
import gzip
import hashlib
import importlib.util
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from gan_lib.config import ConfigError, Settings

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent

# --- submission settings -------------------------------------------------------------------

ENV_ALIAS = "env"
SHIPPED_PYTHON = f"./{ENV_ALIAS}/bin/python"
ENV_ARCHIVE_NAME = "env.tar.gz"

# The jobs of the Oozie workflow, in the order it runs them.
WORKFLOW_JOBS = ("preprocess", "train_dcgan", "train_classifier", "generate", "label")

# hdp-gan subcommands whose job module has another name.
SUBCOMMAND_MODULES = {"train": "train_dcgan", "train-classifier": "train_classifier"}

# Container sizes on YARN. TensorFlow allocates its memory in the Python process, outside the
# JVM heap, so the overhead (what YARN grants beyond the heap) is larger than the heap. The
# classifier trains in the driver, which therefore gets the same room as an executor.
# oozie/job.properties repeats these values as defaults; a test keeps them equal.
YARN_MEMORY = {
    "spark.driver.memory": "1g",
    "spark.driver.memoryOverhead": "1536m",
    "spark.executor.memory": "1g",
    "spark.executor.memoryOverhead": "1536m",
}

# Environment variables that the jobs read on the driver and the executors; each one set on
# the submitting machine is passed on to both.
FORWARDED_ENVIRONMENT = ("HDP_GAN_WEBHDFS_URL", "HADOOP_USER_NAME")


def job_module(job: str) -> str:
    """The module in ``jobs/`` of a job given by module name (``train_dcgan``) or by hdp-gan
    subcommand (``train``)."""
    module = SUBCOMMAND_MODULES.get(job, job.replace("-", "_"))
    if not module.isidentifier() or importlib.util.find_spec(f"jobs.{module}") is None:
        raise ConfigError(f"job {job!r} is not one of jobs/*.py; use a module name such as "
                          f"{', '.join(WORKFLOW_JOBS)} or an hdp-gan subcommand such as train")
    return module


def job_file(job: str) -> Path:
    """The file that spark-submit runs for ``job``."""
    return Path(importlib.util.find_spec(f"jobs.{job_module(job)}").origin)


def submit_conf(job: str, settings: Settings, environment: dict | None = None) -> dict:
    """The Spark settings that a YARN submission of ``job`` must carry on its command line.

    What the job's own session sets (``gan_lib.session.spark_conf``) takes effect only once
    the driver runs; these are read before: the shipped interpreter for the application
    master and the executors, one application attempt, the container sizes and, for
    training, everything TensorFlowOnSpark needs (``gan_lib.session.training_conf``).
    ``environment`` names variables passed to the driver and the executors.
    """
    from gan_lib import session

    module = job_module(job)
    conf = {
        "spark.pyspark.python": SHIPPED_PYTHON,
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON": SHIPPED_PYTHON,
        "spark.yarn.maxAppAttempts": "1",
        "spark.dynamicAllocation.enabled": "false",
        "spark.executor.instances": str(settings.executors),
        **YARN_MEMORY,
    }
    for name, value in sorted((environment or {}).items()):
        conf[f"spark.yarn.appMasterEnv.{name}"] = value
        conf[f"spark.executorEnv.{name}"] = value
    if module == "train_dcgan":
        conf.update(session.training_conf(settings))
    return conf


def forwarded_environment() -> dict:
    return {name: os.environ[name] for name in FORWARDED_ENVIRONMENT if os.environ.get(name)}


# --- the Oozie application folder ----------------------------------------------------------

# Namespaces per Oozie schema generation. 1.0 needs Oozie 5; upstream Oozie 4.3 (the HDP 3.1
# release) knows workflow 0.5 and spark-action 0.2. The workflow uses only elements that both
# generations share, so the older one is the same file with other namespaces.
OOZIE_NAMESPACES = {
    "1.0": ("uri:oozie:workflow:1.0", "uri:oozie:spark-action:1.0"),
    "0.5": ("uri:oozie:workflow:0.5", "uri:oozie:spark-action:0.2"),
}


def workflow_for_schema(text: str, schema: str) -> str:
    """The workflow definition with the namespaces of Oozie schema ``schema``."""
    if schema not in OOZIE_NAMESPACES:
        raise ConfigError(f"--oozie-schema {schema!r} is not known; use "
                          + " or ".join(OOZIE_NAMESPACES))
    for current, wanted in zip(OOZIE_NAMESPACES["1.0"], OOZIE_NAMESPACES[schema]):
        text = text.replace(f'"{current}"', f'"{wanted}"')
    return text


def pyspark_python_libs() -> list[Path]:
    """``pyspark.zip`` and the py4j source zip of the installed pyspark package."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ConfigError("pyspark is not installed here; the Oozie application needs its "
                          "pyspark.zip and py4j zip (pip install pyspark)")
    lib = Path(spec.origin).parent / "python" / "lib"
    zips = sorted(lib.glob("pyspark.zip")) + sorted(lib.glob("py4j-*-src.zip"))
    if len(zips) != 2:
        raise ConfigError(f"{lib} should hold pyspark.zip and one py4j-*-src.zip; found "
                          f"{[path.name for path in zips]}")
    return zips


def assemble_app(destination, env_archive=None, oozie_schema: str = "1.0",
                 repo: Path = REPO) -> Path:
    """Lay out the Oozie application folder in the empty or new folder ``destination``.

    ``env_archive`` is linked (or copied) in as ``env.tar.gz``; without it the folder is
    complete except for the archive, which is then expected on HDFS already.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise ConfigError(f"{destination} is a file; give a new or empty folder")
    if destination.exists() and any(destination.iterdir()):
        raise ConfigError(f"{destination} is not empty; give a new or empty folder")
    if env_archive:
        with open(env_archive, "rb") as archive:
            if archive.read(2) != b"\x1f\x8b":  # gzip's magic number
                raise ConfigError(f"--env-archive {env_archive} is not a gzip archive; give "
                                  "the env.tar.gz that scripts/package_env.sh builds")
    lib = destination / "lib"
    lib.mkdir(parents=True, exist_ok=True)

    workflow = (repo / "oozie" / "workflow.xml").read_text(encoding="utf-8")
    (destination / "workflow.xml").write_text(workflow_for_schema(workflow, oozie_schema),
                                              encoding="utf-8")
    shutil.copy2(repo / "oozie" / "coordinator.xml", destination / "coordinator.xml")
    for module in WORKFLOW_JOBS:
        shutil.copy2(repo / "jobs" / f"{module}.py", lib / f"{module}.py")
    for library in pyspark_python_libs():
        shutil.copy2(library, lib / library.name)

    if env_archive:
        _link_or_copy(Path(env_archive), destination / ENV_ARCHIVE_NAME)
    logger.info("assembled the Oozie application in %s (%d files in lib/)", destination,
                len(list(lib.iterdir())))
    return destination


def _link_or_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise ConfigError(f"env archive {source} does not exist; build it with "
                          "scripts/package_env.sh")
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def upload_app(app_dir, destination_uri: str) -> None:
    """Copy the application folder to ``destination_uri`` (hdfs://, webhdfs:// or file://),
    replacing what is there once the copy is complete."""
    from gan_lib import storage

    settings = Settings(root=destination_uri,
                        webhdfs_url=os.environ.get("HDP_GAN_WEBHDFS_URL", ""),
                        hdfs_user=os.environ.get("HADOOP_USER_NAME", ""),
                        kerberos=os.environ.get("HDP_GAN_KERBEROS", "") == "1")
    started = time.monotonic()
    storage.open_storage(settings.root, settings).upload_dir(app_dir, settings.root,
                                                             progress="deploy: uploading")
    logger.info("uploaded %s to %s in %.0f s", app_dir, settings.root,
                time.monotonic() - started)


# --- reading the Oozie definitions back (for checks and local rehearsals) -------------------

EL_EXPRESSION = re.compile(r"\$\{([^}]*)\}")


@dataclass
class WorkflowNode:
    """One node of a workflow: its kind (start, action, decision, kill, end), the nodes it
    can go to, a decision's cases as (expression, target) with ``None`` for the default, and
    a Spark action's elements (master, mode, name, jar, spark-opts, args)."""

    name: str
    kind: str
    transitions: list = field(default_factory=list)
    ok: str | None = None
    error: str | None = None
    cases: list = field(default_factory=list)
    spark: dict | None = None
    message: str = ""


def read_workflow(path) -> tuple[str, dict]:
    """Parse a workflow definition into its start node's target and its nodes by name."""
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(path).getroot()
    start = root.find("{*}start").get("to")
    nodes = {"start": WorkflowNode("start", "start", [start])}
    for element in root:
        kind = element.tag.split("}")[-1]
        name = element.get("name")
        if kind == "action":
            node = WorkflowNode(name, kind, ok=element.find("{*}ok").get("to"),
                                error=element.find("{*}error").get("to"))
            node.transitions = [node.ok, node.error]
            spark = element.find("{*}spark")
            if spark is not None:
                node.spark = {child.tag.split("}")[-1]: (child.text or "").strip()
                              for child in spark if child.tag.split("}")[-1] != "arg"}
                node.spark["args"] = [(arg.text or "") for arg in spark.findall("{*}arg")]
        elif kind == "decision":
            node = WorkflowNode(name, kind)
            for case in element.find("{*}switch"):
                expression = (case.text or "").strip() if case.tag.endswith("case") else None
                node.cases.append((expression, case.get("to")))
            node.transitions = [target for _, target in node.cases]
        elif kind in ("kill", "end"):
            node = WorkflowNode(name, kind)
            node.message = (element.findtext("{*}message") or "").strip()
        else:
            continue
        nodes[name] = node
    return start, nodes


def read_properties(path) -> dict:
    """Read a Java properties file of ``key=value`` lines (no line continuations)."""
    values = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise ConfigError(f"{path}:{number}: {line!r} is not a key=value line")
        values[key.strip()] = value.strip()
    return values


def expand(text: str, values: dict) -> str:
    """Replace each ``${...}`` in ``text`` by its value in ``values``, whose keys are property
    names or whole expressions such as ``wf:user()``; values may hold references of their
    own. An expression without a value is a ConfigError that names it."""
    for _ in range(10):
        if "${" not in text:
            return text

        def value_of(match):
            expression = match.group(1).strip()
            if expression not in values:
                raise ConfigError(f"no value for ${{{expression}}}")
            return str(values[expression])
        text = EL_EXPRESSION.sub(value_of, text)
    raise ConfigError(f"references nest too deep (a cycle?) in {text!r}")


# --- the Python environment archive ---------------------------------------------------------

# Left out of the archive: C++ headers, and PySpark's jars and examples. On YARN the Spark
# jars come from the submitting Spark (or Oozie's Spark sharelib); PySpark's Python code
# stays, so that `import pyspark` works in the environment.
EXCLUDED_FROM_ENV = ("tensorflow/include", "pyspark/jars", "pyspark/examples")

# Bump when the archive's layout changes, so that cached dependency layers are rebuilt.
ENV_FORMAT = "1"

# A start line that runs the script with the python beside it, wherever the folder lies.
RELOCATABLE_SHEBANG = b"#!/bin/sh\n'''exec' \"$(dirname -- \"$0\")/python\" \"$0\" \"$@\"\n' '''\n"

PROJECT_SOURCES = ("setup.py", "README.md", "gan_lib", "jobs")


def dependency_key(repo: Path, python: str) -> str:
    """What the dependency layer depends on: the declared and pinned dependencies, the base
    interpreter and this layout."""
    digest = hashlib.sha256()
    for name in ("setup.py", "constraints.txt"):
        path = repo / name
        digest.update(path.read_bytes() if path.exists() else b"-")
    version = subprocess.run([python, "-c", "import sys; print(sys.version, sys.base_prefix)"],
                             capture_output=True, text=True, check=True).stdout
    digest.update(f"{version}|{ENV_FORMAT}|{EXCLUDED_FROM_ENV}".encode())
    return digest.hexdigest()[:16]


def package_env(output, python: str = sys.executable, cache_dir=None,
                repo: Path = REPO) -> dict:
    """Write ``output`` (env.tar.gz): a virtualenv with the project and its dependencies.

    The archive is two gzip members that gunzip reads as one tar stream: the dependencies,
    built once per :func:`dependency_key` and kept in ``cache_dir``, followed by the
    project's own files. A change to the code therefore costs seconds; a change to the
    dependencies rebuilds the first part (pip install and compression, a few minutes).
    Returns what was done, with timings.
    """
    output = Path(output).resolve()
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().resolve()
    started = time.monotonic()
    key = dependency_key(repo, python)
    layer = cache_dir / f"deps-{key}"
    rebuilt = not (layer / "dependencies.tar.gz").exists()
    if rebuilt:
        _build_dependency_layer(layer, python, repo)
        _prune_other_layers(cache_dir, keep=layer)
    dependencies_s = time.monotonic() - started

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    shutil.copyfile(layer / "dependencies.tar.gz", partial)
    with tempfile.TemporaryDirectory(prefix="hdp-gan-project-") as scratch:
        files = _install_project(layer / "env", repo, Path(scratch))
        with open(partial, "ab") as handle, gzip.GzipFile(fileobj=handle, mode="wb") as stream:
            archive = tarfile.TarFile(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT)
            for source, name in files:
                _add(archive, source, name, shebang_prefix=str(layer / "env"))
            archive.close()  # this last member ends the archive
    partial.replace(output)
    summary = {"archive": str(output), "bytes": output.stat().st_size,
               "dependency_key": key, "dependencies_rebuilt": rebuilt,
               "dependencies_s": round(dependencies_s, 1),
               "total_s": round(time.monotonic() - started, 1)}
    logger.info("env archive %s: %.0f MB in %.0f s (dependencies %s)", output,
                summary["bytes"] / 1e6, summary["total_s"],
                "rebuilt" if rebuilt else "from the cache")
    return summary


def default_cache_dir() -> Path:
    return Path(os.environ.get("HDP_GAN_ENV_CACHE", "~/.cache/hdp-gan/env")).expanduser()


def _stage_sources(repo: Path, folder: Path) -> Path:
    """Copy what pip needs to build the project, so that its build folders stay out of the
    checkout."""
    source = folder / "source"
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_SOURCES:
        path = repo / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, source / name)
        elif name == "README.md":  # setup.py reads it
            (source / name).write_text("")
    return source


def _build_dependency_layer(layer: Path, python: str, repo: Path) -> None:
    """Make a virtualenv with the project's dependencies (not the project) and write it as
    the first gzip member of future archives, without the end-of-archive blocks."""
    building = layer.with_name(f".{layer.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    env = building / "env"
    logger.info("building the dependency layer in %s (pip install, a few minutes)", building)
    subprocess.run([python, "-m", "venv", "--copies", str(env)], check=True)
    env_python = str(env / "bin" / "python")
    pip = [env_python, "-m", "pip", "--disable-pip-version-check", "-q"]
    with tempfile.TemporaryDirectory(prefix="hdp-gan-deps-") as scratch:
        source = _stage_sources(repo, Path(scratch))
        constraints = ["-c", str(repo / "constraints.txt")] \
            if (repo / "constraints.txt").exists() else []
        subprocess.run(pip + ["install", *constraints, str(source)], check=True)
    subprocess.run(pip + ["uninstall", "-y", "hdp-gan"], check=True)

    # gzip level 1: 771 MB in 43 s on 2 cores, against 701 MB in 109 s at level 6.
    with gzip.GzipFile(building / "dependencies.tar.gz", mode="wb", compresslevel=1) as stream:
        archive = tarfile.TarFile(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT)
        for path in sorted(_walk(env)):
            name = path.relative_to(env).as_posix()
            if not _excluded(name):
                _add(archive, path, name, shebang_prefix=str(env))
        # No archive.close(): the end-of-archive blocks come with the project's member.
    shutil.rmtree(layer, ignore_errors=True)
    building.rename(layer)


def _walk(root: Path):
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            yield Path(folder) / name


def _excluded(name: str) -> bool:
    site = name.split("/site-packages/", 1)
    inner = site[1] if len(site) == 2 else ""
    return any(inner == part or inner.startswith(part + "/") for part in EXCLUDED_FROM_ENV)


def _prune_other_layers(cache_dir: Path, keep: Path) -> None:
    for entry in cache_dir.glob("deps-*"):
        if entry != keep and entry.is_dir():
            logger.info("removing the outdated dependency layer %s", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _install_project(env: Path, repo: Path, scratch: Path) -> list[tuple[Path, str]]:
    """Install the project (without dependencies) into a scratch folder and return its
    files with their names inside the environment."""
    source = _stage_sources(repo, scratch)
    target = scratch / "target"
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "--disable-pip-version-check",
                    "-q", "install", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True)
    site_packages = _site_packages(env).relative_to(env).as_posix()
    files = []
    for path in sorted(_walk(target)):
        relative = path.relative_to(target).as_posix()
        if relative == "bin" or relative.startswith("bin/"):
            files.append((path, relative))
        else:
            files.append((path, f"{site_packages}/{relative}"))
    return files


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise ConfigError(f"{env} has no single lib/python3*/site-packages folder")
    return found[0]


def _add(archive: tarfile.TarFile, path: Path, name: str, shebang_prefix: str) -> None:
    """Add one entry, owned by root, with scripts made relocatable."""
    info = archive.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if not info.isfile():
        archive.addfile(info)
        return
    if name.startswith("bin/"):
        data = path.read_bytes()
        first_line, _, rest = data.partition(b"\n")
        if first_line.startswith(b"#!") and shebang_prefix.encode() in first_line:
            data = RELOCATABLE_SHEBANG + rest
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            return
    with open(path, "rb") as handle:
        archive.addfile(info, handle)


# --- command line for the shell scripts ------------------------------------------------------

def _print_spark_conf(args) -> int:
    conf = submit_conf(args.job, Settings(executors=args.executors),
                       forwarded_environment())
    for key, value in conf.items():
        print("--conf")
        print(f"{key}={value}")
    return 0


def _print_job_file(args) -> int:
    print(job_file(args.job))
    return 0


def _assemble(args) -> int:
    env_archive = args.env_archive
    if env_archive and not Path(env_archive).is_file():
        if not args.allow_missing_env:
            raise ConfigError(f"--env-archive {env_archive} does not exist; build it with "
                              "scripts/package_env.sh")
        logger.warning("no env archive at %s: the folder is assembled without it", env_archive)
        env_archive = None
    print(assemble_app(args.folder, env_archive, args.oozie_schema))
    return 0


def _upload(args) -> int:
    upload_app(args.folder, args.uri)
    return 0


def _package(args) -> int:
    import json
    print(json.dumps(package_env(args.output, args.python, args.cache)))
    return 0


def main(argv=None) -> int:
    """Commands: ``spark-conf JOB`` (the ``--conf`` flags of a YARN submission, one token a
    line), ``job-file JOB``, ``assemble FOLDER``, ``upload FOLDER URI``, ``package-env
    OUTPUT``."""
    parser = argparse.ArgumentParser(prog="python -m gan_lib.deploy",
                                     description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    conf = commands.add_parser("spark-conf", help="--conf flags of a YARN submission")
    conf.add_argument("job")
    conf.add_argument("--executors", type=int, default=Settings.executors)
    conf.set_defaults(run=_print_spark_conf)
    job = commands.add_parser("job-file", help="the file spark-submit runs for a job")
    job.add_argument("job")
    job.set_defaults(run=_print_job_file)
    assemble = commands.add_parser("assemble", help="lay out the Oozie application folder")
    assemble.add_argument("folder")
    assemble.add_argument("--env-archive", default=None)
    assemble.add_argument("--allow-missing-env", action="store_true")
    assemble.add_argument("--oozie-schema", default="1.0", choices=sorted(OOZIE_NAMESPACES))
    assemble.set_defaults(run=_assemble)
    upload = commands.add_parser("upload", help="copy the application folder to HDFS")
    upload.add_argument("folder")
    upload.add_argument("uri")
    upload.set_defaults(run=_upload)
    package = commands.add_parser("package-env", help="build env.tar.gz")
    package.add_argument("output")
    package.add_argument("--python", default=sys.executable,
                         help="base interpreter of the environment")
    package.add_argument("--cache", default=None,
                         help="folder for the dependency layer (default: HDP_GAN_ENV_CACHE "
                              "or ~/.cache/hdp-gan/env)")
    package.set_defaults(run=_package)

    args = parser.parse_args(argv)
    from gan_lib.storage import StorageError
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("hdfs").setLevel(logging.WARNING)  # HdfsCLI's line per request
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"{parser.prog} {args.command}: failed: {' '.join(map(str, error.cmd[:6]))} "
              f"exited with {error.returncode}", file=sys.stderr)
        return 1
    except StorageError as error:  # the upload: HDFS refused or did not answer
        print(f"{parser.prog} {args.command}: failed: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a folder that cannot be made or written here
        print(f"{parser.prog} {args.command}: failed: {error.strerror or error}"
              + (f": {error.filename}" if error.filename else ""), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
