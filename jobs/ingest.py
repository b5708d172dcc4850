"""Put a known dataset under the root as an image folder: ``raw/<dataset>/<split>/<label>/``.

    spark-submit jobs/ingest.py --root /data/gan [--source DIR] [--limit N]
"""

import sys

from gan_lib import datasets
from gan_lib.runs import StageRun, new_run_id
from jobs import common


def build_parser():
    parser = common.new_parser("ingest", __doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="name of the dataset folder under raw/")
    parser.add_argument("--source", default=datasets.FASHION_MNIST_DIR,
                        help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--limit", type=common.positive_int, default=None,
                        help="take only the first N images of each split (for quick tries)")
    return parser


def run(args, settings):
    run = StageRun("ingest", args.run_id or new_run_id("ingest"), parameters=vars(args))
    counts = datasets.ingest_fashion_mnist(settings, args.dataset, args.source, args.limit)
    run.counts = {"images": sum(counts.values()), "per_split": counts}
    run.outputs = {"raw": datasets.raw_dir(settings, args.dataset)}
    return run.summary()


def check_source(args, settings):
    """Before the root is made: a dataset name it can hold and a source with every file."""
    datasets.raw_dir(settings, args.dataset)
    datasets.check_fashion_mnist_source(args.source)


def main(argv=None):
    return common.run_main(build_parser(), "ingest", run, argv, root="create",
                           check_first=check_source)


if __name__ == "__main__":
    sys.exit(main())
