"""Draw images from a trained generator, spread over Spark partitions, reproducibly.

    spark-submit jobs/generate.py --root /data/gan --generator-run train-... --count 1000

Writes PNG files under runs/<run_id>/images/ and their rows to the generated table.
"""

import itertools
import sys

from gan_lib import generation, report, storage, tables
from gan_lib.config import ConfigError, validate_name
from gan_lib.runs import StageError, StageRun, new_run_id, run_dir
from jobs import common


def build_parser():
    parser = common.new_parser("generate", __doc__.splitlines()[0])
    parser.add_argument("--generator-run", required=True,
                        help="run id of the training run whose exported generator to use")
    parser.add_argument("--count", type=common.positive_int, default=1000,
                        help="images to generate")
    parser.add_argument("--partitions", type=common.positive_int, default=None,
                        help="Spark partitions (default: 2 per executor)")
    parser.add_argument("--seed", type=common.seed_int, default=2024,
                        help="seed: the same seed, count and partitions give the same images")
    return parser


def run(args, settings):
    if args.partitions and args.partitions > args.count:
        raise ConfigError(f"--partitions {args.partitions} is more than --count {args.count}: "
                          "some partitions would draw no image; give at most --count")
    train_run = validate_name(args.generator_run, "--generator-run")
    generator_uri = storage.join(run_dir(settings, train_run), "generator")
    store = storage.open_storage(generator_uri, settings)
    if not store.exists(run_dir(settings, train_run)):
        raise ConfigError(f"--generator-run {train_run}: there is no run {train_run} under "
                          f"{storage.join(settings.root, 'runs')} (`hdp-gan runs --stage train` "
                          "lists the training runs)")
    if not store.exists(generator_uri):
        raise StageError(f"run {train_run} has no exported generator at {generator_uri}; "
                         "train it to the end first")
    run_id = validate_name(args.run_id or new_run_id("generate"), "--run-id")
    images_uri = generation.images_folder(settings, run_id)
    redrawn = storage.open_storage(images_uri, settings).exists(images_uri)
    partitions = args.partitions or min(2 * settings.executors, args.count)
    stage = StageRun("generate", run_id, parameters=vars(args),
                     lineage={"generator_run": train_run, "generator": generator_uri})
    with common.spark_stage(settings, stage, f"hdp-gan generate {run_id}", streaming=True) as spark:
        counts = generation.partition_counts(args.count, partitions)
        starts = [0, *itertools.accumulate(counts[:-1])]
        seed = args.seed

        def draw(partition, _rows):
            return generation.generate_partition(partition, starts[partition], counts[partition],
                                                 seed, generator_uri, images_uri, settings)

        rows = spark.sparkContext.parallelize(range(partitions), partitions) \
            .mapPartitionsWithIndex(draw)
        schema = "image_id STRING, seed BIGINT, sample_index BIGINT, path STRING"
        frame = spark.createDataFrame(rows, schema=schema)
        from pyspark.sql import functions as F
        frame = frame.withColumn("generator_run", F.lit(train_run)) \
            .withColumn("run_id", F.lit(run_id))
        tables.write_partitions(spark, settings, "generated", frame)
        written = spark.sql(f"SELECT count(*) AS n FROM {tables.qualified(settings, 'generated')}"
                            f" WHERE run_id = {tables.sql_string(run_id)}").first().n
        if written != args.count:
            raise StageError(f"generated {written} rows but {args.count} were asked for")
        generation.remove_stale_images(images_uri, args.count, settings)
        if redrawn:
            _forget_earlier_labels(spark, settings, run_id)
        stage.counts = {"images": written, "partitions": partitions}
        stage.outputs = {"images": images_uri, "table": tables.qualified(settings, "generated")}
        stage.record(spark, settings)
    return stage.summary()


def _forget_earlier_labels(spark, settings, run_id) -> None:
    """A rerun of a generate run id draws new images: the labels, quality row, label run row,
    contact sheet and report of the earlier images would be read as this run's."""
    dropped = [what for what, table, partition in (
        ("labels", "labels", {"run_id": run_id}),
        ("quality row", "quality", {"run_id": run_id}),
        ("label run row", "runs", {"stage": "label", "run_id": run_id}))
        if tables.drop_partitions_except(spark, settings, table, partition, keep=[])]
    folder = run_dir(settings, run_id)
    store = storage.open_storage(folder, settings)
    for name in ("contact_sheet.png", report.REPORT_FOLDER):
        if store.exists(storage.join(folder, name)):
            store.delete(storage.join(folder, name))
            dropped.append(name)
    if dropped:
        common.logger.info("removed what described the earlier images of run %s (%s): "
                           "label it again with hdp-gan label --generated %s", run_id,
                           ", ".join(dropped), run_id)


def main(argv=None):
    return common.run_main(build_parser(), "generate", run, argv, root="create")


if __name__ == "__main__":
    sys.exit(main())
