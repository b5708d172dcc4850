"""Job start-up: whole small jobs with Spark's class-data archive against without it.

Each command runs alternately with the archive (as jobs run once scripts/setup_env.sh has
built it) and with ``HDP_GAN_CLASS_ARCHIVE=off``, the same number of times, on the same
machine: a query through `hdp-gan sql` on a root that holds a dataset (Spark inside the
driver, ``local[2]``), and `hdp-gan preprocess` of 300 Fashion-MNIST PNG files into a fresh
root (``local-cluster``: a driver and two executor JVMs map the archive). Medians are
reported, with every time measured.

    python scripts/bench/startup.py [--rounds 5] [--workdir /tmp/hdp-gan-bench-startup]
"""

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, run_measured, write_section  # noqa: E402

from gan_lib import class_archive, datasets  # noqa: E402

IMAGES = 300


def write_images(folder: Path) -> None:
    from PIL import Image
    images, labels = datasets.load_fashion_mnist(split="test")
    for index in range(IMAGES):
        target = folder / datasets.FASHION_MNIST_CLASSES[labels[index]]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(target / f"{index:04d}.png")


def job(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *map(str, arguments)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/hdp-gan-bench-startup")
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    write_images(work / "images")
    archive = class_archive.build()
    if archive is None:
        raise SystemExit("the class archive could not be built")
    query_root = work / "query-root"
    run_measured(job(["preprocess", "--root", query_root, "--input", work / "images",
                      "--dataset", "small"]))

    commands = {
        "`sql` query of the runs table (`local[2]`)":
            lambda _: job(["sql", "--root", query_root,
                           "SELECT stage, count(*) FROM runs GROUP BY stage"]),
        f"`preprocess` of {IMAGES} PNG files into a new root (`local-cluster[2,1,2048]`)":
            lambda root: job(["preprocess", "--root", root, "--input", work / "images",
                              "--dataset", "small"]),
    }
    times = {(name, mode): [] for name in commands for mode in ("on", "off")}
    for round_ in range(args.rounds):
        for name, command in commands.items():
            for mode in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
                root = work / f"root-{mode}"
                shutil.rmtree(root, ignore_errors=True)
                measured = run_measured(command(root),
                                        env={class_archive.ENABLED_ENV: mode})
                times[(name, mode)].append(measured.seconds)
                print(f"{name} archive {mode}: {measured.seconds:.1f} s", flush=True)

    lines = [
        "## Job start-up: Spark's class-data archive",
        "",
        f"Command: `{command_line()}` ({machine()}). Each job ran {args.rounds} times with the "
        "archive and as many times without it (`HDP_GAN_CLASS_ARCHIVE=off`), alternating; "
        f"times are whole commands, Python's start included. Archive: {archive.stat().st_size / 1e6:.0f} MB.",
        "",
        "| job | median with (s) | median without (s) | saved (s) | ratio | every run with / without (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in commands:
        with_, without = times[(name, "on")], times[(name, "off")]
        low, high = statistics.median(with_), statistics.median(without)
        runs = (", ".join(f"{t:.1f}" for t in with_) + " / "
                + ", ".join(f"{t:.1f}" for t in without))
        lines.append(f"| {name} | {low:.1f} | {high:.1f} | {high - low:.1f} | "
                     f"{high / low:.2f}x | {runs} |")
    write_section("startup", "\n".join(lines))


if __name__ == "__main__":
    main()
