"""Validate, decode and normalize an image folder into a Parquet dataset with Hive tables.

    spark-submit jobs/preprocess.py --root /data/gan --dataset fashion-mnist \
        [--input URI] [--image-size 28] [--channels 1]

Bad files never fail the job: each goes to the rejects table with its reason.
"""

import sys

from gan_lib import datasets, models, preprocessing, runs
from gan_lib.runs import StageRun, new_run_id
from jobs import common


def build_parser():
    parser = common.new_parser("preprocess", __doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None,
                        help="dataset name in the tables; name it when --input holds other "
                             "images (default: fashion-mnist)")
    parser.add_argument("--input", default=None,
                        help="image folder (default: <root>/raw/<dataset>); sub-folder names "
                             "become labels, train/test folders become splits")
    parser.add_argument("--image-size", type=common.positive_int, default=28,
                        help="output height and width in pixels")
    parser.add_argument("--channels", type=int, default=1, help="1 (grayscale) or 3 (RGB)")
    parser.add_argument("--max-pixels", type=common.positive_int, default=50_000_000,
                        help="reject images with more pixels than this (image bombs)")
    parser.add_argument("--max-file-bytes", type=common.positive_int,
                        default=preprocessing.DEFAULT_MAX_FILE_BYTES,
                        help="reject files larger than this without reading them (at most "
                             f"{preprocessing.SPARK_MAX_FILE_BYTES}, the largest file Spark reads;"
                             " raise it with --executor-memory-mb: an executor holds a file "
                             "several times over while reading it)")
    parser.add_argument("--min-size", type=common.positive_int, default=8,
                        help="reject images whose shorter side is below this")
    parser.add_argument("--test-percent", type=common.non_negative_int, default=10,
                        help="share of images put in the test split when folders give none")
    return parser


def options_of(args, settings) -> preprocessing.PreprocessOptions:
    dataset = args.dataset or datasets.DEFAULT_DATASET
    return preprocessing.PreprocessOptions(
        input_uri=preprocessing.absolute_input(args.input or datasets.raw_dir(settings, dataset)),
        dataset=dataset,
        image_size=args.image_size, channels=args.channels, max_pixels=args.max_pixels,
        min_size=args.min_size, test_percent=args.test_percent,
        max_file_bytes=args.max_file_bytes)


def check_root_outside_input(args, settings) -> None:
    """Before the root is made: a root inside the input would be created there first."""
    preprocessing.check_root_outside_input(settings, options_of(args, settings).input_uri)


def run(args, settings):
    options = options_of(args, settings)
    preprocessing.check_before_spark(settings, options)
    if options.image_size not in models.SUPPORTED_SIZES:
        sizes = ", ".join(str(size) for size in sorted(models.SUPPORTED_SIZES))
        common.logger.warning("--image-size %d: the DCGAN trains on %s pixels only; a dataset "
                              "of this size can be labelled, not trained on",
                              options.image_size, sizes)
    if args.dataset is None:
        preprocessing.check_not_replaced_unnamed(settings, options.dataset, options.input_uri)
    run = StageRun("preprocess", args.run_id or new_run_id("preprocess"),
                   parameters=preprocessing.parameters(options),
                   lineage={"input": options.input_uri})
    with runs.dataset_lease(settings, options.dataset, "preprocess"), \
            common.spark_stage(settings, run, f"hdp-gan preprocess {options.dataset}") as spark:
        run.counts, label_names = preprocessing.preprocess(spark, settings, options, run)
        run.outputs = {"dataset": options.dataset, "label_names": label_names} | {
            split: datasets.dataset_location(settings, options.dataset, split)
            for split in sorted(run.counts["per_split"])}
        run.record(spark, settings)
    return run.summary()


def main(argv=None):
    return common.run_main(build_parser(), "preprocess", run, argv, root="create",
                           check_first=check_root_outside_input)


if __name__ == "__main__":
    sys.exit(main())
