"""Defaults, validation of every option, and the effective configuration.

Configuration comes from three layers, later ones winning: the defaults below, an optional
TOML file (``--config FILE`` or the ``HDP_GAN_CONFIG`` environment variable) and the
command line. Every value is validated here, before any Spark or TensorFlow work starts, so
that a wrong value fails in one line that names it and says what is expected.
"""

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATABASE = "hdp_gan"
DEFAULT_LOCAL_ROOT = "runs/default"
SUPPORTED_SCHEMES = ("file", "hdfs", "webhdfs")

# Names that reach SQL statements or storage paths: letters, digits and underscores for
# SQL identifiers; run ids and dataset names may also hold dashes and dots but never a slash.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

SECRET_KEYS = ("password", "token", "keytab", "secret")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the value and what is expected."""


@dataclass(frozen=True)
class Settings:
    """Options shared by every stage.

    root: storage root URI under which raw data, datasets, runs and the warehouse live.
    master: Spark master; ``None`` means this machine (``local-cluster`` with ``executors``
        executor JVMs of ``executor_cores`` cores each).
    database: Hive database that holds the project's tables.
    metastore_uri: ``thrift://host:9083`` of a cluster's metastore; empty for the embedded one.
    metastore_jdbc_url: JDBC URL of a shared metastore database (for example Derby's network
        server); empty means an embedded Derby database under ``state_dir``.
    state_dir: local folder for the embedded metastore, Spark's work directories and logs;
        empty means ``<root>/_local`` for a ``file://`` root and ``~/.hdp-gan`` otherwise.
    webhdfs_url: ``http://namenode:9870`` used to reach an ``hdfs://`` root from outside Spark.
    hdfs_user: user name sent to WebHDFS when Kerberos is off.
    kerberos: talk to WebHDFS with SPNEGO (needs a ticket from ``kinit``).
    """

    root: str = DEFAULT_LOCAL_ROOT
    master: str | None = None
    database: str = DEFAULT_DATABASE
    metastore_uri: str = ""
    metastore_jdbc_url: str = ""
    state_dir: str = ""
    webhdfs_url: str = ""
    hdfs_user: str = ""
    kerberos: bool = False
    executors: int = 2
    executor_cores: int = 1
    executor_memory_mb: int = 2048
    log_level: str = "INFO"
    extra_spark_conf: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "root", normalize_root(self.root))
        validate_identifier(self.database, "--database")
        for name in ("executors", "executor_cores", "executor_memory_mb"):
            require_positive(getattr(self, name), "--" + name.replace("_", "-"))
            if getattr(self, name) > JAVA_INT_MAX:  # what Spark's settings hold
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)} must be "
                                  f"at most {JAVA_INT_MAX:,}")
        if self.state_dir:
            refuse_syntax_characters(str(self.local_state_dir), "--state-dir")
        if self.executor_memory_mb < MIN_EXECUTOR_MEMORY_MB:
            raise ConfigError(
                f"--executor-memory-mb {self.executor_memory_mb} is below the "
                f"{MIN_EXECUTOR_MEMORY_MB} MB Spark needs for an executor on this machine; "
                "the default, 2048, also leaves room for TensorFlow")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"--log-level {self.log_level!r} is not a level; use DEBUG, INFO, WARNING or ERROR")
        if self.master and not MASTER.fullmatch(self.master):
            raise ConfigError(
                f"--master {self.master!r} is not a Spark master; use yarn, "
                "local-cluster[N,CORES,MB], local[N], or spark://, k8s:// or mesos:// URLs")
        if self.metastore_uri and not self.metastore_uri.startswith("thrift://"):
            raise ConfigError(
                f"--metastore-uri {redact_url(self.metastore_uri)!r} must start with thrift://")

    @property
    def is_local_root(self) -> bool:
        return self.root.startswith("file://")

    @property
    def local_state_dir(self) -> Path:
        """Local folder for the embedded metastore, Spark work directories and logs."""
        if self.state_dir:
            return Path(self.state_dir).expanduser().resolve()
        if self.is_local_root:
            return Path(urlsplit(self.root).path) / "_local"
        return Path.home() / ".hdp-gan"

    def masked(self) -> dict:
        """The settings as a dictionary with secrets and URL credentials hidden."""
        return mask_secrets({item.name: getattr(self, item.name) for item in fields(self)})


JAVA_INT_MAX = 2**31 - 1  # counts, sizes and limits end up in Java ints

# Spark refuses an executor whose memory is below 1.5 times the 300 MB it reserves, and its
# local-cluster master gives each executor at least 512 MB.
MIN_EXECUTOR_MEMORY_MB = 512


def _is_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_KEYS)


_URL_CREDENTIALS = re.compile(r"//[^/@\s]+@")


def redact_url(url: str) -> str:
    """Remove a user name and password from a URL (also one inside another, as in
    ``jdbc:postgresql://user:pw@db/m``) so that it can be logged."""
    return _URL_CREDENTIALS.sub("//***@", url)


_SECRET_PAIR = re.compile(r"(?i)((?:password|passwd|token|secret)\s*[=:]\s*)[^;&\s,]+")


def mask_secrets(value):
    """A copy of ``value`` (str, dict, list) with URL credentials and ``password=...`` style
    pairs hidden, and the values of secret-looking keys replaced by ``***``."""
    if isinstance(value, str):
        return _SECRET_PAIR.sub(r"\1***", redact_url(value) if "://" in value else value)
    if isinstance(value, dict):
        return {key: "***" if _is_secret(str(key)) else mask_secrets(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item) for item in value]
    return value


def error_line(error: BaseException, limit: int = 600, innermost: bool = False) -> str:
    """The first non-blank line of an error's message (its class name when it has none),
    credentials masked. An error py4j brings from the JVM reads as the Java exception's own
    message, not py4j's "An error occurred while calling o120.parquet"; ``innermost`` reads
    the innermost Java cause instead (a failed query's own message lies under Spark's "Job
    aborted")."""
    java = getattr(error, "java_exception", None)
    if java is None:
        text = str(error)
    elif innermost:
        while java.getCause() is not None:
            java = java.getCause()
        text = str(java.getMessage() or java.getClass().getName())
    else:
        text = str(java.toString())
    python = python_error_line(text)
    if python:  # a Python task failed: Spark's first line ends with "Traceback (...):"
        return mask_secrets(python[:limit])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    first = lines[0]
    if first.endswith("Details:"):  # Spark's failed read of a file: the reason is its cause
        cause = next((line for line in lines if line.startswith("Caused by: ")), None)
        if cause:
            first = f"{first} {cause[len('Caused by: '):]}"
    return mask_secrets(first[:limit])


# The last line of a Python traceback: a class of a module, named with its module's path
# (zipfile.BadZipFile, gan_lib.training.TrainingDiverged), or a built-in one.
_PYTHON_ERROR = re.compile(
    r"^\s*((?:[A-Za-z_]\w*\.)+[A-Z]\w*"
    r"|(?:[A-Z]\w*)?(?:Error|Exception|Diverged|Exit|Interrupt|Iteration|Warning))(: .*)?$")


def python_error_line(text: str) -> str | None:
    """The exception line of the last Python traceback in ``text`` (a Spark task failure
    carries the Python worker's traceback inside the Java message), or None."""
    if "Traceback (most recent call last)" not in text:
        return None
    block = text.split("Traceback (most recent call last)")[-1].split("\n\tat ")[0]
    found = [line.strip() for line in block.splitlines() if _PYTHON_ERROR.match(line)]
    return found[-1] if found else None


def file_uri(path) -> str:
    """The ``file://`` URI of an absolute local path, written as Spark and Hadoop write them:
    the path's characters as they are, not percent-encoded."""
    return "file://" + str(path)


# Characters a root's path may not hold: each is syntax somewhere on the way (a URL's
# fragment or query, a Hadoop path pattern, an SQL string's quote, a Derby URL's separator,
# Java's class path separator, an escape, the separator of Spark's list of local folders).
ROOT_SYNTAX_CHARACTERS = "#?[]{}*\\';:,"

# Spark masters: a typo would otherwise fail inside Spark's launcher with a Java exception.
MASTER = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\s*\d+\s*,\s*\d+\s*,\s*\d+\s*\]"
                    r"|yarn|(spark|k8s|mesos)://\S+")


def path_part(uri: str) -> str:
    """The path of a URI as Spark's file sources print it, names kept as they are: Spark does
    not percent-encode them there, so a name holding '#' or '?' must not be parsed as a URL."""
    return re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?", "", uri)


def local_file_path(uri: str) -> str | None:
    """The absolute path of a ``file:`` URI in any of the forms Spark and Hadoop write
    (``file:/x``, ``file:///x``, ``file://localhost/x``), characters kept as written; None
    when it names another host or no absolute path."""
    rest = uri[len("file:"):]
    if rest[:len("//localhost/")].lower() == "//localhost/":
        rest = rest[len("//localhost"):]
    elif rest.startswith("//"):
        if rest[2:3] != "/":
            return None  # file://host/... (or file://localhost without a path)
        rest = rest[2:]
    return "/" + rest.lstrip("/") if rest.startswith("/") else None


def refuse_syntax_characters(path: str, option: str, shown: str | None = None) -> None:
    """Refuse a folder whose path holds a character that Spark, Hadoop, Hive or Java read as
    syntax (a list separator, a glob, a URI fragment)."""
    held = sorted(set(path) & set(ROOT_SYNTAX_CHARACTERS))
    if held:
        raise ConfigError(
            f"{option} {shown or path!r} holds {' and '.join(repr(c) for c in held)}, which "
            "Spark, Hadoop, Hive or Java would read as syntax: choose a folder whose path has "
            "none of " + " ".join(ROOT_SYNTAX_CHARACTERS))


def normalize_root(root: str) -> str:
    """Turn a path or URI into an absolute storage root URI without a trailing slash.

    A plain path becomes ``file:///absolute/path``, its characters kept as they are (as Spark
    and Hadoop write local paths, and as ``storage.local_path`` reads them back: a space or a
    '%' is part of the name); so do ``file:/x`` and ``file://localhost/x``. ``hdfs://`` and
    ``webhdfs://`` URIs are kept as they are. Any other scheme, a URI with ``..`` in it, the
    file system's own root, or a path holding one of ``ROOT_SYNTAX_CHARACTERS`` is refused.
    """
    if not root or not str(root).strip():
        raise ConfigError("--root is empty; give a folder or a URI such as hdfs://nn:8020/gan")
    root = str(root)
    if urlsplit(root).scheme == "file":
        path = local_file_path(root)
        if path is None:
            raise ConfigError(f"--root {root!r}: a file: root needs an absolute path on this "
                              "machine (file:///...)")
        root = file_uri(path)
    elif "://" not in root:
        root = file_uri(Path(root).expanduser().resolve())
    parts = urlsplit(root)
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"--root {redact_url(root)!r} has scheme {parts.scheme!r}; use one of "
            + ", ".join(s + "://" for s in SUPPORTED_SCHEMES))
    path = path_part(root)
    if any(ord(c) < 32 or ord(c) == 127 for c in root):
        raise ConfigError(f"--root {redact_url(root)!r} holds a control character (a tab or a "
                          "line break); choose a folder whose path has none")
    refuse_syntax_characters(path, "--root", redact_url(root))
    if ".." in path.split("/"):
        raise ConfigError(f"--root {redact_url(root)!r} must not contain '..'")
    if parts.scheme == "file" and path.rstrip("/") == "":
        raise ConfigError(f"--root {root!r} is the file system's root; choose a folder")
    return root.rstrip("/") if path not in ("", "/") else root


def validate_identifier(value: str, option: str) -> str:
    """Check a name that becomes part of an SQL statement (database or table)."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ConfigError(
            f"{option} {value!r} is not a valid name; use letters, digits and underscores, "
            "starting with a letter, at most 64 characters")
    return value


def validate_name(value: str, option: str) -> str:
    """Check a run id or dataset name, which becomes a folder name and an SQL string."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{option} {value!r} is not a valid name; use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit, at most 100 characters")
    return value


def require_positive(value, option: str):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{option} must be a positive number, got {value!r}")
    return value


def load_file(path: str | None) -> dict:
    """Read a TOML configuration file into a flat dictionary of option values.

    Sections are flattened: ``[train] epochs = 3`` becomes ``train.epochs``; keys at the top
    level are shared settings. A missing or malformed file is a ConfigError.
    """
    path = path or os.environ.get("HDP_GAN_CONFIG")
    if not path:
        return {}
    try:
        with open(path, "rb") as handle:
            # a byte-order mark, as some Windows editors write, is no part of the text
            document = tomllib.loads(handle.read().removeprefix(b"\xef\xbb\xbf").decode())
    except FileNotFoundError:
        raise ConfigError(f"--config {path!r} does not exist") from None
    except UnicodeDecodeError as error:  # TOML is UTF-8
        raise ConfigError(f"--config {path!r} is not UTF-8 text (byte {error.start}); save it "
                          "as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config {path!r} is not valid TOML: {error}") from None
    except OSError as error:  # a folder, a file without read permission
        raise ConfigError(f"--config {path!r} cannot be read: {error.strerror}") from None
    flat = {}
    for key, value in document.items():
        if isinstance(value, dict) and key != "spark":
            for inner, inner_value in value.items():
                flat[f"{key}.{inner}"] = inner_value
        else:
            flat[key] = value
    return flat


def settings_from(values: dict) -> Settings:
    """Build Settings from a dictionary, ignoring keys that belong to single stages."""
    known = {item.name: item for item in fields(Settings)}
    chosen = {key: value for key, value in values.items() if key in known and value is not None}
    for key, value in chosen.items():
        wanted = known[key].type if isinstance(known[key].type, type) else str  # str | None
        if wanted is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            chosen[key] = value = str(value)
        if wanted is int and isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
            chosen[key] = value = int(value)
        if wanted in (str, int, bool) and (type(value) is not wanted):
            kind = {str: "a string", int: "a whole number", bool: "true or false"}[wanted]
            raise ConfigError(f"{key} = {value!r}: the setting must be {kind}")
    if "spark" in values:
        if not isinstance(values["spark"], dict):
            raise ConfigError(f"spark = {values['spark']!r}: [spark] must be a table of Spark "
                              "options")
        chosen["extra_spark_conf"] = {key: spark_value(key, value)
                                      for key, value in values["spark"].items()}
    return Settings(**chosen)


def spark_value(key: str, value) -> str:
    """A [spark] value as the string Spark's configuration holds: TOML's true and 3 become
    "true" and "3"; what Spark cannot read (lists, tables, dates, inf, nan) is refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) or isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise ConfigError(f"[spark] {key} = {value!r}: a Spark option must be a string, a "
                      "finite number, or true or false")


def with_overrides(settings: Settings, **overrides) -> Settings:
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
