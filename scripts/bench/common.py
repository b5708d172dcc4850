"""Shared pieces of the benchmarks: timing a command with the peak memory of its process tree,
and writing a benchmark's section of docs/BENCHMARKS.md.

Each benchmark runs the Spark job and its single-process baseline side by side on the same
machine, on the same files, and reports their ratio. The section it writes names the command
that produced it, so that anyone can run it again.
"""

import datetime as dt
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "docs" / "BENCHMARKS.md"


def _tree_rss_kb(root_pid: int) -> dict:
    """Resident memory (kB) of a process and each of its descendants."""
    children = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        except (OSError, IndexError, ValueError):
            continue
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


def run_measured(command, env=None, cwd=REPO):
    """Run a command; return (seconds, peak RSS in MB of the command's own process (the
    driver), peak RSS in MB of its whole tree, stdout)."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    peaks = {"driver": 0, "tree": 0}

    def watch():
        while process.poll() is None:
            sizes = _tree_rss_kb(process.pid)
            peaks["driver"] = max(peaks["driver"], sizes.get(process.pid, 0))
            peaks["tree"] = max(peaks["tree"], sum(sizes.values()))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, _ = process.communicate()
    seconds = time.monotonic() - started
    watcher.join(timeout=2)
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} failed with exit code {process.returncode}")
    return seconds, peaks["driver"] / 1024, peaks["tree"] / 1024, stdout


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
