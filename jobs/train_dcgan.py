"""Train the DCGAN with TensorFlowOnSpark: one TensorFlow node per executor, in lock step.

    spark-submit jobs/train_dcgan.py --root /data/gan --dataset fashion-mnist --epochs 2
    spark-submit jobs/train_dcgan.py --root /data/gan --resume train-20260101T000000-ab12cd

Outputs under runs/<run_id>/: checkpoints, sample grids per epoch, a GIF, the loss curve
and the generator exported as a SavedModel. Training an existing run id afresh (without
--resume) first removes the outputs of its earlier training. A resumed run takes the options
not given again from its checkpoint; one stopped after its last epoch, before it exported its
generator, is finished by --resume without training another epoch.
"""

import argparse
import sys

from gan_lib import cluster, models, report, session, storage, tables, training
from gan_lib.config import ConfigError, redact_url, validate_name
from gan_lib.runs import StageError, StageRun, new_run_id, run_dir
from jobs import common

# Options that define a run's networks and sample grid: a resumed run keeps the run's.
KEPT_ON_RESUME = ("dataset", "recipe", "latent_dim", "conditional", "sample_count")


def build_parser():
    parser = common.new_parser("train", __doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", help="preprocessed dataset name")
    parser.add_argument("--recipe", choices=sorted(models.RECIPES), default="dcgan",
                        help="training recipe: dcgan (default) or the TF tutorial's settings")
    parser.add_argument("--epochs", type=common.positive_int, default=2, help="epochs to train")
    parser.add_argument("--batch-size", type=common.positive_int, default=None,
                        help="global batch over all workers (default: the recipe's)")
    parser.add_argument("--latent-dim", type=common.positive_int, default=100,
                        help="size of the generator's noise vector")
    parser.add_argument("--learning-rate", type=common.positive_float, default=None,
                        help="Adam learning rate for both networks (default: the recipe's)")
    parser.add_argument("--max-images", type=common.non_negative_int, default=0,
                        help="train on the first N images only (0: the whole train split)")
    parser.add_argument("--sample-count", type=common.positive_int, default=64,
                        help="images in each epoch's sample grid")
    parser.add_argument("--log-every", type=common.positive_int, default=50,
                        help="log a training line every N steps")
    parser.add_argument("--seed", type=common.seed_int, default=1234,
                        help="seed for the data order and the sample noise")
    parser.add_argument("--resume", metavar="RUN_ID", default=None,
                        help="continue this run from its last checkpoint, with the run's own "
                             "options where the command line gives none (they win over a "
                             "configuration file's) and, unless --learning-rate is given, the "
                             "learning rate it had reached")
    parser.add_argument("--timeout-minutes", type=common.positive_float, default=240,
                        help="cancel training that has not finished after this long")
    parser.add_argument("--pin-cores", action=argparse.BooleanOptionalAction, default=None,
                        help="pin each TensorFlow node to its own cores of its host (default: "
                             "on when Spark runs on this machine, off on a cluster, where "
                             "other jobs share the hosts)")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True,
                        help="compile each node's forward and backward pass with XLA "
                             "(default: on; --no-xla runs TensorFlow's own kernels)")
    parser.add_argument("--conditional", action=argparse.BooleanOptionalAction, default=True,
                        help="condition both networks on the dataset's classes when every "
                             "image has a label and the recipe is conditional (default: on; "
                             "--no-conditional ignores the labels)")
    parser.add_argument("--fail-at-step", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--inject-nan-at-step", type=int, default=-1, help=argparse.SUPPRESS)
    return parser


def run(args, settings, given=frozenset()):
    """Train (or resume) one run; ``given`` names the options given on the command line."""
    master = session.effective_master(settings)
    if master == "local" or master.startswith("local["):
        raise ConfigError(f"--master {master} runs no executors, and each TensorFlow worker "
                          "needs one: use local-cluster[N,1,MB] (the default here) or yarn")
    if args.resume and args.run_id and args.run_id != args.resume:
        raise ConfigError(f"--run-id {args.run_id} differs from --resume {args.resume}: a "
                          "resumed run keeps its id; leave out --run-id")
    run_id = validate_name(args.resume or args.run_id or new_run_id("train"), "--run-id")
    run_uri = run_dir(settings, run_id)
    store = storage.open_storage(run_uri, settings)
    checkpoint = ""
    if args.resume:
        found = training.readable_checkpoint(store, run_uri)
        if found is None:
            raise ConfigError(f"--resume {run_id}: no checkpoint under {run_uri}; "
                              "`hdp-gan runs --stage train` lists the training runs")
        checkpoint, progress, run_options = found
        common.logger.info("resuming run %s from %s (epoch %d, step %d)", run_id, checkpoint,
                           progress["epoch"], progress["step"])
        _take_run_options(args, given, run_options, run_id)
        exported = store.exists(storage.join(run_uri, "generator"))
        _check_more_epochs(args, progress["epoch"], run_id, exported)
        if args.epochs == progress["epoch"]:
            common.logger.info("run %s trained its %d epochs but stopped before it exported "
                               "its generator; finishing it without training", run_id,
                               args.epochs)
    _check_batch_split(args, settings.executors)
    options = training.TrainOptions(
        run_id=run_id, run_uri=run_uri, dataset=validate_name(args.dataset, "--dataset"),
        settings=settings, recipe=args.recipe, epochs=args.epochs,
        batch_size=args.batch_size or 0, latent_dim=args.latent_dim,
        learning_rate=args.learning_rate or 0.0, max_images=args.max_images,
        sample_count=args.sample_count, log_every=args.log_every, seed=args.seed,
        resume=bool(args.resume), fail_at_step=args.fail_at_step,
        inject_nan_at_step=args.inject_nan_at_step, threads=settings.executor_cores,
        pin_cores=_pin_cores(args.pin_cores, settings), xla=args.xla,
        conditional=args.conditional, checkpoint=checkpoint,
        new_learning_rate=args.learning_rate if args.resume and "learning_rate" in given
        else 0.0)
    stage = StageRun("train", run_id, parameters=training.options_dict(options),
                     lineage={"dataset": args.dataset}, record_failure=False)
    with common.spark_stage(settings, stage, f"hdp-gan train {run_id}", training=True) as spark:
        if args.resume:  # only now that this process holds the run id: none other writes
            for leftover in storage.remove_temporaries(store, run_uri):
                common.logger.info("removed %s, left by the interrupted run",
                                   redact_url(leftover))
        stage.lineage["preprocess_runs"] = _preprocess_runs(spark, settings, args.dataset)
        _check_image_shape(spark, settings, args.dataset)
        _check_one_batch(spark, settings, args)
        cluster.preflight(spark.sparkContext, settings.executors)
        stage.record_failure = True
        # only once the checks passed: a run refused for a mistyped option keeps its outputs
        if not args.resume and training.remove_training_outputs(store, run_uri):
            common.logger.info("run %s already had training outputs (checkpoints, samples, "
                               "generator, report); removed them to train it afresh", run_id)
        try:
            cluster.run(spark.sparkContext, training.train_worker, options, settings.executors,
                        args.timeout_minutes * 60, training.progress_reporter(store, run_uri))
        finally:
            _record_metrics(spark, settings, store, run_id, run_uri)
        report_uri = storage.join(run_uri, report.REPORT_FOLDER)
        if args.resume and store.exists(report_uri):  # it shows the run before these epochs
            store.delete(report_uri)
            common.logger.info("removed the run's report, which showed it before this resume "
                               "(hdp-gan report %s writes it again)", run_id)
        history = training.read_history(store, run_uri)
        stage.counts = {"epochs": len(history), "steps": history[-1]["step"] if history else 0,
                        "workers": settings.executors}
        stage.outputs = {
            "run_dir": run_uri, "generator": storage.join(run_uri, "generator"),
            "samples": storage.join(run_uri, "samples"),
            "gif": storage.join(run_uri, "samples", "progress.gif"),
            "loss_curve": storage.join(run_uri, "loss_curve.png")}
        stage.record(spark, settings)
    return stage.summary()


def given_options(argv) -> set[str]:
    """The destinations of the options given in ``argv`` (defaults and a configuration
    file's values do not count)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _take_run_options(args, given, run_options, run_id) -> None:
    """Give ``args`` the resumed run's options where the command line left them out; refuse
    a given option that would change the run's networks or sample grid."""
    if not run_options:
        common.logger.warning("--resume %s: its checkpoint does not record the run's options "
                              "(an older version wrote it); options not given take their "
                              "defaults", run_id)
        return
    for name, value in run_options.items():
        if name not in given:
            setattr(args, name, value)
        elif name in KEPT_ON_RESUME and getattr(args, name) != value:
            raise ConfigError(f"--resume {run_id}: the run was trained with "
                              f"{_flag(name, value)}, which a resumed run keeps; leave out "
                              f"{_flag(name, getattr(args, name))}")


def _flag(name, value) -> str:
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return option if value else "--no-" + option[2:]
    return f"{option} {value}"


def _check_more_epochs(args, trained_epochs, run_id, exported) -> None:
    """A resumed run trains more epochs, or, stopped after its last epoch and before its
    generator was exported, none: it then only writes its final outputs."""
    if args.epochs < trained_epochs or (args.epochs == trained_epochs and exported):
        epochs = f"{trained_epochs} epoch" + ("" if trained_epochs == 1 else "s")
        raise ConfigError(f"--resume {run_id}: the run has already trained {epochs}; give "
                          f"--epochs above {trained_epochs} to train more")


def _check_batch_split(args, workers) -> None:
    batch = args.batch_size or models.RECIPES[args.recipe].batch_size
    check_batch_split(batch, workers, f"--batch-size {batch}" if args.batch_size
                      else f"the {args.recipe} recipe's batch size {batch}")


def check_batch_split(batch: int, workers: int, named: str) -> None:
    """Each worker takes an equal share of every global batch."""
    if batch % workers == 0:
        return
    lower = batch // workers * workers or workers
    raise ConfigError(f"{named} is not a multiple of the {workers} workers (--executors): each "
                      f"worker takes an equal share of every batch; use {lower}, "
                      f"{lower + workers}, ...")


def _pin_cores(requested, settings) -> bool:
    """Pinning pays where the job owns the machine's cores: Spark on this machine."""
    if requested is not None:
        return requested
    return settings.master is None or settings.master.startswith("local")


def _preprocess_runs(spark, settings, dataset):
    rows = spark.sql(f"SELECT DISTINCT run_id FROM {tables.qualified(settings, 'images')} "
                     f"WHERE dataset = {tables.sql_string(dataset)}").collect()
    if not rows:
        raise StageError(f"dataset {dataset!r} is not in {tables.qualified(settings, 'images')}; "
                         "run hdp-gan preprocess first")
    return sorted(row.run_id for row in rows)


def _check_image_shape(spark, settings, dataset):
    """Before the TensorFlow workers start: the dataset's images have a size the DCGAN
    trains on."""
    shapes = spark.sql(f"SELECT DISTINCT height, width, channels FROM "
                       f"{tables.qualified(settings, 'images')} "
                       f"WHERE dataset = {tables.sql_string(dataset)}").collect()
    sizes = ", ".join(str(size) for size in sorted(models.SUPPORTED_SIZES))
    for shape in shapes:
        if shape.height != shape.width or shape.height not in models.SUPPORTED_SIZES:
            raise StageError(f"dataset {dataset!r} holds {shape.width}x{shape.height} images; "
                             f"the DCGAN trains on square images of {sizes} pixels: preprocess "
                             "it again with one of them as --image-size")


def _check_one_batch(spark, settings, args):
    """Before the TensorFlow workers start: the train split holds one global batch."""
    images = spark.sql(f"SELECT count(*) AS n FROM {tables.qualified(settings, 'images')} "
                       f"WHERE dataset = {tables.sql_string(args.dataset)} "
                       "AND split = 'train'").first().n
    if args.max_images:
        images = min(images, args.max_images)
    batch = args.batch_size or models.RECIPES[args.recipe].batch_size
    if images < batch:
        named = (f"--batch-size {batch}" if args.batch_size
                 else f"the {args.recipe} recipe's batch size {batch}")
        used = f"--max-images {args.max_images} leaves" if args.max_images == images else "has"
        workers = settings.executors
        advice = (f"give a --batch-size of at most {images} that is a multiple of the "
                  f"{workers} workers" if images >= workers else
                  f"each of the {workers} workers needs at least one image of every batch")
        raise StageError(f"dataset {args.dataset!r} {used} {images} training images, fewer "
                         f"than one batch ({named}); {advice}")


def _record_metrics(spark, settings, store, run_id, run_uri):
    """Turn the run's metrics.jsonl into its partition of the training_metrics table."""
    import datetime as dt
    history = training.read_history(store, run_uri)
    if not history:
        return
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [{**row, "recorded_at": now, "run_id": run_id} for row in history]
    tables.write_partitions(spark, settings, "training_metrics",
                            tables.rows_frame(spark, "training_metrics", rows))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)

    def train(args, settings):
        return run(args, settings, given_options(argv))
    return common.run_main(build_parser(), "train", train, argv)


if __name__ == "__main__":
    sys.exit(main())
