"""Labelling throughput: the Spark label job against one TensorFlow process predicting in
batches, on the same 10,000 generated images with the same classifier; and the memory of the
job's largest executor (its JVM and Python workers) and of its whole process tree at 10,000,
50,000 and 100,000 images (the middle run tells growth with the images from a one-off step).

The Spark figures are whole jobs over the images' folder (start-up, decoding, prediction,
Hive writes); the single process decodes the same PNG files with the same function and
predicts their labels (a folder of images gets labels, not the feature vectors only quality
scores need) in batches of 1,024 with the same threads in total (2). Every image file is read
once before the timed runs, so all of them read from the page cache. The difference between the
smallest and largest Spark runs gives the rate with Spark's fixed costs taken out.

    python scripts/bench/label_throughput.py --root ROOT --classifier HANDLE --generator-run RUN
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, command_line, machine, run_measured, warm_page_cache,  # noqa: E402
                    write_section)

SINGLE = """
import sys, time, numpy as np, tensorflow as tf
from pathlib import Path
tf.config.threading.set_intra_op_parallelism_threads(2)
from gan_lib import inference
from gan_lib.images import DecodeSettings, decode_image
classifier = inference.load_classifier(sys.argv[1])
files = sorted(Path(sys.argv[2]).glob("*.png"))
started = time.monotonic()
decode = DecodeSettings(28, 1, min_size=1)
for first in range(0, len(files), 1024):
    batch = np.stack([decode_image(p.read_bytes(), decode) for p in files[first:first + 1024]])
    classifier.predict(batch, with_features=False)
print(len(files) / (time.monotonic() - started))
"""


def label_run(root, handle, generate_run):
    """The label job over a generate run's PNG folder: the same work as the single process
    (decode, predict) plus Spark's start-up and the Hive writes, without the quality scores."""
    images = root / "runs" / generate_run / "images"
    return run_measured(
        [sys.executable, "-m", "jobs.cli", "label", "--root", str(root), "--images", str(images),
         "--run-id", f"bench-label-{generate_run}", "--classifier", handle])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--generator-run", required=True)
    parser.add_argument("--small", type=int, default=10_000, help="images in the first run")
    parser.add_argument("--middle", type=int, default=50_000, help="images in the second run")
    parser.add_argument("--large", type=int, default=100_000, help="images in the third run")
    args = parser.parse_args()
    small, middle, large = sizes = args.small, args.middle, args.large
    root = Path(args.root)
    hdp_gan = [sys.executable, "-m", "jobs.cli"]
    figures = {}
    for count in sizes:
        run_id = f"bench-generate-{count}"
        if not (root / "runs" / run_id / "images").exists():
            run_measured(hdp_gan + ["generate", "--root", str(root), "--generator-run",
                                    args.generator_run, "--count", str(count), "--run-id", run_id])
        warm_page_cache(root / "runs" / run_id / "images")
        figures[count] = label_run(root, args.classifier, run_id)
        print(count, figures[count][:4], flush=True)
    single = float(subprocess.run(
        [sys.executable, "-c", SINGLE, args.classifier,
         str(root / "runs" / f"bench-generate-{small}" / "images")],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout.strip().splitlines()[-1])
    spark_rate = small / figures[small].seconds
    middle_rate = middle / figures[middle].seconds
    large_rate = large / figures[large].seconds
    marginal_rate = (large - small) / (figures[large].seconds - figures[small].seconds)
    fixed_s = figures[small].seconds - small / marginal_rate
    write_section("label_throughput", "\n".join([
        "## Labelling throughput: Spark job against one process",
        "",
        f"Command: `{command_line()}` ({machine()}).",
        "",
        "| run | images | images per second | ratio |",
        "| --- | --- | --- | --- |",
        f"| Spark label job, whole run (start-up and Hive writes included) | "
        f"{small:,} | {spark_rate:.0f} | {spark_rate / single:.2f} |",
        f"| Spark label job, whole run | {middle:,} | {middle_rate:.0f} | "
        f"{middle_rate / single:.2f} |",
        f"| Spark label job, whole run | {large:,} | {large_rate:.0f} | "
        f"{large_rate / single:.2f} |",
        f"| Spark label job, the {large - small:,} images between the smallest and largest "
        f"runs (fixed costs cancel) | {large - small:,} | {marginal_rate:.0f} | "
        f"{marginal_rate / single:.2f} |",
        f"| one TensorFlow process, batches of 1,024, 2 threads, decode and predict only | "
        f"{small:,} | {single:.0f} | 1.00 |",
        "",
        f"Spark's fixed cost per run (start-up, planning, Hive writes) is about {fixed_s:.0f} s: "
        f"the {small:,}-image run minus its images at the marginal rate.",
        "",
        "| peak resident memory (MB) | " + " | ".join(f"{n:,} images" for n in sizes) + " |",
        "| --- | --- | --- | --- |",
        *[f"| {name} | " + " | ".join(f"{getattr(figures[n], field):.0f}" for n in sizes) + " |"
          for name, field in (("largest executor: its JVM and Python workers", "executor_mb"),
                              ("driver (Python)", "driver_mb"),
                              ("whole process tree: driver, its JVM, executors, Python "
                               "workers", "tree_mb"))],
    ]))


if __name__ == "__main__":
    main()
