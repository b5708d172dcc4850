"""One process at a time per run id: a second one is refused before it starts Spark, and a
hold left by a killed process is taken over."""

import json
import os
import socket
import subprocess
import time

import pytest

from gan_lib import runs
from gan_lib.config import Settings


@pytest.fixture
def settings(tmp_path):
    return Settings(root=tmp_path.as_uri())


def _lease_file(tmp_path, run_id):
    return tmp_path / "runs" / run_id / runs.LEASE_NAME


def _left_behind(tmp_path, run_id, host, pid, idle_s=0.0):
    """A hold as a process that was killed leaves it, last touched idle_s ago."""
    path = _lease_file(tmp_path, run_id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"stage": "label", "host": host, "pid": pid,
                                "since": "2026-12-06 08:00:00 UTC", "token": "old"}))
    when = time.time() - idle_s
    os.utime(path, (when, when))


def _ended_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_second_hold_on_a_running_run_id_is_refused_naming_the_holder(settings):
    with runs.run_lease(settings, "busy", "label"):
        with pytest.raises(runs.RunBusy) as refused:
            with runs.run_lease(settings, "busy", "label"):
                pass
    assert str(refused.value).startswith(
        f"run busy is running now (label on {socket.gethostname()}, process {os.getpid()}, "
        "since ")
    assert "wait for it to end or give another --run-id" in str(refused.value)


def test_a_released_hold_leaves_no_file_and_no_empty_run_folder(settings, tmp_path):
    with runs.run_lease(settings, "done", "label"):
        assert _lease_file(tmp_path, "done").exists()
    assert not (tmp_path / "runs" / "done").exists()
    with runs.run_lease(settings, "done", "label"):  # and the run id is free again
        (tmp_path / "runs" / "done" / "output.txt").write_text("kept")
    assert [p.name for p in (tmp_path / "runs" / "done").iterdir()] == ["output.txt"]


def test_a_hold_left_by_a_killed_process_on_this_machine_is_taken_over_at_once(settings,
                                                                              tmp_path):
    _left_behind(tmp_path, "killed", socket.gethostname(), _ended_pid())
    with runs.run_lease(settings, "killed", "label"):
        assert json.loads(_lease_file(tmp_path, "killed").read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("idle_s, taken", [(runs.LEASE_STALE_S + 5, True), (5, False)])
def test_a_hold_from_another_machine_is_taken_over_only_once_it_went_quiet(settings, tmp_path,
                                                                           idle_s, taken):
    _left_behind(tmp_path, "remote", "another-host", 4242, idle_s)
    if taken:
        with runs.run_lease(settings, "remote", "label"):
            pass
    else:
        with pytest.raises(runs.RunBusy, match=r"\(label on another-host, process 4242"):
            with runs.run_lease(settings, "remote", "label"):
                pass


def test_a_held_run_id_is_touched_while_its_stage_runs(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "LEASE_HEARTBEAT_S", 0.05)
    with runs.run_lease(settings, "beating", "label"):
        path = _lease_file(tmp_path, "beating")
        old = time.time() - 100
        os.utime(path, (old, old))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5


def test_a_hold_killed_while_it_was_written_is_taken_over_once_it_stayed_empty(settings,
                                                                               tmp_path):
    path = _lease_file(tmp_path, "half")
    path.parent.mkdir(parents=True)
    path.write_text("")
    when = time.time() - runs.LEASE_WRITE_S - 1
    os.utime(path, (when, when))
    with runs.run_lease(settings, "half", "label"):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_take_over_that_another_process_overtook_steps_back(settings, tmp_path,
                                                              monkeypatch):
    """Two processes found the same ended holder: the later one's delete removed the earlier
    one's new file and made its own. The earlier one must see that and not run."""
    from gan_lib import storage

    _left_behind(tmp_path, "race", socket.gethostname(), _ended_pid())
    create_new = storage.LocalStorage.create_new

    def overtaken(self, uri, data):
        made = create_new(self, uri, data)
        if made:  # the other process deletes this file and makes its own
            storage.local_path(uri).write_text(json.dumps({"token": "the other's"}))
        return made
    monkeypatch.setattr(storage.LocalStorage, "create_new", overtaken)
    monkeypatch.setattr(runs, "LEASE_SETTLE_S", 0.01)
    with pytest.raises(runs.RunBusy, match="was taken over by another process just now"):
        with runs.run_lease(settings, "race", "label"):
            pass


def _aged(path, seconds):
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_staging_folders_that_stopped_runs_left_are_removed_by_the_next_staging_run(
        settings, tmp_path):
    long_ago = runs.storage.ABANDONED_AFTER_S + 60
    _left_behind(tmp_path, "killed-stale-lease", socket.gethostname(), 1, idle_s=long_ago)
    _left_behind(tmp_path, "running-now", socket.gethostname(), os.getpid(), idle_s=5)
    stagings = {}
    for run_id in ("killed-no-lease", "killed-stale-lease", "running-now", "just-stopped",
                   "my notes", ".backup"):  # the last two cannot be run ids
        staging = tmp_path / "runs" / run_id / "staging"
        (staging / "decoded").mkdir(parents=True)
        (staging / "decoded" / "part-0.parquet").write_bytes(b"rows")
        _aged(staging, 60 if run_id == "just-stopped" else long_ago)
        stagings[run_id] = staging

    with runs.staging_folder(settings, "label-new"):
        pass

    assert not (tmp_path / "runs" / "killed-no-lease").exists()
    assert not stagings["killed-stale-lease"].exists()
    assert _lease_file(tmp_path, "killed-stale-lease").exists()  # the run's own to take over
    assert stagings["running-now"].exists() and stagings["just-stopped"].exists()
    assert stagings["my notes"].exists() and stagings[".backup"].exists()


def test_a_dataset_being_written_is_refused_to_a_second_writer_under_another_run_id(settings,
                                                                                   tmp_path):
    with runs.dataset_lease(settings, "faces", "preprocess"):
        with runs.run_lease(settings, "preprocess-2", "preprocess"):  # its own run id is free
            with pytest.raises(runs.RunBusy) as refused:
                with runs.dataset_lease(settings, "faces", "preprocess"):
                    pass
        with runs.dataset_lease(settings, "shoes", "preprocess"):  # another dataset is free
            pass
    assert str(refused.value).startswith(
        f"dataset faces is being written now (preprocess on {socket.gethostname()}, process "
        f"{os.getpid()}, since ")
    assert "wait for it to end or give another --dataset" in str(
        refused.value)
    assert list((tmp_path / "runs" / runs.DATASET_HOLDS).iterdir()) == []  # released


def test_preprocess_of_a_dataset_another_process_writes_is_refused_before_spark(settings,
                                                                              tmp_path, job):
    from PIL import Image
    (tmp_path / "in").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "in" / "one.png")
    with runs.dataset_lease(settings, "faces", "preprocess"):
        result = job("preprocess", "--root", tmp_path, "--input", tmp_path / "in",
                     "--dataset", "faces")
    assert result.code == 1
    assert result.last_error_line.startswith(
        "hdp-gan preprocess: failed: dataset faces is being written now (preprocess on ")
    assert not (tmp_path / "_local" / "metastore_db").exists()


def test_a_report_another_process_writes_is_refused_before_spark(settings, tmp_path, job):
    """Two reports of one run at once would write one page's pictures over each other; the
    run itself stays free (a report reads a run that may still be training)."""
    started = job("sql", "--root", tmp_path, "SELECT 1")  # a root whose metastore exists
    assert started.code == 0, started.stderr[-2000:]
    with runs.report_lease(settings, "train-1"):
        with runs.run_lease(settings, "train-1", "train"):
            pass
        result = job("report", "--root", tmp_path, "train-1")
    assert result.code == 1
    assert result.last_error_line.startswith(
        "hdp-gan report: failed: the report of run train-1 is being written now (report on ")
    assert "; wait for it to end (a run that was killed" in result.last_error_line
