"""Run ids, run folders and the one row per stage run in the ``runs`` table.

Every stage run has a run id (``<stage>-<UTC time>-<random>`` unless given) and a folder
``<root>/runs/<run_id>`` for everything it writes outside tables. When the stage ends, one
row goes to the ``runs`` table with its status, counts, parameters, outputs and lineage,
and one JSON line with the same facts is printed for scripts to chain on.
"""

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gan_lib import storage, __version__
from gan_lib.config import ConfigError, Settings, mask_secrets, validate_name

logger = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A stage cannot go on; the message says what is wrong and what to do."""


def new_run_id(stage: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stage}-{stamp}-{secrets.token_hex(3)}"


def run_dir(settings: Settings, run_id: str) -> str:
    return storage.join(settings.root, "runs", validate_name(run_id, "--run-id"))


@contextlib.contextmanager
def staging_folder(settings: Settings, run_id: str):
    """The run's scratch folder (``<run>/staging``), removed when the block ends, whether the
    run succeeded or not, and the run's folder with it when nothing else was written there;
    a failed removal is logged, not raised, so that it never hides the run's own error."""
    run = run_dir(settings, run_id)
    staging = storage.join(run, "staging")
    try:
        remove_abandoned_stagings(settings, keep=run_id)
    except (storage.StorageError, OSError) as error:
        logger.warning("could not look for staging folders that stopped runs left: %s", error)
    try:
        yield staging
    finally:
        try:
            store = storage.open_storage(staging, settings)
            store.delete(staging)
            if store.exists(run) and not store.list(run):
                store.delete(run, recursive=False)
        except (storage.StorageError, OSError) as error:
            logger.warning("could not remove the staging folder %s: %s", staging, error)


def remove_abandoned_stagings(settings: Settings, keep: str) -> list[str]:
    """Delete the staging folders that runs stopped by a signal or killed left behind (their
    Spark tasks may still have been writing when the cleanup ran, and a rerun takes a new run
    id). A staging folder is abandoned when its run holds no lease renewed within
    ``storage.ABANDONED_AFTER_S`` and the folder itself was not changed within it either: a
    live run renews its lease every LEASE_HEARTBEAT_S. Returns the URIs deleted."""
    runs_uri = storage.join(settings.root, "runs")
    store = storage.open_storage(runs_uri, settings)
    if not store.exists(runs_uri):
        return []
    now = time.time()

    def idle(lease):
        modified = store.modified_s(lease)
        return modified is None or now - modified > storage.ABANDONED_AFTER_S

    removed = []
    for name, is_folder in store.entries(runs_uri):
        if not is_folder or name == keep or not _is_run_id(name):  # not a run's folder
            continue
        staging = storage.join(runs_uri, name, "staging")
        changed = store.modified_s(staging)  # None: no staging folder (the usual case)
        if changed is not None and now - changed > storage.ABANDONED_AFTER_S and idle(
                storage.join(runs_uri, name, LEASE_NAME)):
            store.delete(staging)
            removed.append(staging)
            if not store.list(storage.join(runs_uri, name)):
                store.delete(storage.join(runs_uri, name), recursive=False)
    if removed:
        logger.info("removed %d staging folders that stopped runs left: %s", len(removed),
                    ", ".join(storage.redact_url(uri) for uri in removed))
    return removed


def _is_run_id(name: str) -> bool:
    try:
        validate_name(name, "run id")
    except ConfigError:
        return False
    return True


LEASE_NAME = ".running"
LEASE_HEARTBEAT_S = 15
LEASE_STALE_S = 60
LEASE_WRITE_S = 5     # a holder's file still empty after this was never written whole
LEASE_SETTLE_S = 1.0  # how long a take-over waits before it checks that it won


class RunBusy(StageError):
    """Another process is running the same run id, or writing the same dataset."""


@dataclass(frozen=True)
class _Held:
    """What a lease holds, as its messages name it."""
    name: str     # "run preprocess-1", "dataset faces"
    busy: str     # "is running now"
    advice: str   # what to do instead of waiting, if anything


@contextlib.contextmanager
def run_lease(settings: Settings, run_id: str, stage: str):
    """Hold the run id for this process while the block runs: two processes running one run
    id at once would mix their staged files and replace each other's rows.

    The lease is a file in the run's folder, created only where there is none and touched
    every LEASE_HEARTBEAT_S seconds. One left by a process that was killed is taken over: at
    once when that process ran on this machine and is gone, otherwise once it has not been
    touched for LEASE_STALE_S seconds."""
    with _lease(settings, run_dir(settings, run_id), stage,
                _Held(f"run {run_id}", "is running now", "give another --run-id")):
        yield


# under runs/: not run ids, so no sweep or listing takes them
DATASET_HOLDS = ".datasets"
REPORT_HOLDS = ".reports"


@contextlib.contextmanager
def dataset_lease(settings: Settings, dataset: str, stage: str):
    """Hold a dataset for the one process that writes it: two preprocess runs of one dataset
    (under different run ids) would each replace some of its partitions, leaving a mix of
    both. A lease as ``run_lease``'s, in ``runs/.datasets/<dataset>``."""
    folder = storage.join(settings.root, "runs", DATASET_HOLDS,
                          validate_name(dataset, "--dataset"))
    with _lease(settings, folder, stage,
                _Held(f"dataset {dataset}", "is being written now",
                      "give another --dataset")):
        yield


@contextlib.contextmanager
def report_lease(settings: Settings, run_id: str):
    """Hold the report of a run for the one process that writes it: two at once would write
    one page's pictures over each other. Not the run's own lease, which a report leaves to
    the run it reads (a training run may still be going)."""
    folder = storage.join(settings.root, "runs", REPORT_HOLDS, validate_name(run_id, "RUN_ID"))
    with _lease(settings, folder, "report",
                _Held(f"the report of run {run_id}", "is being written now", "")):
        yield


@contextlib.contextmanager
def _lease(settings: Settings, folder: str, stage: str, held: _Held):
    uri = storage.join(folder, LEASE_NAME)
    store = storage.open_storage(uri, settings)
    mine = {"stage": stage, "host": socket.gethostname(), "pid": os.getpid(),
            "since": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "token": secrets.token_hex(8)}
    _take_lease(store, uri, held, mine)
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(LEASE_HEARTBEAT_S):
            try:
                store.touch(uri)
            except (storage.StorageError, OSError) as error:
                logger.warning("could not renew the hold on %s: %s", held.name, error)
    beat = threading.Thread(target=heartbeat, name=f"lease {held.name}", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join(timeout=5)
        try:
            if _lease_holder(store, uri).get("token") == mine["token"]:
                store.delete(uri, recursive=False)
            if store.exists(folder) and not store.list(folder):
                store.delete(folder, recursive=False)
        except (storage.StorageError, OSError) as error:
            logger.warning("could not release the hold on %s: %s", held.name, error)


def _take_lease(store, uri: str, held: _Held, mine: dict) -> None:
    data = json.dumps(mine).encode()
    instead = f"wait for it to end{' or ' + held.advice if held.advice else ''}"
    overtaken = f"{held.name} was taken over by another process just now; {instead}"
    try:
        if store.create_new(uri, data) or _lease_holder(store, uri).get("token") == mine["token"]:
            return
        holder = _lease_holder(store, uri)
        modified = store.modified_s(uri)
        idle = time.time() - modified if modified is not None else LEASE_STALE_S + 1
        ended = holder.get("host") == mine["host"] and process_ended(holder.get("pid"))
        unreadable = not holder.get("token") and idle > LEASE_WRITE_S  # killed as it wrote
        if not (ended or unreadable or idle > LEASE_STALE_S):
            raise RunBusy(
                f"{held.name} {held.busy} ({holder.get('stage', 'a stage')} on "
                f"{holder.get('host', 'an unknown host')}, process {holder.get('pid', '?')}, "
                f"since {holder.get('since', '?')}); {instead} (a "
                f"run that was killed elsewhere counts as ended {LEASE_STALE_S} s after it "
                "stopped)")
        if _lease_holder(store, uri).get("token") != holder.get("token"):
            raise RunBusy(overtaken)
        logger.warning("%s: taking over from %s (process %s on %s), which %s", held.name,
                       holder.get("stage", "a stage"), holder.get("pid", "?"),
                       holder.get("host", "?"), "has ended" if ended
                       else f"has not been heard of for {idle:.0f} s")
        store.delete(uri)
        # Two processes may both have found the same holder gone: each makes its own, the
        # later one's delete removing the earlier one's. Whoever's file is there after a
        # moment holds the lease; the other steps back.
        taken = store.create_new(uri, data)
        time.sleep(LEASE_SETTLE_S)
        if not taken or _lease_holder(store, uri).get("token") != mine["token"]:
            raise RunBusy(overtaken)
    except (storage.StorageError, OSError) as error:
        raise StageError(f"cannot hold {held.name} ({uri}): {error}") from error


def _lease_holder(store, uri: str) -> dict:
    try:
        holder = json.loads(store.read_bytes(uri))
    except (storage.StorageError, OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def process_ended(pid) -> bool:
    """Whether no process with this id runs on this machine (one of another user counts as
    running)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def code_version() -> str:
    """The package version, with the git commit when the code runs from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return f"{__version__}+{commit}"
    except (OSError, subprocess.SubprocessError):
        return __version__


@dataclass
class StageRun:
    """Bookkeeping for one stage run: counts, outputs, lineage and timing."""

    stage: str
    run_id: str
    parameters: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    started_clock: float = field(default_factory=time.monotonic)
    finished_clock: float | None = None  # set when the run is recorded
    # False while a stage only checks its inputs: a refused run leaves the runs table as it
    # was (a run id rerun with a mistyped option keeps its earlier row)
    record_failure: bool = True

    @property
    def duration_s(self) -> float:
        """Seconds from the start to the recording of the run's row (or to now before it), so
        that the row, the log line and the final JSON line give one duration."""
        end = time.monotonic() if self.finished_clock is None else self.finished_clock
        return round(end - self.started_clock, 3)

    def summary(self, status: str = "succeeded", message: str = "") -> dict:
        """The facts printed as the stage's final JSON line."""
        summary = {"stage": self.stage, "run_id": self.run_id, "status": status,
                   "duration_s": self.duration_s, "counts": self.counts,
                   "outputs": self.outputs}
        if self.lineage:
            summary["lineage"] = self.lineage
        if message:
            summary["message"] = message
        return summary

    def record(self, spark, settings: Settings, status: str = "succeeded", message: str = ""):
        """Write (or replace) this run's row in the ``runs`` table."""
        from gan_lib import tables
        self.finished_clock = time.monotonic()
        row = {
            "status": status, "started_at": self.started_at.replace(tzinfo=None),
            "finished_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            "duration_s": float(self.duration_s), "counts": json.dumps(self.counts),
            "parameters": json.dumps(mask_secrets(self.parameters), default=str),
            "outputs": json.dumps(self.outputs), "lineage": json.dumps(self.lineage),
            "code_version": code_version(), "message": message[:2000],
            "stage": self.stage, "run_id": self.run_id,
        }
        tables.write_partitions(spark, settings, "runs", tables.rows_frame(spark, "runs", [row]))
        logger.info("%s run %s %s in %.1f s", self.stage, self.run_id, status, self.duration_s)
