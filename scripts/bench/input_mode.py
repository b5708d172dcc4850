"""Training input: the two ways TensorFlowOnSpark can bring the images to the nodes.

* InputMode.TENSORFLOW, what ``hdp-gan train`` uses: each node reads the Parquet split itself
  once (``gan_lib.datasets.load_split``) and cuts its batches from memory every epoch.
* InputMode.SPARK: the rows of the images table, read and cached once in Spark, are pushed
  every epoch through TensorFlowOnSpark's queues to the nodes (``TFNode.DataFeed``), the best
  case for this mode.

Both run on the training session's settings (``local-cluster[2,1,2048]``, two nodes) and hand
the same number of epochs of per-node batches, in the model's value range, to a node
function that does not train: the figure is the cost of the input alone. Timed, in wall time
and in CPU time (the machine's busy time without steal; run it on a quiet machine), is the
TensorFlowOnSpark run: from starting the nodes to their shutdown, the same steps in both
modes but the feed.

    python scripts/bench/input_mode.py [--images 60000] [--epochs 2] [--batch-size 64]
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


def _busy_cpu_s() -> float:
    """CPU seconds this machine has spent busy since boot, time stolen by other virtual
    machines left out (on a quiet machine the difference across a run is the run's own)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def tensorflow_mode_node(args, ctx):
    """Read the split once, then cut every epoch's batches from memory."""
    import numpy as np
    from gan_lib import datasets, training

    started = time.monotonic()
    images, _ = datasets.load_split(args["settings"], args["dataset"], "train")
    images = images[:args["images"]]
    loaded = time.monotonic()
    rank, nodes = ctx.task_index + (0 if ctx.job_name == "chief" else 1), args["nodes"]
    per_node = args["batch_size"] // nodes
    delivered = 0
    for epoch in range(args["epochs"]):
        indices = training.shard_indices(len(images), rank, nodes, epoch, 0)
        for step in range(len(images) // args["batch_size"]):
            chosen = np.sort(indices[step * per_node:(step + 1) * per_node])
            delivered += len(training.to_model_range(images[chosen]))
    _report(args, rank, {"load_s": loaded - started, "batches_s": time.monotonic() - loaded,
                         "images": delivered})


def spark_mode_node(args, ctx):
    """Take batches from the Spark feed until it ends."""
    import numpy as np
    from tensorflowonspark import TFNode
    from gan_lib import training

    rank = ctx.task_index + (0 if ctx.job_name == "chief" else 1)
    feed = TFNode.DataFeed(ctx.mgr, train_mode=True)
    per_node = args["batch_size"] // args["nodes"]
    shape = tuple(args["shape"])
    delivered, first = 0, None
    while not feed.should_stop():
        rows = feed.next_batch(per_node)
        if not rows:
            break
        first = first or time.monotonic()
        batch = np.stack([np.frombuffer(row[0], np.uint8).reshape(shape) for row in rows])
        delivered += len(training.to_model_range(batch))
    _report(args, rank, {"feed_s": time.monotonic() - (first or time.monotonic()),
                         "images": delivered})


def _report(args, rank, values):
    Path(args["report_dir"], f"rank-{rank}.json").write_text(json.dumps(values))


def run_mode(mode: str, root: Path, report_dir: Path, images: int, epochs: int,
             batch_size: int) -> None:
    """One mode, in this process (started by ``main`` as a measured subprocess)."""
    from tensorflowonspark import TFCluster
    from gan_lib import cluster, session, tables
    from gan_lib.config import settings_from

    settings = settings_from({"root": str(root)})
    spark = session.build_session(settings, f"input mode {mode}", training=True)
    cluster.preflight(spark.sparkContext, settings.executors)
    cluster._patch_library()
    os.environ.setdefault("TFOS_SERVER_HOST", "127.0.0.1")
    table = spark.sql(f"SELECT pixels, height, width, channels FROM "
                      f"{tables.qualified(settings, 'images')} WHERE dataset = 'fashion-mnist' "
                      f"AND split = 'train' ORDER BY image_id LIMIT {images}")
    first = table.first()
    args = {"settings": settings, "dataset": "fashion-mnist", "images": images,
            "epochs": epochs, "batch_size": batch_size, "nodes": settings.executors,
            "report_dir": str(report_dir), "shape": (first.height, first.width, first.channels)}
    started, busy = time.monotonic(), _busy_cpu_s()
    if mode == "tensorflow":
        nodes = TFCluster.run(spark.sparkContext, tensorflow_mode_node, args,
                              settings.executors, 0, False, TFCluster.InputMode.TENSORFLOW,
                              master_node="chief")
        nodes.shutdown(timeout=-1)
    else:
        rows = table.select("pixels").rdd.map(lambda row: (bytes(row.pixels),))
        rows = rows.repartition(settings.executors * 4).cache()
        rows.count()  # the table read is not the feed's cost: it is done once, here
        started, busy = time.monotonic(), _busy_cpu_s()
        nodes = TFCluster.run(spark.sparkContext, spark_mode_node, args, settings.executors, 0,
                              False, TFCluster.InputMode.SPARK, master_node="chief")
        nodes.train(rows, num_epochs=epochs)
        nodes.shutdown(timeout=-1)
    print(json.dumps({"mode": mode, "wall_s": time.monotonic() - started,
                      "cpu_s": _busy_cpu_s() - busy}))
    spark.stop()




def measure(mode: str, root: Path, workdir: Path, args) -> dict:
    report_dir = workdir / f"input-{mode}"
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)
    command = [sys.executable, __file__, "--run-mode", mode, "--root", str(root), "--report-dir",
               str(report_dir), "--images", str(args.images), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size)]
    run = run_measured(command, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    nodes = [json.loads(path.read_text()) for path in sorted(report_dir.glob("rank-*.json"))]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return {"mode": mode, "job_s": run.seconds, "run_s": result["wall_s"], "nodes": nodes,
            "cpu_s": result["cpu_s"], "tree_mb": run.tree_mb}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/hdp-gan-bench")
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--run-mode", choices=("tensorflow", "spark"), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--report-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_mode:
        return run_mode(args.run_mode, Path(args.root), Path(args.report_dir), args.images,
                        args.epochs, args.batch_size)

    workdir = Path(args.workdir)
    root = workdir / "root-input-mode"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        hdp_gan = [sys.executable, "-m", "jobs.cli"]
        for stage in (["ingest", "--limit", str(args.images)], ["preprocess"]):
            subprocess.run(hdp_gan + stage[:1] + ["--root", str(root)] + stage[1:], cwd=REPO,
                           check=True, stdout=subprocess.DEVNULL)
        (root / ".complete").touch()

    results = [measure(mode, root, workdir, args) for mode in ("tensorflow", "spark")]
    for result in results:
        print(json.dumps(result))
    tf_mode, spark_mode = results
    lines = [
        "## Training input: TENSORFLOW against SPARK input mode",
        "",
        f"Command: `{command_line()}` ({machine()}). Two TensorFlowOnSpark nodes on "
        f"`local-cluster[2,1,2048]` take {args.epochs} epochs of per-node batches (global batch "
        f"{args.batch_size}) of {args.images:,} Fashion-MNIST images, in the model's value "
        "range, without training on them.",
        "",
        "| input mode | how the images arrive | whole job (s) | TFoS run (s) | its busy CPU "
        "(s) | per node |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| TENSORFLOW (used) | each node reads the Parquet split once | "
        f"{tf_mode['job_s']:.1f} | {tf_mode['run_s']:.1f} | {tf_mode['cpu_s']:.1f} | "
        + "; ".join(f"read {n['load_s']:.1f} s, batches {n['batches_s']:.2f} s"
                    for n in tf_mode["nodes"]) + " |",
        f"| SPARK | rows cached once in Spark, fed every epoch | {spark_mode['job_s']:.1f} | "
        f"{spark_mode['run_s']:.1f} | {spark_mode['cpu_s']:.1f} | "
        + "; ".join(f"fed {n['images']:,} images in {n['feed_s']:.1f} s"
                    for n in spark_mode["nodes"]) + f" (over {args.epochs} epochs) |",
    ]
    extra = (spark_mode["cpu_s"] - tf_mode["cpu_s"]) / args.epochs
    lines += [
        "",
        f"One run of each mode. Feeding through Spark cost {extra:.0f} more CPU-seconds per "
        f"epoch of {args.images:,} images than reading the split once, on the same two cores "
        "the training runs on; reading it took each node "
        f"{max(n['load_s'] for n in tf_mode['nodes']):.1f} s once per run (from local disk; on "
        "HDFS each node first downloads the split). The job therefore uses "
        "InputMode.TENSORFLOW. Two more reasons make the choice firm: every node cuts its "
        "batches from one shuffled order, so all nodes run the same number of synchronous "
        "steps (a Spark feed can hand nodes unequal partitions, and a node that runs out "
        "first leaves the others waiting in a collective), and a resumed run starts at an "
        "exact epoch and step without replaying a feed.",
    ]
    write_section("input_mode", "\n".join(lines))


if __name__ == "__main__":
    main()
