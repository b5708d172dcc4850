"""The loopback WebHDFS server, driven by the two real clients the project uses: HdfsCLI and
Spark's ``webhdfs://`` Hadoop file system."""

import http.client
import json
import os
import time

import pytest
import requests
from hdfs import HdfsError, InsecureClient

from webhdfs_server import WebHdfsServer

READ_ONLY = "/readonly"
FILE_STATUS_FIELDS = {
    "accessTime", "blockSize", "childrenNum", "fileId", "group", "length", "modificationTime",
    "owner", "pathSuffix", "permission", "replication", "storagePolicy", "type"}


@pytest.fixture(scope="module")
def namespace_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("webhdfs")
    root = base / "namespace"
    (root / "readonly").mkdir(parents=True)
    (root / "readonly" / "data.txt").write_bytes(b"protected")
    (base / "secret.txt").write_bytes(b"outside the namespace")
    return root


@pytest.fixture(scope="module")
def server(namespace_root):
    with WebHdfsServer(namespace_root, read_only_prefix=READ_ONLY, list_batch_size=2) as server:
        yield server


@pytest.fixture(autouse=True)
def no_leftover_faults(server):
    yield
    server.clear_faults()


@pytest.fixture
def client(server):
    return InsecureClient(server.url, user="test")


@pytest.fixture(scope="module")
def spark():
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("test-webhdfs-server")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "1")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def hadoop_file_system(spark, uri):
    """Spark's own Hadoop FileSystem for ``uri``, and the Hadoop Path of it."""
    path = spark._jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path


def raw_request(server, method, target):
    """Send ``target`` byte for byte, as no HTTP library would normalise it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# HdfsCLI

def test_written_bytes_read_back_unchanged(client):
    payload = bytes(range(256)) * 100
    client.write("/cli/roundtrip/blob.bin", payload)

    with client.read("/cli/roundtrip/blob.bin") as reader:
        assert reader.read() == payload


def test_chunked_upload_is_decoded(client):
    client.write("/cli/chunked.txt", data=(part for part in [b"first ", b"second"]))

    with client.read("/cli/chunked.txt") as reader:
        assert reader.read() == b"first second"


def test_read_honours_offset_and_length(client):
    client.write("/cli/offset.txt", b"0123456789")

    with client.read("/cli/offset.txt", offset=3, length=4) as reader:
        assert reader.read() == b"3456"


def test_append_adds_to_the_end_of_a_file(client):
    client.write("/cli/append.txt", b"head")
    client.write("/cli/append.txt", b"+tail", append=True)

    with client.read("/cli/append.txt") as reader:
        assert reader.read() == b"head+tail"


def test_makedirs_creates_missing_parents(client, namespace_root):
    client.makedirs("/cli/deep/er/still")

    assert (namespace_root / "cli" / "deep" / "er" / "still").is_dir()
    assert client.status("/cli/deep/er")["type"] == "DIRECTORY"


def test_list_returns_children_in_name_order(client):
    for name in ["b.txt", "a.txt", "c"]:
        client.write(f"/cli/listing/{name}", b"x")

    assert client.list("/cli/listing") == ["a.txt", "b.txt", "c"]


def test_status_has_exactly_the_webhdfs_file_status_fields(client):
    client.write("/cli/status.txt", b"12345")

    status = client.status("/cli/status.txt")

    assert set(status) == FILE_STATUS_FIELDS
    assert (status["type"], status["length"], status["pathSuffix"]) == ("FILE", 5, "")
    assert status["owner"] == "test" and status["permission"] == "644"


def test_rename_moves_a_file_into_an_existing_directory(client):
    client.write("/cli/move/source.txt", b"moving")
    client.makedirs("/cli/move/target")

    client.rename("/cli/move/source.txt", "/cli/move/target")

    assert client.list("/cli/move/target") == ["source.txt"]
    assert client.status("/cli/move/source.txt", strict=False) is None


def test_rename_onto_an_existing_file_is_refused(client):
    client.write("/cli/clash/one.txt", b"1")
    client.write("/cli/clash/two.txt", b"2")

    with pytest.raises(HdfsError, match="Unable to rename"):
        client.rename("/cli/clash/one.txt", "/cli/clash/two.txt")


def test_recursive_delete_removes_a_whole_tree(client, namespace_root):
    client.write("/cli/tree/a/b/leaf.txt", b"leaf")

    assert client.delete("/cli/tree", recursive=True) is True
    assert not (namespace_root / "cli" / "tree").exists()
    assert client.delete("/cli/tree", recursive=True) is False


def test_non_recursive_delete_of_a_non_empty_directory_is_refused(client):
    client.write("/cli/full/leaf.txt", b"leaf")

    with pytest.raises(HdfsError, match="is non empty"):
        client.delete("/cli/full")


def test_missing_path_raises_hdfs_error_with_file_not_found(client):
    with pytest.raises(HdfsError, match="does not exist") as raised:
        client.status("/cli/never/written")

    assert raised.value.exception == "FileNotFoundException"


def test_write_without_overwrite_on_an_existing_file_fails_and_keeps_it(client):
    client.write("/cli/keep.txt", b"original")

    with pytest.raises(HdfsError) as raised:
        client.write("/cli/keep.txt", b"replacement", overwrite=False)

    assert raised.value.exception == "FileAlreadyExistsException"
    with client.read("/cli/keep.txt") as reader:
        assert reader.read() == b"original"


def test_write_with_overwrite_replaces_an_existing_file(client):
    client.write("/cli/replace.txt", b"original")
    client.write("/cli/replace.txt", b"new", overwrite=True)

    with client.read("/cli/replace.txt") as reader:
        assert reader.read() == b"new"


def test_directory_upload_and_download_round_trip(client, tmp_path):
    source = tmp_path / "source"
    (source / "nested").mkdir(parents=True)
    (source / "top.txt").write_bytes(b"top")
    (source / "nested" / "inner.bin").write_bytes(b"\x00inner")

    client.upload("/cli/uploaded", str(source))
    client.download("/cli/uploaded", str(tmp_path / "copy"))

    assert (tmp_path / "copy" / "top.txt").read_bytes() == b"top"
    assert (tmp_path / "copy" / "nested" / "inner.bin").read_bytes() == b"\x00inner"


def test_relative_paths_resolve_under_the_users_home_directory(client, namespace_root):
    client.write("relative.txt", b"at home")

    assert (namespace_root / "user" / "test" / "relative.txt").read_bytes() == b"at home"


def test_owner_permission_and_times_changes_show_in_status(client):
    client.write("/cli/attributes.txt", b"x")

    client.set_owner("/cli/attributes.txt", owner="gan", group="analysts")
    client.set_permission("/cli/attributes.txt", "600")
    client.set_times("/cli/attributes.txt", modification_time=1_500_000_000_000)

    status = client.status("/cli/attributes.txt")
    assert (status["owner"], status["group"], status["permission"]) == ("gan", "analysts", "600")
    assert status["modificationTime"] == 1_500_000_000_000


def test_rename_with_overwrite_option_replaces_the_destination(client, server):
    client.write("/cli/atomic/new.txt", b"new")
    client.write("/cli/atomic/current.txt", b"old")

    answer = requests.put(f"{server.url}/webhdfs/v1/cli/atomic/new.txt", timeout=10, params={
        "op": "RENAME", "destination": "/cli/atomic/current.txt", "renameoptions": "OVERWRITE",
        "user.name": "test"})

    assert answer.status_code == 200
    assert client.list("/cli/atomic") == ["current.txt"]
    with client.read("/cli/atomic/current.txt") as reader:
        assert reader.read() == b"new"


def test_liststatus_batch_pages_return_every_entry(client, server):
    names = [f"part-{index}" for index in range(5)]
    for name in names:
        client.write(f"/batch/{name}", b"x")

    seen, pages, start_after = [], 0, ""
    while True:
        answer = requests.get(f"{server.url}/webhdfs/v1/batch", timeout=10, params={
            "op": "LISTSTATUS_BATCH", "user.name": "test", "startAfter": start_after}).json()
        listing = answer["DirectoryListing"]
        page = listing["partialListing"]["FileStatuses"]["FileStatus"]
        seen += [status["pathSuffix"] for status in page]
        pages += 1
        if listing["remainingEntries"] == 0:
            break
        start_after = page[-1]["pathSuffix"]

    assert seen == names
    assert pages == 3


def test_unknown_op_is_an_illegal_argument_with_status_400(server):
    answer = requests.get(f"{server.url}/webhdfs/v1/", params={"op": "NOSUCHOP"}, timeout=10)

    assert answer.status_code == 400
    assert answer.json()["RemoteException"]["exception"] == "IllegalArgumentException"


def test_request_log_records_method_op_and_path(client, server):
    client.makedirs("/logged/dir")

    assert ("PUT", "MKDIRS", "/logged/dir") in server.requests


# Spark's Hadoop client

def test_spark_parquet_round_trip_over_webhdfs(spark, server, namespace_root):
    spark.range(100).write.parquet(server.webhdfs_uri("/t/p"))

    assert spark.read.parquet(server.webhdfs_uri("/t/p")).count() == 100
    assert (namespace_root / "t" / "p" / "_SUCCESS").exists()
    assert not (namespace_root / "t" / "p" / "_temporary").exists()


def test_spark_binary_file_reader_finds_files_written_with_hdfscli(spark, server, client):
    client.write("/binary/a/one.bin", b"\x01\x02")
    client.write("/binary/b/c/two.bin", b"two")

    rows = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
            .load(server.webhdfs_uri("/binary")).collect())

    contents = {row.path.rsplit("/", 1)[-1]: bytes(row.content) for row in rows}
    assert contents == {"one.bin": b"\x01\x02", "two.bin": b"two"}


def test_spark_reports_a_missing_path_as_not_found(spark, server):
    with pytest.raises(Exception, match="PATH_NOT_FOUND|Path does not exist"):
        spark.read.parquet(server.webhdfs_uri("/nothing/here"))


def test_hadoop_client_pages_through_liststatus_batch(spark, server, client):
    for index in range(5):
        client.write(f"/hadoop-batch/f{index}", b"x")
    file_system, path = hadoop_file_system(spark, server.webhdfs_uri("/hadoop-batch"))

    iterator = file_system.listStatusIterator(path)
    names = []
    while iterator.hasNext():
        names.append(iterator.next().getPath().getName())

    assert names == [f"f{index}" for index in range(5)]
    batches = [r for r in server.requests if r[1:] == ("LISTSTATUS_BATCH", "/hadoop-batch")]
    assert len(batches) == 3


def test_hadoop_client_decodes_the_file_checksum(spark, server, client):
    client.write("/checksum/one.txt", b"same bytes")
    client.write("/checksum/two.txt", b"same bytes")
    file_system, one = hadoop_file_system(spark, server.webhdfs_uri("/checksum/one.txt"))
    _, two = hadoop_file_system(spark, server.webhdfs_uri("/checksum/two.txt"))

    checksum = file_system.getFileChecksum(one)

    assert checksum.getAlgorithmName() == "MD5-of-0MD5-of-512CRC32C"
    assert checksum.equals(file_system.getFileChecksum(two))


def test_hadoop_client_reads_the_content_summary(spark, server, client):
    client.write("/summary/a.txt", b"12345")
    client.write("/summary/sub/b.txt", b"678")
    file_system, path = hadoop_file_system(spark, server.webhdfs_uri("/summary"))

    summary = file_system.getContentSummary(path)

    assert (summary.getFileCount(), summary.getDirectoryCount(), summary.getLength()) == (2, 2, 8)


def test_hadoop_client_reads_the_server_defaults(spark, server):
    file_system, _ = hadoop_file_system(spark, server.webhdfs_uri("/"))

    defaults = file_system.getServerDefaults()

    assert (defaults.getBlockSize(), defaults.getReplication()) == (128 * 1024 * 1024, 1)


def test_spark_write_under_the_read_only_prefix_is_denied(spark, server):
    with pytest.raises(Exception, match="AccessControlException|Permission denied"):
        spark.range(3).write.parquet(server.webhdfs_uri(READ_ONLY + "/spark"))


# Fault injection

def test_injected_delay_is_observed_once(client, server):
    client.write("/faults/slow.txt", b"x")
    server.inject(op="GETFILESTATUS", path_prefix="/faults/slow.txt", delay_s=1.0)

    started = time.monotonic()
    client.status("/faults/slow.txt")
    delayed = time.monotonic() - started
    started = time.monotonic()
    client.status("/faults/slow.txt")
    undelayed = time.monotonic() - started

    assert delayed >= 1.0
    assert undelayed < delayed - 0.5  # relative: this machine's load varies a lot


def test_retrying_caller_succeeds_after_one_503(client, server):
    client.write("/faults/flaky.txt", b"eventually")
    server.inject(op="OPEN", path_prefix="/faults/flaky.txt", fail_status=503, times=1)
    server.clear_requests()
    failures = []

    def read_with_retries(path, attempts=3):
        for _ in range(attempts):
            try:
                with client.read(path) as reader:
                    return reader.read()
            except HdfsError as error:
                failures.append(error.exception)
                time.sleep(0.05)
        raise AssertionError(f"{path} still failing after {attempts} attempts")

    assert read_with_retries("/faults/flaky.txt") == b"eventually"
    assert failures == ["RetriableException"]
    assert [r.op for r in server.requests].count("OPEN") == 3  # failed, redirect, data


def test_injected_failure_makes_hdfscli_raise(client, server):
    client.makedirs("/faults/listing")
    server.inject(op="LISTSTATUS", path_prefix="/faults", fail_status=500)

    with pytest.raises(HdfsError, match="Injected fault"):
        client.list("/faults/listing")


def test_fault_leaves_other_ops_and_paths_alone(client, server):
    client.write("/faults/other.txt", b"x")
    server.inject(op="LISTSTATUS", path_prefix="/faults/elsewhere", fail_status=500)

    assert client.status("/faults/other.txt")["length"] == 1
    assert "other.txt" in client.list("/faults")


# Safety

@pytest.mark.parametrize("target", [
    "/webhdfs/v1/../secret.txt?op=OPEN",
    "/webhdfs/v1/%2E%2E/secret.txt?op=OPEN",
    "/webhdfs/v1/a/../../secret.txt?op=GETFILESTATUS",
])
def test_path_escaping_the_root_is_refused(server, target):
    status, body = raw_request(server, "GET", target)

    assert status == 400
    assert json.loads(body)["RemoteException"]["exception"] == "InvalidPathException"
    assert b"outside the namespace" not in body


def test_symlink_leading_out_of_the_root_is_refused(server, namespace_root, client):
    (namespace_root / "escape").symlink_to(namespace_root.parent / "secret.txt")

    with pytest.raises(HdfsError, match="Invalid path name"):
        with client.read("/escape") as reader:
            reader.read()


@pytest.mark.parametrize("change", [
    lambda client: client.write(READ_ONLY + "/new.txt", b"x"),
    lambda client: client.write(READ_ONLY + "/data.txt", b"x", overwrite=True),
    lambda client: client.makedirs(READ_ONLY + "/sub"),
    lambda client: client.delete(READ_ONLY + "/data.txt"),
    lambda client: client.rename(READ_ONLY + "/data.txt", "/stolen.txt"),
    lambda client: client.delete("/", recursive=True),
], ids=["create", "overwrite", "mkdirs", "delete", "rename-out", "delete-ancestor"])
def test_changes_under_the_read_only_prefix_raise_access_control(client, namespace_root, change):
    with pytest.raises(HdfsError) as raised:
        change(client)

    assert raised.value.exception == "AccessControlException"
    assert (namespace_root / "readonly" / "data.txt").read_bytes() == b"protected"


def test_reads_under_the_read_only_prefix_are_allowed(client):
    with client.read(READ_ONLY + "/data.txt") as reader:
        assert reader.read() == b"protected"


def test_stopped_server_no_longer_accepts_connections(tmp_path):
    with WebHdfsServer(tmp_path) as stopping:
        port = stopping.port
        assert requests.get(f"{stopping.url}/webhdfs/v1/?op=GETFILESTATUS", timeout=10).ok

    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/webhdfs/v1/?op=GETFILESTATUS", timeout=10)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "localhost"])
def test_server_refuses_any_host_but_loopback(tmp_path, host):
    with pytest.raises(ValueError, match="127.0.0.1"):
        WebHdfsServer(tmp_path, host=host)
