"""Preprocessing: the Spark job against a single-process Pillow loop on the same files.

Two real-data inputs are built from Fashion-MNIST: the 70,000 images as 28x28 PNG files,
and the same images enlarged to 178x218 RGB JPEG files (the size of CelebA's face photos).
On each, the whole Spark job is timed (Spark's start-up, the Hive writes and the count
checks included) against a plain loop in one process that decodes, validates and resizes the
same files with the same function and writes one Parquet file. Every file is read once
before either is timed, so both read from the page cache. The driver's peak memory is
also measured on a tenth of the PNG set and on all of it.

    python scripts/bench/preprocess.py [--workdir /tmp/hdp-gan-bench] [--count 70000]
"""

import argparse
import hashlib
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, command_line, machine, run_measured, warm_page_cache,  # noqa: E402
                    write_section)

from gan_lib import datasets  # noqa: E402
from gan_lib.images import DecodeSettings, ImageRejected, decode_image  # noqa: E402


def build_inputs(workdir: Path, count: int) -> dict:
    """PNG and JPEG folders, label sub-folders, built once and reused."""
    from PIL import Image

    images = np.concatenate([datasets.load_fashion_mnist(split=s)[0] for s in ("train", "test")])
    labels = np.concatenate([datasets.load_fashion_mnist(split=s)[1] for s in ("train", "test")])
    folders = {"png": workdir / f"png-{count}", "jpeg": workdir / f"jpeg-{count}"}

    def write(index):
        name = datasets.FASHION_MNIST_CLASSES[labels[index]]
        picture = Image.fromarray(images[index])
        picture.save(folders["png"] / name / f"{index:05d}.png")
        enlarged = picture.convert("RGB").resize((178, 218), Image.BICUBIC)
        enlarged.save(folders["jpeg"] / name / f"{index:05d}.jpg", quality=90)

    if not all((folder / ".complete").exists() for folder in folders.values()):
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
            for name in datasets.FASHION_MNIST_CLASSES:
                (folder / name).mkdir(parents=True)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(write, range(count), chunksize=256))
        for folder in folders.values():
            (folder / ".complete").touch()
    return folders


def single_process(folder: Path, settings: DecodeSettings, output: Path) -> tuple[float, int]:
    """The baseline: the same decoding in one process, written as one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as parquet

    started = time.monotonic()
    rows = {"image_id": [], "source_path": [], "label": [], "pixels": []}
    accepted = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            pixels = decode_image(path.read_bytes(), settings)
        except ImageRejected:
            continue
        rows["image_id"].append(hashlib.sha256(pixels.tobytes()).hexdigest())
        rows["source_path"].append(str(path))
        rows["label"].append(path.parent.name)
        rows["pixels"].append(pixels.tobytes())
        accepted += 1
    parquet.write_table(pa.table(rows), output)
    return time.monotonic() - started, accepted


def spark_job(folder: Path, root: Path, size: int, channels: int, dataset: str):
    shutil.rmtree(root, ignore_errors=True)
    return run_measured([sys.executable, "-m", "jobs.cli", "preprocess", "--root", str(root),
                         "--input", str(folder), "--dataset", dataset, "--image-size",
                         str(size), "--channels", str(channels)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/hdp-gan-bench")
    parser.add_argument("--count", type=int, default=70_000)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folders = build_inputs(workdir, args.count)

    results = []
    for kind, size, channels in (("png", 28, 1), ("jpeg", 64, 3)):
        warm_page_cache(folders[kind])
        baseline_s, accepted = single_process(folders[kind], DecodeSettings(size, channels),
                                              workdir / f"baseline-{kind}.parquet")
        job = spark_job(folders[kind], workdir / f"root-{kind}", size, channels, f"bench-{kind}")
        results.append((kind, size, channels, accepted, baseline_s, job.seconds, job.driver_mb))
        print(f"{kind}: baseline {baseline_s:.1f} s, spark {job.seconds:.1f} s, "
              f"ratio {baseline_s / job.seconds:.2f}, driver peak {job.driver_mb:.0f} MB",
              flush=True)

    small = build_inputs(workdir, args.count // 10)
    small_driver_mb = spark_job(small["png"], workdir / "root-small", 28, 1, "small").driver_mb

    lines = [
        "## Preprocessing: Spark job against a single-process Pillow loop",
        "",
        f"Command: `{command_line()}` ({machine()}). The Spark job ran in its default "
        "`local-cluster[2,1,2048]` (two executors of one core); the baseline is one Python "
        "process. Times are whole runs: Spark's start-up, Hive writes and count checks "
        "included.",
        "",
        "| input | output | images | single process (s) | Spark job (s) | speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, size, channels, accepted, baseline_s, spark_s, _ in results:
        label = "28x28 PNG" if kind == "png" else "178x218 JPEG"
        lines.append(f"| {label} | {size}x{size}x{channels} | {accepted:,} | {baseline_s:.1f} "
                     f"| {spark_s:.1f} | {baseline_s / spark_s:.2f}x |")
    png_driver = results[0][6]
    lines += ["", f"Peak resident memory of the driver's Python process: "
              f"{small_driver_mb:.0f} MB for {args.count // 10:,} PNG files, {png_driver:.0f} MB "
              f"for {args.count:,}."]
    write_section("preprocess", "\n".join(lines))


if __name__ == "__main__":
    main()
