"""Local files and HDFS (through WebHDFS) behind one small interface.

Spark reads and writes the root's storage itself. Everything written outside Spark (by the
driver or by TensorFlow, which has no ``hdfs://`` file system) goes through this module:
checkpoints, exported models, sample grids, reports.

Paths are URIs: ``file:///data/gan/...``, ``webhdfs://namenode:9870/gan/...`` or
``hdfs://namenode:8020/gan/...`` (reached through the WebHDFS address in the settings).

Writes are atomic from a reader's point of view: data goes to a hidden temporary name in the
same folder and is renamed into place, so a killed job never leaves a half-written file that
looks whole. Directory uploads go to a temporary folder that is renamed when complete.
"""

import logging
import os
import posixpath
import re
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gan_lib.config import (ConfigError, Settings, error_line, file_uri, local_file_path,
                            path_part, redact_url)
from gan_lib.progress import ProgressBar

logger = logging.getLogger(__name__)

RETRY_ATTEMPTS = 4
RETRY_FIRST_DELAY_S = 0.5


class StorageError(RuntimeError):
    """A storage operation failed; the message names the operation and the path."""


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with '/', refusing parts that climb out with '..'."""
    for part in parts:
        if ".." in str(part).split("/"):
            raise ConfigError(f"path part {part!r} must not contain '..'")
    # Split by hand, not as a URL: a listed name may hold '#' or '?', which are parts of
    # names in Hadoop's paths.
    path = path_part(uri)
    prefix = uri[:len(uri) - len(path)]
    return prefix + posixpath.join(path or "/", *[str(p).strip("/") for p in parts])


def spark_path(uri: str) -> str:
    """``uri`` in the form Spark and Hadoop give a path when they list or read it
    (``file:/x`` for a local file; other schemes unchanged), so that paths a job writes itself
    join with paths Spark reports."""
    if urlsplit(uri).scheme == "file":
        path = local_file_path(uri)
        if path is not None:
            return "file:" + path
    return uri


def local_path(uri: str) -> Path:
    """The local path of a ``file:`` URI in any form Spark and Hadoop write (or of a plain
    path), taken as written: as in Spark's and Hadoop's paths, '#', '?' and '%' are parts of
    file names here, not URL syntax. A ``file:`` URI naming another host or no absolute path
    is refused."""
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        path = local_file_path(uri)
        if path is None:
            raise ConfigError(f"{uri!r} names no absolute path on this machine; use file:///...")
        return Path(path)
    if scheme:
        raise ConfigError(f"{redact_url(uri)!r} is not a local path")
    return Path(uri)


def open_storage(uri: str, settings=None) -> "Storage":
    """Return the storage that serves ``uri``, chosen by its scheme."""
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):
        return LocalStorage()
    if scheme in ("webhdfs", "hdfs"):
        return WebHdfsStorage.for_uri(uri, settings)
    raise ConfigError(f"no storage for {redact_url(uri)!r}; use file://, hdfs:// or webhdfs://")


# HDFS's shell writes a file under this suffix and renames it when the copy is complete.
COPYING_SUFFIX = "._COPYING_"


def skipped_by_listing(name: str) -> bool:
    """Whether Spark's file listing leaves a file or folder name out: names starting with '.',
    names starting with '_' that hold no '=' (partition folders such as ``_part=1`` are
    kept), and files being copied in (ending in ``._COPYING_``); ``_metadata`` and
    ``_common_metadata`` names are kept (and then not read)."""
    if name.startswith(("_metadata", "_common_metadata")):
        return False
    return (name.startswith(".") or (name.startswith("_") and "=" not in name)
            or name.endswith(COPYING_SUFFIX))


def check_root(settings, create: bool) -> None:
    """Fail in one line, before any Spark work, when the root is not there.

    Stages that start a project (``create``) make the root folder itself, but not its missing
    parents (except for the default root, ``runs/default``): a mistyped path fails instead of
    growing a new tree somewhere unexpected. Stages that read what earlier stages wrote need
    the root to exist.
    """
    try:
        _check_root(settings, create)
    except OSError as error:  # a name longer than the file system takes, a denied parent
        raise ConfigError(f"--root {redact_url(settings.root)} cannot be used: "
                          f"{error.strerror or error}") from None


def _check_root(settings, create: bool) -> None:
    root = settings.root
    store = open_storage(root, settings)
    if store.exists(root):
        if not store.is_dir(root):
            raise ConfigError(f"--root {redact_url(root)} is a file; give a folder")
        return
    if not create:
        raise ConfigError(f"--root {redact_url(root)} does not exist; check the path, or start "
                          "the project there with hdp-gan ingest or hdp-gan pipeline")
    split = urlsplit(root)
    parent = urlunsplit(split._replace(path=posixpath.dirname(split.path.rstrip("/")) or "/"))
    if not store.exists(parent) and root != Settings().root:  # the default is made whole
        raise ConfigError(f"--root {redact_url(root)} does not exist and neither does its "
                          f"parent {redact_url(parent)}; check the path, or create the parent "
                          "first (mkdir -p, or hdfs dfs -mkdir -p on a cluster)")
    try:
        store.makedirs(root)
    except StorageError as error:
        raise ConfigError(f"--root {redact_url(root)} cannot be created: {error}") from error


class Storage:
    """The operations the project needs; every path argument is a URI."""

    def exists(self, uri: str) -> bool:
        raise NotImplementedError

    def list(self, uri: str) -> list[str]:
        """Names of the entries in a folder, sorted."""
        raise NotImplementedError

    def entries(self, uri: str) -> "list[tuple[str, bool]]":
        """(name, is a folder) of each entry in a folder, sorted by name, from one listing; a
        symbolic link is not a folder here."""
        raise NotImplementedError

    def is_dir(self, uri: str) -> bool:
        raise NotImplementedError

    def create_new(self, uri: str, data: bytes) -> bool:
        """Write a file only if there is none at ``uri`` (atomically, as a lock file needs);
        False when one exists."""
        raise NotImplementedError

    def touch(self, uri: str) -> None:
        """Set the file's modification time to now."""
        raise NotImplementedError

    def modified_s(self, uri: str) -> float | None:
        """The file's modification time in seconds since the epoch; None when it is gone."""
        raise NotImplementedError

    def tree_status(self, uri: str) -> "list[tuple[str, int, int]]":
        """(path below ``uri``, size, modification time in ms) of every file under the
        folder, sorted: what changes when the folder's content is replaced."""
        raise NotImplementedError

    def first_file(self, uri: str) -> str | None:
        """The URI of some file below the folder ``uri`` (searched depth first), or None."""
        found = self.files(uri, limit=1)
        return found[0] if found else None

    def walk(self, uri: str):
        """(folder URI, file names) for the folder ``uri`` and each folder below it, depth
        first and sorted, following links to folders and leaving out folders that Spark's file
        listing leaves out, as Hadoop's listing does; the file names are all of them."""
        raise NotImplementedError

    def files(self, uri: str, limit: int) -> "list[str]":
        """URIs of up to ``limit`` files below the folder ``uri``, depth first, leaving out
        names that Spark's file listing leaves out (``skipped_by_listing``)."""
        found = []
        for folder, names in self.walk(uri):
            for name in names:
                if len(found) >= limit:
                    return found
                if not skipped_by_listing(name):
                    found.append(join(folder, name))
        return found

    def being_copied(self, uri: str) -> str | None:
        """The URI of the first file below the folder ``uri`` whose name says it is still
        being copied in (``._COPYING_``, which Spark's listing leaves out), or None."""
        for folder, names in self.walk(uri):
            for name in names:
                if name.endswith(COPYING_SUFFIX) and not skipped_by_listing(name[:-len(
                        COPYING_SUFFIX)]):  # a hidden name is left out whether copied or not
                    return join(folder, name)
        return None

    def read_bytes(self, uri: str) -> bytes:
        raise NotImplementedError

    def size(self, uri: str) -> int | None:
        """The size of a file in bytes, or None when there is nothing at ``uri``."""
        raise NotImplementedError

    def read_head(self, uri: str, size: int) -> bytes:
        """The first ``size`` bytes of a file (fewer if it is shorter)."""
        return self.read_bytes(uri)[:size]

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write a whole file atomically, replacing any file already there."""
        raise NotImplementedError

    def makedirs(self, uri: str) -> None:
        raise NotImplementedError

    def rename(self, source: str, destination: str) -> None:
        """Move ``source`` to ``destination``, which must not exist."""
        raise NotImplementedError

    def delete(self, uri: str, recursive: bool = True) -> None:
        """Delete a file or folder; a missing path is not an error."""
        raise NotImplementedError

    def upload_dir(self, local_dir: str | Path, uri: str, progress: str | None = None) -> None:
        """Copy a local folder to ``uri`` atomically, replacing what was there.

        With ``progress`` set, a progress bar under that label counts the files copied.
        """
        raise NotImplementedError

    def download_dir(self, uri: str, local_dir: str | Path) -> None:
        """Copy the folder at ``uri`` into ``local_dir`` (created if needed)."""
        raise NotImplementedError

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def write_text(self, uri: str, text: str) -> None:
        self.write_bytes(uri, text.encode("utf-8"))


TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def _temporary_sibling(uri: str, kind: str = "") -> str:
    head, name = posixpath.split(urlsplit(uri).path)
    split = urlsplit(uri)
    temporary = posixpath.join(head, f".{name}{kind}.{uuid.uuid4().hex[:12]}.tmp")
    return urlunsplit((split.scheme, split.netloc, temporary, "", ""))


RETIRED = ".retired"  # an old copy renamed away before its replacement is renamed in


def remove_temporaries(store: Storage, uri: str) -> list[str]:
    """Delete the temporary files and folders that interrupted writes left below the folder
    ``uri`` and return their URIs: data not yet renamed into place, or an old copy not yet
    removed after its replacement (killed between the two renames of a folder upload, both
    copies go, the folder having neither). Only for a folder no live job is writing to."""
    removed = []
    if not store.is_dir(uri):
        return removed
    for name, is_folder in store.entries(uri):
        child = join(uri, name)
        if TEMPORARY_NAME.match(name):
            store.delete(child)
            removed.append(child)
        elif is_folder:
            removed += remove_temporaries(store, child)
    return removed


class LocalStorage(Storage):
    """Files on this machine (``file://``)."""

    def exists(self, uri):
        return local_path(uri).exists()

    def list(self, uri):
        path = local_path(uri)
        if not path.is_dir():
            raise StorageError(f"cannot list {path}: not a folder")
        return sorted(entry.name for entry in path.iterdir())

    def entries(self, uri):
        path = local_path(uri)
        if not path.is_dir():
            raise StorageError(f"cannot list {path}: not a folder")
        with os.scandir(path) as found:
            return sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in found)

    def is_dir(self, uri):
        return local_path(uri).is_dir()

    def create_new(self, uri, data):
        path = local_path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            raise StorageError(f"cannot create {path}: {error.strerror}") from error
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        return True

    def touch(self, uri):
        try:
            os.utime(local_path(uri))
        except OSError as error:
            raise StorageError(f"cannot touch {local_path(uri)}: {error.strerror}") from error

    def modified_s(self, uri):
        try:
            return local_path(uri).stat().st_mtime
        except FileNotFoundError:
            return None

    def tree_status(self, uri):
        base = local_path(uri)
        found = []
        for folder, _, names in os.walk(base):
            for name in names:
                stat = (Path(folder) / name).stat()
                found.append((str((Path(folder) / name).relative_to(base)), stat.st_size,
                              stat.st_mtime_ns // 1_000_000))
        return sorted(found)

    def walk(self, uri):
        for folder, folders, names in os.walk(local_path(uri), followlinks=True):
            folders[:] = sorted(n for n in folders if not skipped_by_listing(n))
            yield file_uri(Path(folder)), sorted(names)

    def read_head(self, uri, size):
        try:
            with open(local_path(uri), "rb") as handle:
                return handle.read(size)
        except OSError as error:
            raise StorageError(f"cannot read {local_path(uri)}: {error.strerror}") from error

    def read_bytes(self, uri):
        try:
            return local_path(uri).read_bytes()
        except OSError as error:
            raise StorageError(f"cannot read {local_path(uri)}: {error.strerror}") from error

    def size(self, uri):
        try:
            return local_path(uri).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageError(f"cannot look at {local_path(uri)}: {error.strerror}") from error

    def write_bytes(self, uri, data):
        path = local_path(uri)
        temporary = local_path(_temporary_sibling(uri))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {error.strerror}") from error

    def makedirs(self, uri):
        try:
            local_path(uri).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create folder {local_path(uri)}: "
                               f"{error.strerror}") from error

    def rename(self, source, destination):
        target = local_path(destination)
        if target.exists():
            raise StorageError(f"cannot rename onto {target}: it exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(local_path(source), target)

    def delete(self, uri, recursive=True):
        path = local_path(uri)
        if path.is_dir() and not path.is_symlink():
            if recursive:
                shutil.rmtree(path)
            else:
                path.rmdir()
        elif path.exists() or path.is_symlink():
            path.unlink()

    def upload_dir(self, local_dir, uri, progress=None):
        target = local_path(uri)
        remove_abandoned_siblings(self, uri)
        staging_uri = _temporary_sibling(uri)
        staging = local_path(staging_uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _file_progress(local_dir, progress) as bar:
            def copy(source, destination):
                shutil.copy2(source, destination)
                bar.advance()
            shutil.copytree(local_dir, staging, copy_function=copy)
        _swap_into_place(self, staging_uri, uri)

    def download_dir(self, uri, local_dir):
        shutil.copytree(local_path(uri), local_dir, dirs_exist_ok=True)


def _file_progress(local_dir, label: str | None) -> ProgressBar:
    """A bar counting the files under ``local_dir``, or a silent one when ``label`` is None."""
    total = sum(len(files) for _, _, files in os.walk(local_dir)) if label else 0
    return ProgressBar(label or "", total)


def _swap_into_place(storage: Storage, staging: str, uri: str) -> None:
    """Rename a complete staging folder over ``uri``; the old copy is moved aside under a
    retired name and removed afterwards (``restore_retired`` puts it back when a swap stopped
    between its two renames; the uploads call it, through ``remove_abandoned_siblings``,
    before they start)."""
    retired = None
    if storage.exists(uri):
        retired = _temporary_sibling(uri, RETIRED)
        storage.rename(uri, retired)
    storage.rename(staging, uri)
    if retired:
        storage.delete(retired)


ABANDONED_AFTER_S = 3600  # a temporary copy untouched this long belongs to no live process


def remove_abandoned_siblings(storage: Storage, uri: str) -> list[str]:
    """Delete the temporary copies of ``uri`` (``.<name>.<hex>.tmp`` beside it) that a killed
    process left and nothing has touched for ABANDONED_AFTER_S; an old copy moved aside is
    put back first when nothing is at ``uri``. Returns the URIs deleted."""
    parent_uri, name = _parent_and_name(uri)
    if not storage.exists(parent_uri):
        return []
    restore_retired(storage, uri)
    removed = []
    now = time.time()
    for entry in storage.list(parent_uri):
        if not (entry.startswith(f".{name}.") and TEMPORARY_NAME.match(entry)):
            continue
        child = join(parent_uri, entry)
        modified = storage.modified_s(child)
        if modified is not None and now - modified > ABANDONED_AFTER_S:
            storage.delete(child)
            removed.append(child)
    if removed:
        logger.info("removed %d temporary copies of %s that interrupted runs left",
                    len(removed), redact_url(uri))
    return removed


def _parent_and_name(uri: str) -> tuple[str, str]:
    split = urlsplit(uri)
    parent, name = posixpath.split(split.path.rstrip("/"))
    return urlunsplit((split.scheme, split.netloc, parent, "", "")), name


def restore_retired(storage: Storage, uri: str) -> bool:
    """Put back the newest retired copy of ``uri`` when nothing is at ``uri``; True if one
    was."""
    parent_uri, name = _parent_and_name(uri)
    if storage.exists(uri) or not storage.exists(parent_uri):
        return False
    prefix = f".{name}{RETIRED}."
    retired = [entry for entry in storage.list(parent_uri)
               if entry.startswith(prefix) and TEMPORARY_NAME.match(entry)]
    if not retired:
        return False
    newest = max(retired, key=lambda entry: storage.modified_s(join(parent_uri, entry)) or 0)
    storage.rename(join(parent_uri, newest), uri)
    logger.warning("put back %s, which an interrupted replacement had moved aside", uri)
    return True


class WebHdfsStorage(Storage):
    """HDFS through the WebHDFS REST API with HdfsCLI (plain or Kerberos client).

    Idempotent calls (status, list, read, mkdirs, a write to a temporary name) are retried
    with exponential back-off when the server answers 5xx or the connection fails; renames
    and deletes are not retried blindly, they check the outcome first.
    """

    def __init__(self, client, netloc: str, scheme: str):
        self.client = client
        self.netloc = netloc
        self.scheme = scheme

    @classmethod
    def for_uri(cls, uri: str, settings=None) -> "WebHdfsStorage":
        split = urlsplit(uri)
        if split.scheme == "webhdfs":
            http_url = f"http://{split.netloc}"
        else:
            http_url = (getattr(settings, "webhdfs_url", "")
                        or os.environ.get("HDP_GAN_WEBHDFS_URL", ""))
            if not http_url:
                raise ConfigError(
                    f"{redact_url(uri)!r} is an hdfs:// path; set webhdfs_url (for example "
                    "http://namenode:9870) so that files can be written outside Spark")
        user = getattr(settings, "hdfs_user", "") or os.environ.get("HADOOP_USER_NAME") or None
        if getattr(settings, "kerberos", False):
            from hdfs.ext.kerberos import KerberosClient
            client = KerberosClient(http_url, timeout=60)
        else:
            from hdfs import InsecureClient
            client = InsecureClient(http_url, user=user or os.environ.get("USER", "hdfs"),
                                    timeout=60)
        return cls(client, split.netloc, split.scheme)

    def _path(self, uri: str) -> str:
        return path_part(uri) or "/"

    def _retry(self, what: str, uri: str, call):
        from hdfs.util import HdfsError
        import requests
        delay = RETRY_FIRST_DELAY_S
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                return call()
            except (HdfsError, requests.RequestException) as error:
                transient = _is_transient(error)
                if not transient or attempt == RETRY_ATTEMPTS:
                    raise StorageError(
                        f"cannot {what} {redact_url(uri)}: {_describe(error)}") from error
                logger.warning("%s %s failed (%s); retry %d of %d in %.1f s", what,
                               redact_url(uri), _describe(error), attempt,
                               RETRY_ATTEMPTS - 1, delay)
                time.sleep(delay)
                delay *= 2

    def _status(self, uri) -> dict | None:
        """The path's FileStatus, or None when the namenode says it does not exist. Any other
        answer is an error, retried when transient (HdfsCLI's ``strict=False`` would take a
        server error for a missing path)."""
        from hdfs.util import HdfsError

        def call():
            try:
                return self.client.status(self._path(uri))
            except HdfsError as error:
                if error.exception == "FileNotFoundException":
                    return None
                raise
        return self._retry("check", uri, call)

    def exists(self, uri):
        return self._status(uri) is not None

    def list(self, uri):
        return sorted(self._retry("list", uri, lambda: self.client.list(self._path(uri))))

    def entries(self, uri):
        listed = self._retry("list", uri, lambda: self.client.list(self._path(uri), status=True))
        return sorted((name, status["type"] == "DIRECTORY") for name, status in listed)

    def is_dir(self, uri):
        status = self._status(uri)
        return bool(status) and status["type"] == "DIRECTORY"

    def create_new(self, uri, data):
        from hdfs.util import HdfsError

        def call():
            try:
                self.client.write(self._path(uri), data=data, overwrite=False)
                return True
            except HdfsError as error:
                if error.exception == "FileAlreadyExistsException":
                    return False
                raise
        return self._retry("create", uri, call)

    def touch(self, uri):
        now_ms = int(time.time() * 1000)
        self._retry("touch", uri, lambda: self.client.set_times(self._path(uri),
                                                                 modification_time=now_ms))

    def modified_s(self, uri):
        status = self._status(uri)
        return None if status is None else status["modificationTime"] / 1000

    def tree_status(self, uri):
        found = []

        def visit(path, prefix):
            listed = self._retry("list", self._uri(path),
                                 lambda: self.client.list(path, status=True))
            for name, status in listed:
                if status["type"] == "DIRECTORY":
                    visit(posixpath.join(path, name), prefix + name + "/")
                else:
                    found.append((prefix + name, status["length"], status["modificationTime"]))
        visit(self._path(uri), "")
        return sorted(found)

    def walk(self, uri):
        for folder, folders, names in self.client.walk(self._path(uri), allow_dir_changes=True):
            folders[:] = sorted(n for n in folders if not skipped_by_listing(n))
            yield self._uri(folder), sorted(names)

    def read_head(self, uri, size):
        def read():
            with self.client.read(self._path(uri), length=size) as reader:
                return reader.read()
        return self._retry("read", uri, read)

    def read_bytes(self, uri):
        def read():
            with self.client.read(self._path(uri)) as reader:
                return reader.read()
        return self._retry("read", uri, read)

    def size(self, uri):
        status = self._status(uri)
        return None if status is None else status["length"]

    def write_bytes(self, uri, data):
        temporary = _temporary_sibling(uri)
        self._retry("write", temporary, lambda: self.client.write(
            self._path(temporary), data=data, overwrite=True))
        if self.exists(uri):
            self.delete(uri)
        self.rename(temporary, uri)

    def makedirs(self, uri):
        self._retry("create folder", uri, lambda: self.client.makedirs(self._path(uri)))

    def rename(self, source, destination):
        parent = posixpath.dirname(self._path(destination))
        self.makedirs(self._uri(parent))
        try:
            self.client.rename(self._path(source), self._path(destination))
        except Exception as error:
            if self.exists(destination) and not self.exists(source):
                return  # the rename went through before the answer was lost
            raise StorageError(
                f"cannot rename {redact_url(source)} to {redact_url(destination)}: "
                f"{error_line(error, 300)}") from error

    def delete(self, uri, recursive=True):
        self._retry("delete", uri,
                    lambda: self.client.delete(self._path(uri), recursive=recursive))

    def upload_dir(self, local_dir, uri, progress=None):
        remove_abandoned_siblings(self, uri)
        staging = _temporary_sibling(uri)
        with _file_progress(local_dir, progress) as bar:
            def file_done(_path, transferred):
                if transferred == -1:
                    bar.advance()
            self._retry("upload to", staging, lambda: self.client.upload(
                self._path(staging), str(local_dir), overwrite=True, n_threads=1,
                progress=file_done))
        _swap_into_place(self, staging, uri)

    def download_dir(self, uri, local_dir):
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for name in self.list(uri):
            child = join(uri, name)
            status = self._retry("check", child, lambda: self.client.status(self._path(child)))
            if status["type"] == "DIRECTORY":
                self.download_dir(child, Path(local_dir) / name)
            else:
                (Path(local_dir) / name).write_bytes(self.read_bytes(child))

    def _uri(self, path: str) -> str:
        return urlunsplit((self.scheme, self.netloc, path, "", ""))


def _describe(error: Exception) -> str:
    """One short line for a WebHDFS failure: for a connection that failed, the address and
    the system's reason (requests' own message runs to some 300 characters, the reason
    last)."""
    import requests
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        text = str(error)
        address = re.search(r"host='([^']*)', port=(\d+)", text)
        reason = (re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
                  or re.search(r"(Read timed out|Connection aborted|timed out)", text))
        if address and reason:
            kind = "timed out" if isinstance(error, requests.Timeout) else "failed"
            return (f"the connection to {address.group(1)}:{address.group(2)} {kind} "
                    f"({reason.group(1).strip()})")
    return error_line(error, 300)


PERMANENT_HDFS_ERRORS = {
    "FileNotFoundException", "AccessControlException", "FileAlreadyExistsException",
    "IllegalArgumentException", "ParentNotDirectoryException", "PathIsNotEmptyDirectoryException",
    "UnsupportedOperationException", "SecurityException", "InvalidPathException",
}


def _is_transient(error: Exception) -> bool:
    """Worth retrying: a lost connection, a timeout, or a server-side error that is not about
    the request itself (WebHDFS answers those with exceptions such as RetriableException or
    StandbyException, or with a body that is not JSON at all)."""
    import requests
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    exception = getattr(error, "exception", None)
    if exception is None:
        return "already exists" not in str(error) and "Authentication" not in str(error)
    return exception not in PERMANENT_HDFS_ERRORS
