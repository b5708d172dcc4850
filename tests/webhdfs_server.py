"""A WebHDFS REST server on loopback that serves a local directory as the HDFS namespace.

No NameNode or DataNode can run on a development machine or in CI, yet the project's storage
code talks to HDFS through two real clients: Spark's ``webhdfs://`` Hadoop file system and
HdfsCLI. This server speaks enough of the WebHDFS REST protocol for both of them, so tests
exercise the real clients end to end:

    with WebHdfsServer(tmp_path) as server:
        InsecureClient(server.url, user="test").write("/a/b.txt", b"hello")
        spark.read.text(server.webhdfs_uri("/a/b.txt"))

What it does as a NameNode and DataNode would:

- CREATE, APPEND, OPEN and GETFILECHECKSUM answer first with a 307 redirect to a "data node",
  which is this same server with ``datanode=true`` in the query; the second request carries
  or returns the data. Bodies sent with ``Transfer-Encoding: chunked`` (as Hadoop's client
  sends them) are decoded.
- FileStatus, ContentSummary and LocatedBlocks JSON use the field names of the WebHDFS spec,
  and failures are ``RemoteException`` JSON bodies with the Java class names Hadoop's client
  unwraps (FileNotFoundException 404, FileAlreadyExistsException and AccessControlException
  403, IllegalArgumentException 400).
- Paths with ``.`` or ``..`` components are refused, and no path resolves outside root_dir.

What it does not do, on purpose: no authentication beyond recording ``user.name``, no
replication or real blocks (GET_BLOCK_LOCATIONS answers an empty block list, so Spark sees no
locality), no ACLs, snapshots, xattrs or quotas. Owner, group and permission changes live in
memory only; every file reports replication 1.

For reliability tests, ``inject`` delays or fails the next matching requests, and
``requests`` records every request as (method, op, path).
"""

import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import struct
import threading
import time
import urllib.parse
from collections import namedtuple
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PATH_PREFIX = "/webhdfs/v1"
DATANODE_PARAM = "datanode"
BLOCK_SIZE = 128 * 1024 * 1024
LIST_BATCH_SIZE = 2
CHUNK_SIZE = 64 * 1024
IDLE_CONNECTION_TIMEOUT_S = 30

JAVA_CLASS_NAMES = {
    "AccessControlException": "org.apache.hadoop.security.AccessControlException",
    "FileAlreadyExistsException": "org.apache.hadoop.fs.FileAlreadyExistsException",
    "FileNotFoundException": "java.io.FileNotFoundException",
    "IllegalArgumentException": "java.lang.IllegalArgumentException",
    "InvalidPathException": "org.apache.hadoop.fs.InvalidPathException",
    "IOException": "java.io.IOException",
    "ParentNotDirectoryException": "org.apache.hadoop.fs.ParentNotDirectoryException",
    "PathIsNotEmptyDirectoryException": "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
    "RetriableException": "org.apache.hadoop.ipc.RetriableException",
}

# The exception an injected failure reports, by HTTP status; IOException for any other.
INJECTED_EXCEPTIONS = {
    400: "IllegalArgumentException",
    403: "AccessControlException",
    404: "FileNotFoundException",
    503: "RetriableException",
}

# Which ops each HTTP method carries, and which of them go through a data node redirect.
OPS_BY_METHOD = {
    "GET": {"OPEN", "GETFILESTATUS", "LISTSTATUS", "LISTSTATUS_BATCH", "GETCONTENTSUMMARY",
            "GETFILECHECKSUM", "GET_BLOCK_LOCATIONS", "GETHOMEDIRECTORY", "GETSERVERDEFAULTS"},
    "PUT": {"CREATE", "MKDIRS", "RENAME", "SETPERMISSION", "SETOWNER", "SETTIMES"},
    "POST": {"APPEND"},
    "DELETE": {"DELETE"},
}
OP_PARAM_CLASSES = {"GET": "GetOpParam", "PUT": "PutOpParam", "POST": "PostOpParam",
                    "DELETE": "DeleteOpParam"}
REDIRECTED_OPS = {"CREATE", "APPEND", "OPEN", "GETFILECHECKSUM"}
WRITE_OPS = {"CREATE", "APPEND", "MKDIRS", "RENAME", "DELETE", "SETPERMISSION", "SETOWNER",
             "SETTIMES"}

LoggedRequest = namedtuple("LoggedRequest", "method op path")


class RemoteError(Exception):
    """A failure sent to the client as a WebHDFS ``RemoteException`` JSON body."""

    def __init__(self, status: int, exception: str, message: str):
        super().__init__(message)
        self.status = status
        self.exception = exception
        self.message = message

    def body(self) -> dict:
        java_class = JAVA_CLASS_NAMES.get(self.exception, "java.io.IOException")
        return {"RemoteException": {"exception": self.exception,
                                    "javaClassName": java_class,
                                    "message": self.message}}


def file_not_found(path: str) -> RemoteError:
    return RemoteError(404, "FileNotFoundException", f"File {path} does not exist.")


def not_a_file(path: str) -> RemoteError:
    return RemoteError(404, "FileNotFoundException", f"Path is not a file: {path}")


def illegal_argument(message: str) -> RemoteError:
    return RemoteError(400, "IllegalArgumentException", message)


@dataclass
class Fault:
    """One injected fault: which requests it matches, what it does, how often still."""

    op: Optional[str]
    path_prefix: Optional[str]
    delay_s: float
    fail_status: Optional[int]
    remaining: int

    def matches(self, op: str, path: str) -> bool:
        if self.op is not None and self.op != op:
            return False
        return self.path_prefix is None or is_same_or_under(path, self.path_prefix)


def is_same_or_under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or lies below it, comparing whole components."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


def normalise_hdfs_path(raw: str) -> str:
    """An absolute HDFS path without empty components; ``.`` and ``..`` are refused."""
    if not raw.startswith("/"):
        raise illegal_argument(f"Invalid path name {raw}: not an absolute path.")
    components = [part for part in raw.split("/") if part]
    for part in components:
        if part in (".", "..") or "\0" in part:
            raise RemoteError(400, "InvalidPathException", f"Invalid path name {raw}")
    return "/" + "/".join(components)


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def octal_permission(value: str) -> str:
    """The WebHDFS form of a permission ('0755' -> '755'), refusing anything else."""
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o1777:
        raise illegal_argument(f"Invalid value for webhdfs parameter \"permission\": {value}")
    return format(mode, "o")


def parse_bool(params: dict, name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false"):
        raise illegal_argument(f"Invalid value for webhdfs parameter \"{name}\": {value}")
    return value.lower() == "true"


def parse_int(params: dict, name: str, default: Optional[int]) -> Optional[int]:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise illegal_argument(
            f"Invalid value for webhdfs parameter \"{name}\": {value}") from None


class RequestBody:
    """The request body, read with Content-Length or chunked transfer encoding."""

    def __init__(self, stream, headers):
        self._stream = stream
        self._chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._remaining = 0 if self._chunked else int(headers.get("Content-Length") or 0)
        self._finished = not self._chunked and self._remaining == 0

    def chunks(self):
        while not self._finished:
            if self._chunked and self._remaining == 0:
                self._start_next_chunk()
                continue
            data = self._stream.read(min(CHUNK_SIZE, self._remaining))
            if not data:
                raise ConnectionError("client closed the connection inside a request body")
            self._remaining -= len(data)
            if self._remaining == 0:
                if self._chunked:
                    self._stream.readline()  # the CRLF that ends each chunk
                else:
                    self._finished = True
            yield data

    def drain(self):
        for _ in self.chunks():
            pass

    def _start_next_chunk(self):
        size_line = self._stream.readline(1024)
        if not size_line:
            raise ConnectionError("client closed the connection inside a chunked body")
        self._remaining = int(size_line.split(b";")[0].strip(), 16)
        if self._remaining == 0:
            while self._stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailer headers
            self._finished = True


class WebHdfsServer:
    """Serve ``root_dir`` as an HDFS namespace over WebHDFS on 127.0.0.1.

    ``port=0`` picks a free port; ``.port``, ``.url`` and ``.webhdfs_uri()`` are valid after
    ``start()`` (or inside ``with``). Paths at or below ``read_only_prefix`` refuse every
    change with AccessControlException, as an HDFS directory owned by another user would.
    ``list_batch_size`` is the LISTSTATUS_BATCH page size; it is small by default so that
    paging is really exercised.
    """

    def __init__(self, root_dir, host: str = LOOPBACK, port: int = 0,
                 read_only_prefix: Optional[str] = None,
                 list_batch_size: int = LIST_BATCH_SIZE,
                 owner: str = "hdfs", group: str = "supergroup"):
        if host != LOOPBACK:
            raise ValueError(f"WebHdfsServer binds to {LOOPBACK} only, not {host!r}: it serves "
                             "local files without authentication")
        if list_batch_size < 1:
            raise ValueError(f"list_batch_size must be at least 1, not {list_batch_size}")
        self.root_dir = os.path.realpath(os.fspath(root_dir))
        if not os.path.isdir(self.root_dir):
            raise ValueError(f"root_dir {self.root_dir} is not an existing directory")
        self.host = host
        self.read_only_prefix = read_only_prefix
        self.list_batch_size = list_batch_size
        self.owner = owner
        self.group = group
        self._requested_port = port
        self._httpd = None
        self._thread = None
        self._state_lock = threading.Lock()        # faults, request log, open connections
        self._namespace_lock = threading.RLock()   # every change to files and attributes
        self._faults = []
        self._requests = []
        self._connections = set()
        self._attributes = {}   # HDFS path -> {"owner", "group", "permission"} overrides

    # Lifecycle

    def start(self) -> "WebHdfsServer":
        if self._httpd is not None:
            raise RuntimeError("WebHdfsServer is already started")
        httpd = ThreadingHTTPServer((self.host, self._requested_port), WebHdfsHandler)
        httpd.daemon_threads = True
        httpd.webhdfs = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="webhdfs-server",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        log.debug("WebHDFS server for %s listening on %s", self.root_dir, self.url)
        return self

    def stop(self):
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self._state_lock:
            connections = list(self._connections)
        for connection in connections:  # idle keep-alive connections would linger
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None
        log.debug("WebHDFS server for %s stopped", self.root_dir)

    def __enter__(self) -> "WebHdfsServer":
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("WebHdfsServer is not started: call start() first")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def webhdfs_uri(self, path: str = "/") -> str:
        return f"webhdfs://{self.host}:{self.port}/{path.lstrip('/')}"

    # Fault injection and the request log

    def inject(self, op: Optional[str] = None, path_prefix: Optional[str] = None,
               delay_s: float = 0.0, fail_status: Optional[int] = None, times: int = 1):
        """Delay and/or fail the next ``times`` requests matching ``op`` and ``path_prefix``.

        ``op`` is a WebHDFS op such as 'OPEN' (any op when None); ``path_prefix`` matches
        whole path components ('/a' matches '/a' and '/a/b', not '/ab'). A redirected op
        (CREATE, APPEND, OPEN, GETFILECHECKSUM) makes two requests, and each counts. A
        failure answers ``fail_status`` with a RemoteException body: RetriableException for
        503, IOException for 500.
        """
        if fail_status is not None and not 400 <= fail_status <= 599:
            raise ValueError(f"fail_status must be an HTTP error status (400-599), "
                             f"not {fail_status}")
        if delay_s < 0:
            raise ValueError(f"delay_s must not be negative, not {delay_s}")
        if not delay_s and fail_status is None:
            raise ValueError("a fault needs delay_s > 0, fail_status, or both")
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        fault = Fault(op.upper() if op else None, path_prefix, delay_s, fail_status, times)
        with self._state_lock:
            self._faults.append(fault)

    def clear_faults(self):
        with self._state_lock:
            self._faults.clear()

    @property
    def requests(self) -> list:
        """A copy of the request log: one LoggedRequest(method, op, path) per request."""
        with self._state_lock:
            return list(self._requests)

    def clear_requests(self):
        with self._state_lock:
            self._requests.clear()

    def _record(self, method: str, op: str, path: str) -> Optional[Fault]:
        """Log the request and return the fault it triggers, if any."""
        with self._state_lock:
            self._requests.append(LoggedRequest(method, op, path))
            for fault in self._faults:
                if fault.matches(op, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _track(self, connection, open_: bool):
        with self._state_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # The namespace

    def local_path(self, hdfs_path: str) -> str:
        """The local file behind a normalised HDFS path; never outside root_dir."""
        local = os.path.join(self.root_dir, hdfs_path.lstrip("/"))
        real = os.path.realpath(local)
        if real != self.root_dir and not real.startswith(self.root_dir + os.sep):
            raise RemoteError(400, "InvalidPathException",
                              f"Invalid path name {hdfs_path}: it leaves the namespace root")
        return local

    def check_writable(self, path: str, user: str, whole_subtree: bool = False):
        """Refuse changes at or below read_only_prefix; ``whole_subtree`` for delete and
        rename, which also change everything below ``path``."""
        prefix = self.read_only_prefix
        if prefix is None:
            return
        prefix = normalise_hdfs_path(prefix)
        if is_same_or_under(path, prefix) or (whole_subtree and is_same_or_under(prefix, path)):
            raise RemoteError(
                403, "AccessControlException",
                f"Permission denied: user={user}, access=WRITE, "
                f"inode=\"{path}\":{self.owner}:{self.group}:drwxr-xr-x")

    def file_status(self, path: str, local: str, suffix: str) -> dict:
        info = os.stat(local)
        is_dir = stat.S_ISDIR(info.st_mode)
        attributes = self._attributes.get(path, {})
        return {
            "accessTime": 0 if is_dir else int(info.st_atime * 1000),
            "blockSize": 0 if is_dir else BLOCK_SIZE,
            "childrenNum": len(os.listdir(local)) if is_dir else 0,
            "fileId": info.st_ino,
            "group": attributes.get("group", self.group),
            "length": 0 if is_dir else info.st_size,
            "modificationTime": int(info.st_mtime * 1000),
            "owner": attributes.get("owner", self.owner),
            "pathSuffix": suffix,
            "permission": attributes.get("permission", "755" if is_dir else "644"),
            "replication": 0 if is_dir else 1,
            "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }

    def children_statuses(self, path: str, local: str, start_after: str = "") -> list:
        """FileStatus of each child, in HDFS's byte order of names; a file lists itself."""
        if not os.path.isdir(local):
            return [self.file_status(path, local, "")]
        names = sorted(os.listdir(local), key=lambda name: name.encode("utf-8"))
        statuses = []
        for name in names:
            if start_after and name.encode("utf-8") <= start_after.encode("utf-8"):
                continue
            child = path.rstrip("/") + "/" + name
            try:
                statuses.append(self.file_status(child, os.path.join(local, name), name))
            except FileNotFoundError:
                continue  # deleted while listing
        return statuses

    def set_attributes(self, path: str, **values):
        self._attributes.setdefault(path, {}).update(
            {key: value for key, value in values.items() if value})

    def forget_attributes(self, path: str):
        for key in [key for key in self._attributes if is_same_or_under(key, path)]:
            del self._attributes[key]

    def move_attributes(self, source: str, destination: str):
        moved = {key: value for key, value in self._attributes.items()
                 if is_same_or_under(key, source)}
        for key, value in moved.items():
            del self._attributes[key]
            self._attributes[destination + key[len(source):]] = value

    def make_directories(self, path: str, user: str, permission: Optional[str] = None):
        """Create ``path`` and its missing parents, as HDFS mkdirs does."""
        missing = []
        current = path
        while not os.path.exists(self.local_path(current)):
            missing.append(current)
            current = parent_of(current)
        if not os.path.isdir(self.local_path(current)):
            raise RemoteError(403, "ParentNotDirectoryException",
                              f"Parent path is not a directory: {current}")
        for directory in reversed(missing):
            os.mkdir(self.local_path(directory))
            self.set_attributes(directory, owner=user, permission=permission)


class WebHdfsHandler(BaseHTTPRequestHandler):
    """One connection: parses WebHDFS requests and answers them from the namespace."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server_version = "WebHdfsTestServer/1"

    # Connection bookkeeping and quiet logging

    def setup(self):
        super().setup()
        self.server.webhdfs._track(self.connection, True)

    def finish(self):
        self.server.webhdfs._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self):
        self.dispatch("GET")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    # Request parsing, faults, dispatch

    def dispatch(self, method: str):
        namespace = self.server.webhdfs
        self.body = RequestBody(self.rfile, self.headers)
        try:
            try:
                self.parse_request_target()
                fault = namespace._record(method, self.op, self.hdfs_path)
                if fault is not None:
                    self.apply_fault(fault)
                handler = self.find_handler(method)
                handler()
            except RemoteError as error:
                self.body.drain()
                self.send_json(error.status, error.body())
        except (ConnectionError, socket.timeout) as error:
            log.debug("connection from %s ended: %s", self.address_string(), error)
            self.close_connection = True
        except Exception as error:  # a bug in this server: answer 500 and keep serving
            log.exception("WebHDFS server failed on %s %s", method, self.path)
            self.close_connection = True
            body = RemoteError(500, "IOException", f"{type(error).__name__}: {error}").body()
            try:
                self.send_json(500, body)
            except OSError:
                pass

    def parse_request_target(self):
        target = urllib.parse.urlsplit(self.path)
        pairs = urllib.parse.parse_qsl(target.query, keep_blank_values=True)
        self.params = {name.lower(): value for name, value in pairs}
        self.query = target.query
        self.op = self.params.get("op", "").upper()
        self.hdfs_path = "?"
        self.user = self.params.get("user.name") or "dr.who"
        self.on_datanode = self.params.get(DATANODE_PARAM) == "true"
        if not (target.path == PATH_PREFIX or target.path.startswith(PATH_PREFIX + "/")):
            raise RemoteError(404, "FileNotFoundException",
                              f"{target.path} is not under {PATH_PREFIX}")
        raw_path = urllib.parse.unquote(target.path[len(PATH_PREFIX):]) or "/"
        self.hdfs_path = normalise_hdfs_path(raw_path)
        self.local = self.server.webhdfs.local_path(self.hdfs_path)

    def apply_fault(self, fault: Fault):
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.fail_status is not None:
            exception = INJECTED_EXCEPTIONS.get(fault.fail_status, "IOException")
            raise RemoteError(fault.fail_status, exception,
                              f"Injected fault: HTTP {fault.fail_status} for {self.op} "
                              f"{self.hdfs_path}")

    def find_handler(self, method: str):
        if self.op not in OPS_BY_METHOD[method]:
            # The NameNode's own wording: Hadoop's client matches on it to fall back from
            # GETFILEBLOCKLOCATIONS to GET_BLOCK_LOCATIONS.
            raise illegal_argument(
                f"Invalid value for webhdfs parameter \"op\": No enum constant "
                f"org.apache.hadoop.hdfs.web.resources.{OP_PARAM_CLASSES[method]}.Op."
                f"{self.op or '(missing)'}")
        if self.op in WRITE_OPS:
            self.server.webhdfs.check_writable(self.hdfs_path, self.user,
                                               whole_subtree=self.op in ("DELETE", "RENAME"))
        if self.op in REDIRECTED_OPS and not self.on_datanode:
            return self.redirect_to_datanode
        return getattr(self, "op_" + self.op.lower())

    # Responses

    def send_json(self, status: int, payload: dict, headers: Optional[dict] = None):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_empty(self, status: int, headers: Optional[dict] = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", "0")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def send_boolean(self, value: bool):
        self.send_json(200, {"boolean": value})

    # The NameNode half of redirected ops

    def redirect_to_datanode(self):
        self.body.drain()
        self.check_before_redirect()
        location = (f"{self.server.webhdfs.url}{PATH_PREFIX}"
                    f"{urllib.parse.quote(self.hdfs_path)}?{self.query}&{DATANODE_PARAM}=true")
        self.send_empty(307, {"Location": location})

    def check_before_redirect(self):
        """Fail on the first request, before any data is sent. A real NameNode defers these
        checks to the data node request, so clients see the same errors only later."""
        with self.server.webhdfs._namespace_lock:
            if self.op == "CREATE":
                self.check_creatable()
            else:
                self.require_file()

    def require_file(self):
        if not os.path.exists(self.local):
            raise file_not_found(self.hdfs_path)
        if os.path.isdir(self.local):
            raise not_a_file(self.hdfs_path)

    def check_creatable(self):
        if os.path.isdir(self.local):
            raise RemoteError(403, "FileAlreadyExistsException",
                              f"{self.hdfs_path} already exists as a directory")
        if os.path.exists(self.local) and not parse_bool(self.params, "overwrite", False):
            raise RemoteError(403, "FileAlreadyExistsException",
                              f"{self.hdfs_path} for client {self.client_address[0]} "
                              "already exists")
        parent = parent_of(self.hdfs_path)
        while parent != "/" and not os.path.exists(self.server.webhdfs.local_path(parent)):
            parent = parent_of(parent)
        if not os.path.isdir(self.server.webhdfs.local_path(parent)):
            raise RemoteError(403, "ParentNotDirectoryException",
                              f"Parent path is not a directory: {parent}")

    # The DataNode half

    def op_create(self):
        namespace = self.server.webhdfs
        permission = self.params.get("permission")
        permission = octal_permission(permission) if permission else None
        with namespace._namespace_lock:
            self.check_creatable()
            namespace.make_directories(parent_of(self.hdfs_path), self.user)
            output = open(self.local, "wb")
            namespace.forget_attributes(self.hdfs_path)
            namespace.set_attributes(self.hdfs_path, owner=self.user, permission=permission)
        with output:
            for chunk in self.body.chunks():
                output.write(chunk)
        self.send_empty(201, {"Location": namespace.webhdfs_uri(self.hdfs_path)})

    def op_append(self):
        with self.server.webhdfs._namespace_lock:
            self.require_file()
            output = open(self.local, "ab")
        with output:
            for chunk in self.body.chunks():
                output.write(chunk)
        self.send_empty(200)

    def op_open(self):
        self.body.drain()
        offset = parse_int(self.params, "offset", 0)
        length = parse_int(self.params, "length", None)
        if offset < 0 or (length is not None and length < 0):
            raise illegal_argument(f"Invalid offset={offset} or length={length} for "
                                   f"{self.hdfs_path}")
        with self.server.webhdfs._namespace_lock:
            self.require_file()
            source = open(self.local, "rb")
        with source:
            size = os.fstat(source.fileno()).st_size
            if offset > size:
                raise RemoteError(403, "IOException",
                                  f"Offset={offset} out of the range [0, {size}); OPEN, "
                                  f"path={self.hdfs_path}")
            count = size - offset if length is None else min(length, size - offset)
            source.seek(offset)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(count))
            self.end_headers()
            while count > 0:
                data = source.read(min(CHUNK_SIZE, count))
                if not data:
                    raise ConnectionError(f"{self.hdfs_path} shrank while it was read")
                self.wfile.write(data)
                count -= len(data)

    def op_getfilechecksum(self):
        """An MD5-of-0MD5-of-512CRC32C checksum, laid out as Hadoop's client decodes it."""
        self.body.drain()
        with self.server.webhdfs._namespace_lock:
            self.require_file()
            digest = hashlib.md5()
            with open(self.local, "rb") as source:
                for data in iter(lambda: source.read(CHUNK_SIZE), b""):
                    digest.update(data)
        raw = struct.pack(">iq", 512, 0) + digest.digest()
        self.send_json(200, {"FileChecksum": {"algorithm": "MD5-of-0MD5-of-512CRC32C",
                                              "bytes": raw.hex(), "length": len(raw)}})

    # Namespace reads

    def op_getfilestatus(self):
        self.body.drain()
        try:
            status = self.server.webhdfs.file_status(self.hdfs_path, self.local, "")
        except FileNotFoundError:
            raise file_not_found(self.hdfs_path) from None
        self.send_json(200, {"FileStatus": status})

    def listing(self, start_after: str = "") -> list:
        if not os.path.exists(self.local):
            raise file_not_found(self.hdfs_path)
        try:
            return self.server.webhdfs.children_statuses(self.hdfs_path, self.local,
                                                         start_after)
        except FileNotFoundError:
            raise file_not_found(self.hdfs_path) from None

    def op_liststatus(self):
        self.body.drain()
        self.send_json(200, {"FileStatuses": {"FileStatus": self.listing()}})

    def op_liststatus_batch(self):
        self.body.drain()
        statuses = self.listing(self.params.get("startafter", ""))
        page_size = self.server.webhdfs.list_batch_size
        page = statuses[:page_size]
        self.send_json(200, {"DirectoryListing": {
            "partialListing": {"FileStatuses": {"FileStatus": page}},
            "remainingEntries": len(statuses) - len(page),
        }})

    def op_getcontentsummary(self):
        self.body.drain()
        if not os.path.exists(self.local):
            raise file_not_found(self.hdfs_path)
        directories, files, length = 0, 0, 0
        if os.path.isdir(self.local):
            for folder, _, names in os.walk(self.local):
                directories += 1
                files += len(names)
                length += sum(os.path.getsize(os.path.join(folder, name)) for name in names)
        else:
            files, length = 1, os.path.getsize(self.local)
        self.send_json(200, {"ContentSummary": {
            "directoryCount": directories, "ecPolicy": "", "fileCount": files,
            "length": length, "quota": -1, "spaceConsumed": length, "spaceQuota": -1,
            "typeQuota": {}}})

    def op_get_block_locations(self):
        """No real blocks exist, so the answer lists none: clients then see no locality."""
        self.body.drain()
        self.require_file()
        self.send_json(200, {"LocatedBlocks": {
            "fileLength": os.path.getsize(self.local), "isLastBlockComplete": True,
            "isUnderConstruction": False, "lastLocatedBlock": None, "locatedBlocks": []}})

    def op_gethomedirectory(self):
        self.body.drain()
        self.send_json(200, {"Path": f"/user/{self.user}"})

    def op_getserverdefaults(self):
        self.body.drain()
        self.send_json(200, {"FsServerDefaults": {
            "blockSize": BLOCK_SIZE, "bytesPerChecksum": 512, "writePacketSize": 65536,
            "replication": 1, "fileBufferSize": 4096, "encryptDataTransfer": False,
            "trashInterval": 0, "checksumType": 2, "keyProviderUri": "",
            "defaultStoragePolicyId": 7}})

    # Namespace changes

    def op_mkdirs(self):
        self.body.drain()
        permission = self.params.get("permission")
        permission = octal_permission(permission) if permission else None
        with self.server.webhdfs._namespace_lock:
            if os.path.exists(self.local) and not os.path.isdir(self.local):
                raise RemoteError(403, "FileAlreadyExistsException",
                                  f"Path is not a directory: {self.hdfs_path}")
            self.server.webhdfs.make_directories(self.hdfs_path, self.user, permission)
        self.send_boolean(True)

    def op_delete(self):
        self.body.drain()
        recursive = parse_bool(self.params, "recursive", False)
        namespace = self.server.webhdfs
        with namespace._namespace_lock:
            if self.hdfs_path == "/" or not os.path.exists(self.local):
                self.send_boolean(False)  # HDFS never deletes its root
                return
            if os.path.isdir(self.local):
                if os.listdir(self.local) and not recursive:
                    raise RemoteError(403, "PathIsNotEmptyDirectoryException",
                                      f"`{self.hdfs_path} is non empty': "
                                      "Directory is not empty")
                shutil.rmtree(self.local)
            else:
                os.remove(self.local)
            namespace.forget_attributes(self.hdfs_path)
        self.send_boolean(True)

    def op_rename(self):
        self.body.drain()
        namespace = self.server.webhdfs
        raw_destination = self.params.get("destination")
        if not raw_destination:
            raise illegal_argument("Required param destination for op: RENAME is null or empty")
        destination = normalise_hdfs_path(raw_destination)
        namespace.check_writable(destination, self.user)
        overwrite_options = self.params.get("renameoptions")
        with namespace._namespace_lock:
            if overwrite_options is not None:
                self.rename_with_options(destination, "OVERWRITE" in overwrite_options.upper())
                self.send_empty(200)
            else:
                self.send_boolean(self.rename_old_style(destination))

    def rename_old_style(self, destination: str) -> bool:
        """HDFS's rename(src, dst): into dst when it is a directory; False on any conflict."""
        namespace = self.server.webhdfs
        source = self.hdfs_path
        if source == "/" or not os.path.exists(self.local):
            return False
        if destination == source:
            return True
        if is_same_or_under(destination, source):
            return False
        destination_local = namespace.local_path(destination)
        if os.path.isdir(destination_local):
            destination = destination.rstrip("/") + "/" + name_of(source)
            destination_local = namespace.local_path(destination)
        if os.path.exists(destination_local):
            return False
        if not os.path.isdir(namespace.local_path(parent_of(destination))):
            return False
        os.rename(self.local, destination_local)
        namespace.move_attributes(source, destination)
        return True

    def rename_with_options(self, destination: str, overwrite: bool):
        """HDFS's rename(src, dst, options): dst is the exact new name; errors raise."""
        namespace = self.server.webhdfs
        source = self.hdfs_path
        if not os.path.exists(self.local):
            raise file_not_found(source)
        if source == "/" or is_same_or_under(destination, source):
            raise RemoteError(403, "IOException",
                              f"Cannot rename {source} to {destination}")
        destination_local = namespace.local_path(destination)
        if not os.path.isdir(namespace.local_path(parent_of(destination))):
            raise file_not_found(parent_of(destination))
        if os.path.exists(destination_local):
            if not overwrite:
                raise RemoteError(403, "FileAlreadyExistsException",
                                  f"rename destination {destination} already exists")
            if os.path.isdir(destination_local) != os.path.isdir(self.local):
                raise RemoteError(403, "IOException",
                                  f"Source {source} and destination {destination} must both "
                                  "be directories or both be files")
            if os.path.isdir(destination_local) and os.listdir(destination_local):
                raise RemoteError(403, "IOException",
                                  f"rename destination directory is not empty: {destination}")
            if os.path.isdir(destination_local):
                os.rmdir(destination_local)
            namespace.forget_attributes(destination)
        os.replace(self.local, destination_local)
        namespace.move_attributes(source, destination)

    def require_existing(self):
        if not os.path.exists(self.local):
            raise file_not_found(self.hdfs_path)

    def op_setpermission(self):
        self.body.drain()
        permission = octal_permission(self.params.get("permission") or "755")
        with self.server.webhdfs._namespace_lock:
            self.require_existing()
            self.server.webhdfs.set_attributes(self.hdfs_path, permission=permission)
        self.send_empty(200)

    def op_setowner(self):
        self.body.drain()
        owner, group = self.params.get("owner"), self.params.get("group")
        if not owner and not group:
            raise illegal_argument("Both owner and group are empty.")
        with self.server.webhdfs._namespace_lock:
            self.require_existing()
            self.server.webhdfs.set_attributes(self.hdfs_path, owner=owner, group=group)
        self.send_empty(200)

    def op_settimes(self):
        self.body.drain()
        modification_ms = parse_int(self.params, "modificationtime", -1)
        access_ms = parse_int(self.params, "accesstime", -1)
        with self.server.webhdfs._namespace_lock:
            self.require_existing()
            current = os.stat(self.local)
            access_s = access_ms / 1000 if access_ms >= 0 else current.st_atime
            modification_s = (modification_ms / 1000 if modification_ms >= 0
                              else current.st_mtime)
            os.utime(self.local, (access_s, modification_s))
        self.send_empty(200)
