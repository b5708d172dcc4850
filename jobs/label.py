"""Label images with a TF Hub classifier into Hive and score how real generated images look.

    spark-submit jobs/label.py --root /data/gan --generated generate-...      # a generate run
    spark-submit jobs/label.py --root /data/gan --dataset fashion-mnist --split test
    spark-submit jobs/label.py --root /data/gan --images hdfs:///photos --run-id photos-01

For a generate run, also writes one row of quality scores against the real test split and a
contact sheet of labelled images.
"""

import sys

from gan_lib import generation, inference, labelling, metrics, preprocessing, storage, tables
from gan_lib.config import ConfigError, validate_name
from gan_lib.runs import StageError, StageRun, new_run_id, run_dir, staging_folder
from jobs import common
from jobs.train_classifier import published_handle


def build_parser():
    parser = common.new_parser(
        "label", __doc__.splitlines()[0],
        run_id_help="id of this label run (default: label-<time> for --images, "
                    "<dataset>-<split> for --split; a --generated run's labels keep its id)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--generated", metavar="RUN_ID",
                        help="label the images of this generate run (and score them)")
    source.add_argument("--images", metavar="URI",
                        help="label this image file, or the files below this folder (names "
                             "starting with '.' or '_' left out, as Hadoop does)")
    source.add_argument("--split", help="label this split of --dataset (e.g. test)")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="dataset of --split, and the real images quality is scored against")
    parser.add_argument("--classifier", default=None,
                        help="TF Hub handle: a SavedModel folder (local, hdfs://, webhdfs://) or "
                             "a hub URL (default: <root>/models/<dataset>-classifier)")
    parser.add_argument("--top-k", type=common.positive_int, default=3,
                        help="labels with scores kept per image")
    return parser


# An empty --classifier stands for the published one (the Oozie workflow passes its empty
# property); an empty source would read as not given.
EMPTY_HINTS = {"images": "a folder of images", "split": "a split of --dataset, such as test",
               "generated": "the id of a generate run"}


def run(args, settings):
    for option, wanted in EMPTY_HINTS.items():
        value = getattr(args, option)
        if value is not None and not value.strip():  # "" would read as not given
            raise ConfigError(f"--{option} is empty; give {wanted}")
    if args.images and not storage.open_storage(args.images, settings).exists(args.images):
        raise ConfigError(f"--images {args.images} does not exist")
    if args.generated:
        images = generation.images_folder(settings, validate_name(args.generated, "--generated"))
        if not storage.open_storage(images, settings).exists(images):
            raise ConfigError(f"--generated {args.generated}: no images at {images} "
                              "(`hdp-gan runs --stage generate` lists the generate runs)")
    run_id, frame_source = _run_id(args)
    handle = args.classifier or published_handle(settings, args.dataset)
    try:
        classifier = inference.check_classifier(handle, settings)
    except inference.HandleError as error:
        raise ConfigError(str(error)) from None
    stage = StageRun("label", run_id, parameters=vars(args),
                     lineage={"classifier": handle, "source": frame_source})
    with common.spark_stage(settings, stage, f"hdp-gan label {run_id}", streaming=True) as spark:
        with staging_folder(settings, run_id) as staging:
            _label(spark, settings, args, stage, classifier, handle, run_id, frame_source,
                   staging)
        stage.record(spark, settings)
    return stage.summary()


def _label(spark, settings, args, stage, classifier, handle, run_id, frame_source, staging):
    if args.generated and classifier.features_fn is not None:
        _check_real_split(spark, settings, args.dataset)  # before the labels are replaced
    frame, kind = _source_frame(spark, settings, args)
    scored = labelling.score(spark, frame, kind, handle, settings,
                             storage.join(staging, "scored"), args.top_k,
                             vectors=bool(args.generated))  # only quality scores use them
    if args.generated:
        _check_generated_files(spark, settings, scored, run_id)
    stage.counts = labelling.count_statuses(scored)
    if stage.counts["labelled"] == 0:  # checked before the table is touched
        raise StageError(f"no image could be labelled in {frame_source}")
    labelling.write_labels(spark, settings, scored, run_id, classifier)
    sheet = labelling.contact_sheet_png(spark, settings, scored, frame)
    stage.outputs = {"table": tables.qualified(settings, "labels")}
    if sheet:
        sheet_uri = storage.join(run_dir(settings, run_id), "contact_sheet.png")
        storage.open_storage(sheet_uri, settings).write_bytes(sheet_uri, sheet)
        stage.outputs["contact_sheet"] = sheet_uri
    if args.generated:
        stage.outputs["quality"] = _score_quality(spark, settings, args, scored, classifier,
                                                  staging, run_id)


def _check_generated_files(spark, settings, scored, run_id):
    """Before the labels are replaced: the run's folder holds exactly the images its rows in
    the generated table name, pixel for pixel (a rerun stopped midway leaves other files)."""
    from pyspark.sql import functions as F

    rows = spark.sql(f"SELECT path, image_id FROM {tables.qualified(settings, 'generated')} "
                     f"WHERE run_id = {tables.sql_string(run_id)}")
    files = scored.select("path", F.col("image_id").alias("pixels_id"))
    differ = (files.join(rows, "path", "left_anti").count(),
              rows.join(files, "path", "left_anti").count(),
              files.join(rows, "path")
              .where(~F.col("pixels_id").eqNullSafe(F.col("image_id"))).count())
    if any(differ):
        extra, missing, changed = differ
        raise StageError(
            f"generate run {run_id}'s images do not match its rows in the generated table "
            f"({extra} files without a row, {missing} rows without a file, {changed} files "
            "that cannot be read or whose pixels differ from their row's; a rerun of it was "
            "stopped midway?): "
            "generate it again, then label it (its labels were left as they were)")


def _run_id(args):
    if args.generated:
        if args.run_id not in (None, args.generated):
            raise ConfigError(f"--run-id {args.run_id}: the labels and quality scores of a "
                              f"generate run are kept under its own id ({args.generated}); "
                              "leave --run-id out")
        return validate_name(args.generated, "--generated"), f"generate run {args.generated}"
    if args.split:
        name = args.run_id or f"{args.dataset}-{args.split}"
        return validate_name(name, "--run-id"), f"dataset {args.dataset} split {args.split}"
    return validate_name(args.run_id or new_run_id("label"), "--run-id"), args.images


def _source_frame(spark, settings, args):
    if args.generated:  # run() checked that the folder is there
        return labelling.files_frame(spark, generation.images_folder(settings, args.generated)), \
            "files"
    if args.images:
        return labelling.files_frame(spark, args.images), "files"
    _check_split(spark, settings, args.dataset, args.split)
    return labelling.table_frame(spark, settings, args.dataset, args.split), "table"


def _check_split(spark, settings, dataset, split):
    """A split the dataset does not have, named with those it has, before any image is read."""
    tables.ensure_tables(spark, settings, ["images"])
    listed = spark.sql(f"SHOW PARTITIONS {tables.qualified(settings, 'images')} PARTITION "
                       f"(dataset = {tables.sql_string(dataset)})").collect()
    splits = sorted(row[0].split("split=", 1)[1] for row in listed)
    if split not in splits:
        has = (f"has the splits {', '.join(splits)}" if splits
               else "is not in the images table (hdp-gan preprocess makes it)")
        raise StageError(f"dataset {dataset!r} has no split {split!r}: it {has}")


def _check_real_split(spark, settings, dataset):
    tables.ensure_tables(spark, settings, ["images"])
    found = spark.sql(f"SELECT 1 FROM {tables.qualified(settings, 'images')} "
                      f"WHERE dataset = {tables.sql_string(dataset)} AND split = 'test' "
                      "LIMIT 1").first()
    if found is None:
        raise StageError(f"dataset {dataset!r} has no test split to score against (its labels "
                         "were left as they were); preprocess it first or pass --dataset")


def _score_quality(spark, settings, args, scored, classifier, staging, run_id):
    import datetime as dt

    if classifier.features_fn is None:
        return "skipped: the classifier has no feature signature"
    real_frame = labelling.table_frame(spark, settings, args.dataset, "test")
    real = labelling.score(spark, real_frame, "table", classifier.handle, settings,
                           storage.join(staging, "real"), args.top_k)
    fake_probabilities, fake_features = labelling.gather_vectors(scored)
    if len(fake_probabilities) < 2:
        common.logger.warning("run %s has %d labelled image; the quality scores compare sets "
                              "of at least 2, so it gets no quality row", run_id,
                              len(fake_probabilities))
        return f"skipped: {len(fake_probabilities)} labelled image (at least 2 are needed)"
    real_probabilities, real_features = labelling.gather_vectors(real)
    if len(real_probabilities) < 2:
        raise StageError(f"dataset {args.dataset!r} has no test split to score against")
    scores = metrics.quality_scores(fake_probabilities, fake_features, real_probabilities,
                                    real_features, classifier.class_names)
    row = {**scores, "generator_run": _generator_run(spark, settings, run_id),
           "classifier_handle": classifier.handle,
           "scored_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
           "run_id": run_id}
    tables.write_partitions(spark, settings, "quality", tables.rows_frame(spark, "quality", [row]))
    return {key: scores[key] for key in ("frechet_distance", "classifier_score",
                                         "real_classifier_score", "kernel_distance",
                                         "largest_class_share", "mode_collapse",
                                         "mean_confidence")}


def _generator_run(spark, settings, run_id):
    row = spark.sql(f"SELECT first(generator_run) AS g FROM "
                    f"{tables.qualified(settings, 'generated')} "
                    f"WHERE run_id = {tables.sql_string(run_id)}").first()
    return row.g if row else None


def check_before_the_root(args, settings) -> None:
    """Before the root is made: the run id (not a generate run's), --images made absolute as
    preprocess makes --input (a plain path, or file: forms), and the root not inside it (it
    would be created there)."""
    run_id, _ = _run_id(args)
    if not args.generated and args.run_id:
        images = generation.images_folder(settings, run_id)
        if storage.open_storage(images, settings).exists(images):
            # a generate run's labels go with its quality row and contact sheet
            raise ConfigError(f"--run-id {run_id} is a generate run's id; label that run with "
                              f"--generated {run_id}, or give this run another id")
    if args.images:
        args.images = preprocessing.absolute_input(args.images, "--images")
        preprocessing.check_root_outside_input(settings, args.images, "--images")


def main(argv=None):
    return common.run_main(build_parser(), "label", run, argv, root="create",
                           check_first=check_before_the_root)


if __name__ == "__main__":
    sys.exit(main())
