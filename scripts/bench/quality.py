"""Quality for the same compute: the default DCGAN recipe against the TensorFlow tutorial's.

Each recipe trains in its own process on the 60,000 Fashion-MNIST training images until the
process has used ``--cpu-seconds`` of CPU time (all threads counted), then draws 10,000
samples. The reference classifier (trained here on the training split, or given with
``--classifier``) scores both sample sets and the 10,000 real test images: Frechet distance
on its features, classifier score beside the real split's.

    python scripts/bench/quality.py [--cpu-seconds 600] [--classifier HANDLE]
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
import json, sys, time, numpy as np, tensorflow as tf
from gan_lib import datasets, models, training
recipe, budget, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
pixels = datasets.load_fashion_mnist(split="train")[0][:, :, :, None]
options = training.TrainOptions(run_id="q", run_uri="file:///tmp/q", dataset="q", settings=None,
                                recipe=recipe)
strategy = tf.distribute.MultiWorkerMirroredStrategy()
trainer = training.GanTrainer(strategy, options, pixels.shape[1:], models.RECIPES[recipe])
batch = trainer.global_batch
rng = np.random.default_rng(0)
start_cpu, steps, epoch = time.process_time(), 0, 0
while time.process_time() - start_cpu < budget:
    order = rng.permutation(len(pixels))
    for first in range(0, len(order) - batch + 1, batch):
        chosen = pixels[np.sort(order[first:first + batch])]
        trainer.step(tf.constant(training.to_model_range(chosen)))
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


def train_recipe(recipe: str, cpu_seconds: float, out: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", TRAIN_ONE, recipe, str(cpu_seconds), str(out)],
                            cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0:
        raise SystemExit(f"training the {recipe} recipe failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-seconds", type=float, default=600)
    parser.add_argument("--classifier", default=None, help="classifier handle to score with")
    args = parser.parse_args()
    from gan_lib import datasets, inference, metrics

    with tempfile.TemporaryDirectory(prefix="quality-") as scratch:
        scratch = Path(scratch)
        handle = reference_classifier(args.classifier, scratch)
        runs = {}
        for recipe in ("dcgan", "tutorial"):
            runs[recipe] = train_recipe(recipe, args.cpu_seconds, scratch / f"{recipe}.npy")
            print(recipe, runs[recipe], flush=True)
        model = inference.load_classifier(handle)
        real = datasets.load_fashion_mnist(split="test")[0][..., None]
        real_probabilities, real_features = model.predict(real)
        scores = {}
        for recipe in runs:
            fake = np.load(scratch / f"{recipe}.npy")
            probabilities, features = model.predict(fake)
            scores[recipe] = {
                "frechet": metrics.frechet_distance(features, real_features),
                "score": metrics.classifier_score(probabilities)}
        real_score = metrics.classifier_score(real_probabilities)

    ratio = scores["tutorial"]["frechet"] / scores["dcgan"]["frechet"]
    lines = [
        "## Quality for the same compute: default recipe against the TF tutorial's",
        "",
        f"Command: `{command_line()}` ({machine()}). Each recipe trained in one process until "
        f"it had used {args.cpu_seconds:.0f} CPU-seconds (all threads), then drew 10,000 "
        "samples; the reference classifier scored them against the 10,000 real test images.",
        "",
        "| recipe | steps | images seen | Frechet distance | classifier score "
        "| share of real score |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for recipe, run in runs.items():
        lines.append(f"| {recipe} | {run['steps']:,} | {run['images_seen']:,} | "
                     f"{scores[recipe]['frechet']:.2f} | {scores[recipe]['score']:.2f} | "
                     f"{scores[recipe]['score'] / real_score:.2f} |")
    lines += ["", f"Real test split: classifier score {real_score:.2f}. The tutorial's Frechet "
              f"distance is {ratio:.1f} times the default recipe's."]
    write_section("quality", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
