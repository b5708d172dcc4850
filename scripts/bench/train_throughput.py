"""Training throughput: the TensorFlowOnSpark job (2 workers of one core each) against one
TensorFlow process with 2 threads, same model, same global batch, same images.

Both run the project's training step (``gan_lib.training.GanTrainer``). The job's figure is
the images per second of its last epoch as the chief measured it (after start-up); the single
process is measured over the same number of steps after a warm-up. The job runs twice: as
users get it (each node pinned to its own core, the default on this machine) and with
``--no-pin-cores``. The job and the single process also run once with XLA off
(``--no-xla``), which shows what compiling the step gains on either side.

    python scripts/bench/train_throughput.py [--images 12800] [--epochs 3] [--batch-size 64]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, machine, run_measured, write_section  # noqa: E402


def single_process(images: int, batch_size: int, steps: int, xla: bool = True) -> float:
    """Images per second of the same step in one process with 2 threads."""
    code = f"""
import time, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
from gan_lib import datasets, models, training
pixels, labels = datasets.load_fashion_mnist(split="train")
pixels, labels = pixels[:{images}, :, :, None], labels[:{images}]
options = training.TrainOptions(run_id="b", run_uri="file:///tmp/b", dataset="b", settings=None,
                                batch_size={batch_size}, xla={xla})
strategy = tf.distribute.MultiWorkerMirroredStrategy()
trainer = training.GanTrainer(strategy, options, pixels.shape[1:], models.RECIPES["dcgan"],
                              training.class_count(labels))
rng = np.random.default_rng(0)
def batch():
    chosen = np.sort(rng.choice({images}, {batch_size}, replace=False))
    return tf.constant(training.to_model_range(pixels[chosen])), tf.constant(labels[chosen])
for _ in range(20):
    trainer.step(*batch())
started = time.monotonic()
for _ in range({steps}):
    trainer.step(*batch())
print({steps} * {batch_size} / (time.monotonic() - started))
"""
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return float(output.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/hdp-gan-bench")
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    root = Path(args.workdir) / "root-train"
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    hdp_gan = [sys.executable, "-m", "jobs.cli"]
    run_measured(hdp_gan + ["ingest", "--root", str(root), "--limit", str(args.images)])
    run_measured(hdp_gan + ["preprocess", "--root", str(root)])

    def job(*extra):
        stdout = run_measured(hdp_gan + [
            "train", "--root", str(root), "--epochs", str(args.epochs), "--max-images",
            str(args.images), "--batch-size", str(args.batch_size), "--log-every", "1000",
            *extra]).stdout
        run_id = json.loads(stdout.strip().splitlines()[-1])["run_id"]
        history = [json.loads(line) for line in
                   (root / "runs" / run_id / "metrics.jsonl").read_text().splitlines()]
        return history[-1]["images_per_second"]

    distributed = job()
    unpinned = job("--no-pin-cores")
    distributed_plain = job("--no-xla")
    steps = args.images // args.batch_size
    single = single_process(args.images, args.batch_size, steps)
    single_plain = single_process(args.images, args.batch_size, steps, xla=False)
    print(f"TFoS {distributed:.0f} images/s ({unpinned:.0f} unpinned), single process "
          f"{single:.0f} images/s, ratio {distributed / single:.2f}")
    write_section("train_throughput", "\n".join([
        "## Training throughput: TensorFlowOnSpark against one process",
        "",
        f"Command: `{command_line()}` ({machine()}).",
        "",
        "| run | workers | images per second | ratio |",
        "| --- | --- | --- | --- |",
        f"| TFoS job, `local-cluster[2,1,2048]`, last of {args.epochs} epochs | 2 x 1 core | "
        f"{distributed:.0f} | {distributed / single:.2f} |",
        f"| the same, `--no-pin-cores` | 2 x 1 core | {unpinned:.0f} | "
        f"{unpinned / single:.2f} |",
        f"| one TensorFlow process, 2 threads, {steps} steps after 20 warm-up steps | 1 x 2 "
        f"threads | {single:.0f} | 1.00 |",
        f"| TFoS job, `--no-xla` | 2 x 1 core | {distributed_plain:.0f} | "
        f"{distributed_plain / single:.2f} |",
        f"| one process, `xla=False` | 1 x 2 threads | {single_plain:.0f} | "
        f"{single_plain / single:.2f} |",
        "",
        f"Model: the default `dcgan` recipe at 28x28x1, conditioned on the ten classes as "
        f"the job trains it on Fashion-MNIST, global batch {args.batch_size}, "
        f"{args.images:,} Fashion-MNIST images. Ratios are to the single process with XLA; "
        f"XLA made the job {distributed / distributed_plain:.2f} times and the single process "
        f"{single / single_plain:.2f} times as fast.",
    ]))


if __name__ == "__main__":
    main()
