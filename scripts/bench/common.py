"""Shared pieces of the benchmarks: timing a command with the peak memory of its process tree,
and writing a benchmark's section of docs/BENCHMARKS.md.

Each benchmark runs the Spark job and its single-process baseline side by side on the same
machine, on the same files, and reports their ratio. The section it writes names the command
that produced it, so that anyone can run it again.
"""

import datetime as dt
import os
from collections import namedtuple
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "docs" / "BENCHMARKS.md"


EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"

Measured = namedtuple("Measured", "seconds driver_mb tree_mb executor_mb stdout")
Measured.__doc__ = """A finished command: wall seconds; peak resident memory (MB) of its own
process (the driver), of its whole process tree, and of its largest Spark executor (the
executor's JVM with its Python workers); its standard output."""


def _children() -> dict:
    children = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return children


def _subtree_rss_kb(root_pid: int, children: dict) -> dict:
    """Resident memory (kB) of a process and each of its descendants."""
    sizes, stack = {}, [root_pid]
    while stack:
        pid = stack.pop()
        try:
            text = Path(f"/proc/{pid}/status").read_text()
            sizes[pid] = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
        except (OSError, AttributeError):
            pass
        stack.extend(children.get(pid, []))
    return sizes


def _is_executor(pid: int) -> bool:
    try:
        return EXECUTOR_CLASS.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run_measured(command, env=None, cwd=REPO) -> Measured:
    """Run a command and measure it (see ``Measured``); exits if the command fails."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    peaks = {"driver": 0, "tree": 0, "executor": 0}

    def watch():
        while process.poll() is None:
            children = _children()
            sizes = _subtree_rss_kb(process.pid, children)
            peaks["driver"] = max(peaks["driver"], sizes.get(process.pid, 0))
            peaks["tree"] = max(peaks["tree"], sum(sizes.values()))
            for pid in filter(_is_executor, sizes):
                peaks["executor"] = max(peaks["executor"],
                                        sum(_subtree_rss_kb(pid, children).values()))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, _ = process.communicate()
    seconds = time.monotonic() - started
    watcher.join(timeout=2)
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} failed with exit code {process.returncode}")
    return Measured(seconds, peaks["driver"] / 1024, peaks["tree"] / 1024,
                    peaks["executor"] / 1024, stdout)


def warm_page_cache(folder: Path) -> int:
    """Read every file under ``folder`` once, so that the timed runs that follow all read
    from memory whichever goes first. Returns the bytes read."""
    return sum(len(path.read_bytes()) for path in Path(folder).rglob("*") if path.is_file())


def machine() -> str:
    return (f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, measured {dt.date.today().isoformat()}")


def write_section(name: str, text: str) -> None:
    """Replace (or append) the section between the benchmark's markers in BENCHMARKS.md."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    document = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in document:
        document = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, document,
                          flags=re.S)
    else:
        document = document.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(document)
    print(f"wrote the {name} section of {BENCHMARKS}", file=sys.stderr)


def command_line() -> str:
    return "python " + " ".join([str(Path(sys.argv[0]).relative_to(REPO))
                                 if Path(sys.argv[0]).is_absolute() else sys.argv[0]]
                                + sys.argv[1:])
