"""Quality for the same compute: the default DCGAN recipe against the TensorFlow tutorial's.

Each recipe trains in its own process on the 60,000 Fashion-MNIST training images until the
process has used ``--cpu-seconds`` of CPU time (all threads counted), then draws 10,000
samples. The default and the tutorial's recipe run side by side, each with ``--threads``
TensorFlow threads (1 by default, as each of the training job's one-core workers runs) and
pinned to its own core when there are two cores or more; then the default recipe without
the class labels (``--no-conditional``) runs alone, so that the table shows what the labels
bring. The reference classifier (trained here on the training split, or given with
``--classifier``) scores every sample set and the 10,000 real test images: Frechet distance
on its features, classifier score beside the real split's.

    python scripts/bench/quality.py [--cpu-seconds 600] [--classifier HANDLE] [--threads 1]
                                    [--skip-unconditional]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, machine, write_section  # noqa: E402

TRAIN_ONE = """
import dataclasses, json, sys, time, numpy as np, tensorflow as tf
from gan_lib import datasets, models, training
recipe, budget, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
changes, threads = json.loads(sys.argv[4]), int(sys.argv[5])
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
pixels, labels = datasets.load_fashion_mnist(split="train")
pixels = pixels[:, :, :, None]
options = training.TrainOptions(run_id="q", run_uri="file:///tmp/q", dataset="q", settings=None,
                                recipe=recipe)
strategy = tf.distribute.MultiWorkerMirroredStrategy()
trainer = training.GanTrainer(strategy, options, pixels.shape[1:],
                              dataclasses.replace(models.RECIPES[recipe], **changes),
                              training.class_count(labels))
batch = trainer.global_batch
rng = np.random.default_rng(0)
start_cpu, steps, epoch = time.process_time(), 0, 0
while time.process_time() - start_cpu < budget:
    order = rng.permutation(len(pixels))
    for first in range(0, len(order) - batch + 1, batch):
        chosen = np.sort(order[first:first + batch])
        trainer.step(tf.constant(training.to_model_range(pixels[chosen])),
                     tf.constant(labels[chosen]))
        steps += 1
        if time.process_time() - start_cpu >= budget:
            break
    epoch += 1
noise = np.random.default_rng(1).standard_normal((10000, options.latent_dim)).astype(np.float32)
samples = np.concatenate([trainer.samples(noise[i:i + 500]) for i in range(0, 10000, 500)])
np.save(out, samples)
print(json.dumps({"steps": steps, "images_seen": steps * batch,
                  "cpu_seconds": time.process_time() - start_cpu}))
"""


def start_training(recipe: str, cpu_seconds: float, out: Path, changes=None, threads=0,
                   core=None):
    """Train a recipe (with ``changes`` to its fields) in its own process, with ``threads``
    TensorFlow threads (0: TensorFlow's default) and pinned to ``core`` when given; returns
    the running process."""
    command = [sys.executable, "-c", TRAIN_ONE, recipe, str(cpu_seconds), str(out),
               json.dumps(changes or {}), str(threads)]
    if core is not None:
        command = ["taskset", "-c", str(core)] + command
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def finish_training(process, name: str) -> dict:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"training {name} failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


class Scorer:
    """The reference classifier's view of sample sets against the real test split."""

    def __init__(self, handle: str):
        from gan_lib import datasets, inference, metrics
        self.metrics = metrics
        self.model = inference.load_classifier(handle)
        real = datasets.load_fashion_mnist(split="test")[0][..., None]
        real_probabilities, self.real_features = self.model.predict(real)
        self.real_score = metrics.classifier_score(real_probabilities)

    def score(self, samples: np.ndarray) -> dict:
        probabilities, features = self.model.predict(samples)
        return {"frechet": self.metrics.frechet_distance(features, self.real_features),
                "score": self.metrics.classifier_score(probabilities)}


def reference_classifier(handle: str | None, folder: Path) -> str:
    if handle:
        return handle
    from gan_lib import classifier, datasets
    train_images, train_labels = datasets.load_fashion_mnist(split="train")
    test_images, test_labels = datasets.load_fashion_mnist(split="test")
    model, accuracy = classifier.train(train_images[..., None], train_labels,
                                       test_images[..., None], test_labels, 10, epochs=5)
    names = list(datasets.FASHION_MNIST_CLASSES)  # IDX label order
    destination = (folder / "classifier").as_uri()
    classifier.export(model, names, destination, "benchmark", accuracy)
    print(f"reference classifier test accuracy {accuracy:.4f}", flush=True)
    return destination


def threads_used(threads: int) -> str:
    if threads == 0:
        return "with TensorFlow's default threads"
    if threads == 1:
        return "with one TensorFlow thread on its own core"
    return f"with {threads} TensorFlow threads"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-seconds", type=float, default=600)
    parser.add_argument("--classifier", default=None, help="classifier handle to score with")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow threads per training process (0: TensorFlow's default)")
    parser.add_argument("--skip-unconditional", action="store_true",
                        help="leave out the third run, the default recipe without labels")
    args = parser.parse_args()
    # (name, recipe, changes to its fields); the first two run side by side, the third after.
    variants = [("dcgan", "dcgan", {}), ("tutorial", "tutorial", {})]
    if not args.skip_unconditional:
        variants.append(("dcgan, unconditional", "dcgan", {"conditional": False}))
    cores = sorted(os.sched_getaffinity(0))
    side_by_side = 2
    pinned = cores[:side_by_side] if args.threads == 1 and len(cores) >= side_by_side else [None]
    with tempfile.TemporaryDirectory(prefix="quality-") as scratch:
        scratch = Path(scratch)
        handle = reference_classifier(args.classifier, scratch)
        runs = {}
        for first in range(0, len(variants), side_by_side):
            started = {
                name: start_training(recipe, args.cpu_seconds, scratch / f"{index}.npy",
                                     changes, threads=args.threads,
                                     core=pinned[index % len(pinned)])
                for index, (name, recipe, changes) in enumerate(variants)
                if first <= index < first + side_by_side}
            for name, process in started.items():
                runs[name] = finish_training(process, name)
                print(name, runs[name], flush=True)
        scorer = Scorer(handle)
        scores = {name: scorer.score(np.load(scratch / f"{index}.npy"))
                  for index, (name, _, _) in enumerate(variants)}
        real_score = scorer.real_score

    ratio = scores["tutorial"]["frechet"] / scores["dcgan"]["frechet"]
    lines = [
        "## Quality for the same compute: default recipe against the TF tutorial's",
        "",
        f"Command: `{command_line()}` ({machine()}). Each recipe trained in its own process, "
        f"{threads_used(args.threads)}, two side by side, until it had used "
        f"{args.cpu_seconds:.0f} CPU-seconds (all threads), then drew 10,000 samples; the "
        "reference classifier scored them against the 10,000 real test images. The default "
        "recipe conditions both networks on Fashion-MNIST's ten classes, which the tutorial's "
        "does not use; `dcgan, unconditional` (run after the other two, alone) is the default "
        "recipe with the labels left out (`--no-conditional`).",
        "",
        "| recipe | steps | images seen | Frechet distance | classifier score "
        "| share of real score |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        lines.append(f"| {name} | {run['steps']:,} | {run['images_seen']:,} | "
                     f"{scores[name]['frechet']:.2f} | {scores[name]['score']:.2f} | "
                     f"{scores[name]['score'] / real_score:.2f} |")
    lines += ["", f"Real test split: classifier score {real_score:.2f}. The tutorial's Frechet "
              f"distance is {ratio:.1f} times the default recipe's."]
    write_section("quality", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
