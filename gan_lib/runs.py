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
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gan_lib import storage, __version__
from gan_lib.config import Settings, mask_secrets, validate_name

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
        yield staging
    finally:
        try:
            store = storage.open_storage(staging, settings)
            store.delete(staging)
            if store.exists(run) and not store.list(run):
                store.delete(run, recursive=False)
        except (storage.StorageError, OSError) as error:
            logger.warning("could not remove the staging folder %s: %s", staging, error)


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
