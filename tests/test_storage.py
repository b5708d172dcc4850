"""The storage layer on local files and on WebHDFS (HdfsCLI against the test server)."""

import os
import time
from pathlib import Path

import pytest

from gan_lib import storage
from gan_lib.config import ConfigError
from gan_lib.storage import StorageError
from webhdfs_server import WebHdfsServer


@pytest.fixture(scope="module")
def hdfs(tmp_path_factory):
    server = WebHdfsServer(tmp_path_factory.mktemp("hdfs"), read_only_prefix="/locked").start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "webhdfs"])
def base(request, tmp_path, hdfs):
    if request.param == "local":
        return tmp_path.as_uri()
    return hdfs.webhdfs_uri(f"/t/{tmp_path.name}")


def test_written_file_reads_back(base):
    store = storage.open_storage(base)
    store.write_bytes(storage.join(base, "a", "b.bin"), b"payload")
    assert store.read_bytes(storage.join(base, "a", "b.bin")) == b"payload"
    assert store.list(storage.join(base, "a")) == ["b.bin"]


def test_overwrite_replaces_and_leaves_no_temporary_file(base):
    store = storage.open_storage(base)
    path = storage.join(base, "x.json")
    store.write_text(path, "old")
    store.write_text(path, "new")
    assert store.read_text(path) == "new"
    assert store.list(base) == ["x.json"]


def test_temporaries_a_killed_write_left_are_removed_and_nothing_else(base):
    store = storage.open_storage(base)
    kept = [storage.join(base, "latest.json"), storage.join(base, "sub", ".hidden"),
            storage.join(base, "sub", "a.tmp")]
    left = [storage.join(base, ".latest.json.70cce1281bce.tmp"),
            storage.join(base, "sub", ".model.0123456789ab.tmp", "saved_model.pb")]
    for uri in kept + left:
        store.write_text(uri, "x")
    removed = storage.remove_temporaries(store, base)
    assert sorted(removed) == sorted([left[0], storage.join(base, "sub",
                                                             ".model.0123456789ab.tmp")])
    assert store.list(base) == ["latest.json", "sub"]
    assert store.list(storage.join(base, "sub")) == [".hidden", "a.tmp"]


def test_temporaries_below_names_with_url_characters_are_removed(base):
    store = storage.open_storage(base)
    left = storage.join(base, "odd #dir?x", ".f.0123456789ab.tmp")
    store.write_text(left, "x")
    assert storage.remove_temporaries(store, base) == [left]
    assert store.list(storage.join(base, "odd #dir?x")) == []


def test_entries_tell_folders_from_files(base):
    store = storage.open_storage(base)
    store.write_text(storage.join(base, "b.txt"), "x")
    store.write_text(storage.join(base, "a", "c.txt"), "x")
    assert store.entries(base) == [("a", True), ("b.txt", False)]


def test_temporaries_behind_a_link_or_in_a_link_loop_are_left_alone(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".keep.0123456789ab.tmp").write_text("someone else's")
    run = tmp_path / "run"
    run.mkdir()
    (run / "linked").symlink_to(outside)
    (run / "loop").symlink_to(run)
    assert storage.remove_temporaries(storage.LocalStorage(), run.as_uri()) == []
    assert (outside / ".keep.0123456789ab.tmp").exists()


def test_directory_upload_replaces_the_old_copy_whole(base, tmp_path):
    store = storage.open_storage(base)
    first = tmp_path / "first"
    (first / "sub").mkdir(parents=True)
    (first / "sub" / "one.txt").write_text("1")
    (first / "stale.txt").write_text("old")
    target = storage.join(base, "model")
    store.upload_dir(first, target)
    second = tmp_path / "second"
    second.mkdir()
    (second / "fresh.txt").write_text("2")
    store.upload_dir(second, target)
    assert store.list(target) == ["fresh.txt"]
    copy = tmp_path / "copy"
    store.download_dir(target, copy)
    assert (copy / "fresh.txt").read_text() == "2"


def test_missing_file_is_a_storage_error_naming_the_path(base):
    with pytest.raises(StorageError, match="missing.bin"):
        storage.open_storage(base).read_bytes(storage.join(base, "missing.bin"))


def test_first_file_finds_a_nested_file_and_none_in_an_empty_tree(base):
    store = storage.open_storage(base)
    store.makedirs(storage.join(base, "empty", "deeper"))
    assert store.first_file(storage.join(base, "empty")) is None
    store.write_bytes(storage.join(base, "tree", "a", "z.png"), b"1")
    assert store.first_file(storage.join(base, "tree")).endswith("/tree/a/z.png")


def test_files_lists_up_to_the_limit_leaving_out_what_hadoop_leaves_out(base):
    store = storage.open_storage(base)
    tree = storage.join(base, "listing")
    for name in ("b/2.png", "b/1.png", "a/3.png", ".hidden/4.png", "_temporary/5.png",
                 "a/.6.png.crc", "a/_SUCCESS"):
        store.write_bytes(storage.join(tree, *name.split("/")), b"x")
    listed = [uri.split("/listing/", 1)[1] for uri in store.files(tree, limit=10)]
    assert listed == ["a/3.png", "b/1.png", "b/2.png"]
    assert len(store.files(tree, limit=2)) == 2


def test_being_copied_names_a_file_hdfs_is_still_copying_in_and_none_otherwise(base):
    store = storage.open_storage(base)
    tree = storage.join(base, "upload")
    store.write_bytes(storage.join(tree, "a", "1.png"), b"x")
    store.write_bytes(storage.join(tree, "a", ".old.png._COPYING_"), b"x")  # hidden either way
    assert store.being_copied(tree) is None
    store.write_bytes(storage.join(tree, "b", "2.png._COPYING_"), b"x")
    assert store.being_copied(tree) == storage.join(tree, "b", "2.png._COPYING_")


def test_local_files_are_found_behind_a_link_to_a_folder_as_hadoop_lists_them(tmp_path):
    (tmp_path / "store" / "shoes").mkdir(parents=True)
    (tmp_path / "store" / "shoes" / "1.png").write_bytes(b"x")
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "linked").symlink_to(tmp_path / "store")
    found = storage.open_storage(tmp_path.as_uri()).files((tmp_path / "input").as_uri(), 10)
    assert found == [storage.join((tmp_path / "input").as_uri(), "linked", "shoes", "1.png")]


def test_local_names_with_url_characters_are_listed_and_read_as_written(tmp_path):
    folder = tmp_path / "my photos#1?"
    names = ["a b.png", "c#d.png", "e?f.png", "\u00e9.png", "g%41.png"]
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"x")
    store = storage.open_storage(str(folder))
    listed = store.files(str(folder), limit=10)
    assert sorted(storage.local_path(uri).name for uri in listed) == sorted(names)
    assert [store.read_head(uri, 1) for uri in listed] == [b"x"] * len(names)


def test_hdfs_names_with_url_characters_are_read_as_written(hdfs, tmp_path):
    """Spark prints paths without percent-encoding; '#' and '?' are parts of names there."""
    folder = hdfs.webhdfs_uri(f"/t/{tmp_path.name}/my photos#1?")
    store = storage.open_storage(folder)
    for name in ["a b.png", "c#d.png", "e?f.png", "g%41.png"]:
        store.write_bytes(f"{folder}/{name}", name.encode())
        assert store.read_bytes(f"{folder}/{name}") == name.encode()
    assert sorted(store.list(folder)) == ["a b.png", "c#d.png", "e?f.png", "g%41.png"]


def test_read_head_returns_only_the_first_bytes(base):
    store = storage.open_storage(base)
    uri = storage.join(base, "head.bin")
    store.write_bytes(uri, bytes(range(100)))
    assert store.read_head(uri, 8) == bytes(range(8))
    assert store.read_head(uri, 500) == bytes(range(100))


def test_size_is_the_byte_count_and_none_for_a_missing_file(base):
    store = storage.open_storage(base)
    uri = storage.join(base, "sized.bin")
    store.write_bytes(uri, bytes(100))
    assert store.size(uri) == 100
    assert store.size(storage.join(base, "missing.bin")) is None


def test_transient_server_errors_are_retried_until_the_write_succeeds(hdfs):
    base = hdfs.webhdfs_uri("/retry")
    hdfs.inject(op="CREATE", fail_status=503, times=2)
    store = storage.open_storage(base)
    store.write_bytes(storage.join(base, "f.bin"), b"ok")
    assert store.read_bytes(storage.join(base, "f.bin")) == b"ok"


def test_slow_answers_are_waited_for(hdfs):
    base = hdfs.webhdfs_uri("/slow")
    store = storage.open_storage(base)
    store.write_bytes(storage.join(base, "f.bin"), b"ok")
    hdfs.inject(op="OPEN", delay_s=1.5)
    assert store.read_bytes(storage.join(base, "f.bin")) == b"ok"


def test_permission_errors_fail_at_once_without_retries(hdfs):
    hdfs.clear_requests()
    store = storage.open_storage(hdfs.webhdfs_uri("/"))
    with pytest.raises(StorageError, match="cannot write"):
        store.write_bytes(hdfs.webhdfs_uri("/locked/f.bin"), b"no")
    creates = [r for r in hdfs.requests if r[1] == "CREATE"]
    assert len(creates) == 1


def test_persistent_server_errors_fail_after_the_retries(hdfs):
    base = hdfs.webhdfs_uri("/down")
    hdfs.inject(op="LISTSTATUS", fail_status=500, times=10)
    with pytest.raises(StorageError, match="cannot list"):
        storage.open_storage(base).list(base)
    hdfs.clear_faults()


def test_a_server_error_on_a_status_check_is_retried_not_taken_for_a_missing_path(hdfs):
    base = hdfs.webhdfs_uri("/status-500")
    store = storage.open_storage(base)
    store.write_bytes(storage.join(base, "f.bin"), b"ok")
    hdfs.inject(op="GETFILESTATUS", fail_status=500, times=2)
    assert store.exists(base) and store.is_dir(base)
    assert store.size(storage.join(base, "f.bin")) == 2
    assert not store.exists(storage.join(base, "missing.bin"))


def test_a_status_check_that_keeps_failing_is_an_error_not_a_missing_path(hdfs):
    base = hdfs.webhdfs_uri("/status-down")
    hdfs.inject(op="GETFILESTATUS", fail_status=500, times=10)
    with pytest.raises(StorageError, match="cannot check"):
        storage.open_storage(base).exists(base)
    hdfs.clear_faults()


def test_a_folders_tree_status_changes_when_a_file_in_it_is_replaced(base):
    store = storage.open_storage(base)
    model = storage.join(base, "model")
    store.write_bytes(storage.join(model, "saved_model.pb"), b"first")
    store.write_bytes(storage.join(model, "variables", "v.index"), b"1")
    before = store.tree_status(model)
    assert [(path, size) for path, size, _ in before] == [("saved_model.pb", 5),
                                                          ("variables/v.index", 1)]
    time.sleep(0.01)
    store.write_bytes(storage.join(model, "variables", "v.index"), b"2")
    assert store.tree_status(model) != before


def test_a_remote_model_replaced_at_the_same_handle_is_fetched_again(hdfs, tmp_path):
    from gan_lib import inference

    handle = hdfs.webhdfs_uri(f"/models/{tmp_path.name}")
    store = storage.open_storage(handle)
    store.write_bytes(storage.join(handle, "saved_model.pb"), b"first model")
    first = inference.local_copy(handle, cache_dir=str(tmp_path / "cache"))
    assert inference.local_copy(handle, cache_dir=str(tmp_path / "cache")) == first
    time.sleep(0.01)
    store.write_bytes(storage.join(handle, "saved_model.pb"), b"retrained model")
    second = inference.local_copy(handle, cache_dir=str(tmp_path / "cache"))
    assert Path(second, "saved_model.pb").read_bytes() == b"retrained model"
    assert Path(first, "saved_model.pb").read_bytes() == b"first model"  # used within the hour


def test_a_cached_models_older_versions_go_once_unused_for_an_hour(hdfs, tmp_path):
    from gan_lib import inference

    handle = hdfs.webhdfs_uri(f"/models/{tmp_path.name}")
    store = storage.open_storage(handle)
    store.write_bytes(storage.join(handle, "saved_model.pb"), b"first model")
    first = inference.local_copy(handle, cache_dir=str(tmp_path / "cache"))
    hour_ago = time.time() - inference.OLD_VERSION_AGE_S - 1
    os.utime(first, (hour_ago, hour_ago))
    time.sleep(0.01)
    store.write_bytes(storage.join(handle, "saved_model.pb"), b"retrained model")
    second = inference.local_copy(handle, cache_dir=str(tmp_path / "cache"))
    assert not Path(first).exists() and Path(second).exists()


def test_a_file_is_created_new_only_where_there_is_none(base):
    store = storage.open_storage(base)
    uri = storage.join(base, "lock", "file")
    assert store.create_new(uri, b"first")
    assert not store.create_new(uri, b"second")
    assert store.read_bytes(uri) == b"first"


def test_touch_moves_a_files_modification_time_to_now(base):
    store = storage.open_storage(base)
    uri = storage.join(base, "touched")
    store.write_bytes(uri, b"x")
    _age(store, uri, 300)
    assert time.time() - store.modified_s(uri) > 250
    store.touch(uri)
    assert time.time() - store.modified_s(uri) < 30
    assert store.modified_s(storage.join(base, "missing")) is None


def test_a_folder_moved_aside_by_a_stopped_replacement_is_put_back(base, tmp_path):
    store = storage.open_storage(base)
    model = storage.join(base, "models", "classifier")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "saved_model.pb").write_bytes(b"old model")
    store.upload_dir(tmp_path / "old", model)
    # what a publish killed between its two renames leaves: the old copy aside, none in place
    store.rename(model, storage._temporary_sibling(model, storage.RETIRED))
    assert not store.exists(model)

    assert storage.restore_retired(store, model)
    assert store.read_bytes(storage.join(model, "saved_model.pb")) == b"old model"
    assert not storage.restore_retired(store, model)  # nothing to do when it is in place
    assert store.list(storage.join(base, "models")) == ["classifier"]


def _age(store, uri, seconds):
    """Set a file's or folder's modification time ``seconds`` into the past."""
    when = time.time() - seconds
    if uri.startswith("webhdfs"):
        store.client.set_times(store._path(uri), modification_time=int(when * 1000))
    else:
        os.utime(storage.local_path(uri), (when, when))


def test_temporary_copies_that_killed_runs_left_go_once_untouched_for_an_hour(base):
    store = storage.open_storage(base)
    raw = storage.join(base, "raw")
    left = {name: storage.join(raw, name) for name in (
        ".fashion-mnist.0123456789ab.tmp", ".fashion-mnist.ba9876543210.tmp",
        ".other.0123456789ab.tmp")}
    for uri in left.values():
        store.write_bytes(storage.join(uri, "train", "x.png"), b"x")
        _age(store, uri, storage.ABANDONED_AFTER_S + 60)
    _age(store, left[".fashion-mnist.ba9876543210.tmp"], 60)  # a live upload's, touched lately

    removed = storage.remove_abandoned_siblings(store, storage.join(raw, "fashion-mnist"))
    assert removed == [left[".fashion-mnist.0123456789ab.tmp"]]
    assert store.list(raw) == [".fashion-mnist.ba9876543210.tmp", ".other.0123456789ab.tmp"]


def test_hdfs_uri_without_a_webhdfs_address_is_a_clear_configuration_error(monkeypatch):
    monkeypatch.delenv("HDP_GAN_WEBHDFS_URL", raising=False)
    with pytest.raises(Exception, match="webhdfs_url"):
        storage.open_storage("hdfs://namenode:8020/gan")


@pytest.mark.parametrize("other_output", [False, True])
def test_staging_folder_goes_and_takes_the_run_folder_only_when_nothing_else_is_in_it(
        base, other_output):
    from gan_lib import runs
    from gan_lib.config import Settings

    settings = Settings(root=base)
    store = storage.open_storage(base)
    run = runs.run_dir(settings, "preprocess-1")
    with runs.staging_folder(settings, "preprocess-1") as staging:
        store.write_text(storage.join(staging, "part-0"), "scratch")
        if other_output:
            store.write_text(storage.join(run, "summary.json"), "{}")
    assert not store.exists(storage.join(run, "staging"))
    assert store.exists(run) is other_output


@pytest.mark.parametrize("uri", ["file:/data/a b#1", "file:///data/a b#1",
                                 "file://localhost/data/a b#1", "/data/a b#1"])
def test_local_path_reads_every_form_spark_writes_as_the_same_path(uri):
    assert str(storage.local_path(uri)) == "/data/a b#1"


@pytest.mark.parametrize("uri, expected", [
    ("file:///data/a b#1", "file:/data/a b#1"), ("file://localhost/data/x", "file:/data/x"),
    ("file:/data/x", "file:/data/x"), ("hdfs://nn:8020/gan/x", "hdfs://nn:8020/gan/x"),
    ("webhdfs://nn:9870/gan/x", "webhdfs://nn:9870/gan/x")])
def test_spark_path_writes_a_local_file_as_spark_lists_it_and_keeps_other_schemes(uri, expected):
    assert storage.spark_path(uri) == expected


@pytest.mark.parametrize("uri", ["file://otherhost/data", "file:data", "hdfs://nn:8020/data"])
def test_local_path_refuses_uris_that_name_no_path_on_this_machine(uri):
    with pytest.raises(ConfigError):
        storage.local_path(uri)


def test_scratch_folders_that_killed_runs_left_go_once_untouched_for_an_hour(tmp_path):
    from gan_lib import datasets
    from gan_lib.config import Settings

    settings = Settings(root=(tmp_path / "root").as_uri(), state_dir=str(tmp_path / "state"))
    scratch = tmp_path / "state" / "scratch"
    old, recent, other = (scratch / "ingest-old", scratch / "ingest-recent",
                          scratch / "publish-old")
    for folder in (old, recent, other):
        (folder / "train").mkdir(parents=True)
    stale = time.time() - storage.ABANDONED_AFTER_S - 60
    for folder in (old, other):
        os.utime(folder, (stale, stale))

    with datasets.scratch_folder(settings, "ingest-") as folder:
        assert Path(folder).parent == scratch
    assert not old.exists() and recent.exists() and other.exists()


def test_a_namenode_that_refuses_connections_is_named_with_the_systems_reason():
    from services import free_port

    port = free_port()  # nothing listens there
    uri = f"webhdfs://127.0.0.1:{port}/gan/file.bin"
    with pytest.raises(StorageError) as failed:
        storage.open_storage(uri).read_bytes(uri)
    assert str(failed.value) == (f"cannot read {uri}: the connection to 127.0.0.1:{port} "
                                 "failed (Connection refused)")
