"""Recipe search: variants of the default DCGAN recipe for the same CPU budget.

Each variant (the default recipe with a network width, a batch size and, when given, a
learning rate for both networks' Adam) trains in its own
single-threaded process pinned to one core, two at a time on a 2-core machine, until it has
used ``--cpu-seconds`` of CPU time; then it draws 10,000 samples that the reference
classifier scores against the real test split, as in ``quality.py``. One thread per process
measures what each variant learns per CPU-second without thread overheads.

    python scripts/bench/recipe_search.py --classifier HANDLE [--cpu-seconds 600]
        [--variants 64x64,32x64,16x64,32x32]   (width x batch[@learning rate])
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402
from quality import Scorer, finish_training, reference_classifier, start_training  # noqa: E402

from gan_lib import models  # noqa: E402


def parse_variants(text: str) -> list[dict]:
    """``32x64,32x64@1e-3`` -> the Recipe fields each variant changes."""
    variants = []
    for item in text.split(","):
        shape, _, rate = item.partition("@")
        width, batch = (int(part) for part in shape.split("x"))
        variants.append({"width": width, "batch_size": batch,
                         **({"learning_rate": float(rate)} if rate else {})})
    return variants


def variant_name(changes: dict) -> str:
    name = f"{changes['width']}x{changes['batch_size']}"
    return f"{name}@{changes['learning_rate']:g}" if "learning_rate" in changes else name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-seconds", type=float, default=600)
    parser.add_argument("--classifier", default=None, help="classifier handle to score with")
    parser.add_argument("--variants", type=parse_variants,
                        default=parse_variants("64x64,32x64,16x64,32x32"))
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))

    rows = []
    with tempfile.TemporaryDirectory(prefix="recipe-search-") as scratch:
        scratch = Path(scratch)
        handle = reference_classifier(args.classifier, scratch)
        runs = {}
        for first in range(0, len(args.variants), len(cores)):
            started = {}
            for core, changes in zip(cores, args.variants[first:first + len(cores)]):
                name = variant_name(changes)
                started[name] = start_training(
                    "dcgan", args.cpu_seconds, scratch / f"{name}.npy", changes, threads=1,
                    core=core)
            for name, process in started.items():
                runs[name] = finish_training(process, name)
                print(name, runs[name], flush=True)
        scorer = Scorer(handle)
        default_rate = models.RECIPES["dcgan"].learning_rate
        for changes in args.variants:
            name = variant_name(changes)
            scores = scorer.score(np.load(scratch / f"{name}.npy"))
            rate = changes.get("learning_rate", default_rate)
            rows.append(f"| {changes['width']} | {changes['batch_size']} | {rate:g} | "
                        f"{runs[name]['steps']:,} | "
                        f"{runs[name]['images_seen']:,} | {scores['frechet']:.2f} | "
                        f"{scores['score']:.2f} |")

    lines = [
        "## Recipe search: variants of the default recipe for the same CPU budget",
        "",
        f"Command: `{command_line()}` ({machine()}). Each variant trained in one "
        f"single-threaded process pinned to a core until it had used {args.cpu_seconds:.0f} "
        "CPU-seconds, then drew 10,000 samples; the reference classifier scored them against "
        f"the 10,000 real test images (classifier score {scorer.real_score:.2f}). One run "
        "per variant.",
        "",
        "| width | batch | learning rate | steps | images seen | Frechet distance "
        "| classifier score |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ]
    write_section("recipe_search", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
