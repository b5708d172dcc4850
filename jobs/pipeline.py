"""Run every stage in order, each as its own process, as Oozie would.

    hdp-gan pipeline --root /data/gan [--epochs 2] [--generate-count 1000]

ingest (when raw/<dataset> is missing, or was taken with another --ingest-limit) ->
preprocess -> train -> train-classifier (when no classifier is published, its classes differ
from the dataset's, or --classifier-epochs is given) -> generate -> label, then the run
report when the report stage is installed. Each stage prints its JSON line; the
pipeline chains run ids from them and ends with one JSON line of its own.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time

from gan_lib import datasets, inference, preprocessing, storage
from gan_lib.config import ConfigError
from gan_lib.runs import StageError, new_run_id
from jobs import common
from jobs.train_classifier import published_handle

logger = logging.getLogger("hdp_gan.pipeline")
STAGE_STOP_S = 120  # how long a stopped stage may take to record its run and stop Spark


def build_parser():
    parser = common.new_parser("pipeline", __doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None,
                        help="dataset name; name it when --data holds other images (default: "
                             "fashion-mnist)")
    parser.add_argument("--data", default=None,
                        help="a folder of images to use instead of Fashion-MNIST")
    parser.add_argument("--image-size", type=common.positive_int, default=28,
                        help="preprocess: output size")
    parser.add_argument("--channels", type=int, default=1, help="preprocess: 1 or 3")
    parser.add_argument("--test-percent", type=common.non_negative_int, default=None,
                        help="preprocess: share of images put in the test split when --data "
                             "has no train and test folders (default: preprocess's, 10)")
    parser.add_argument("--ingest-limit", type=common.positive_int, default=None,
                        help="ingest: first N images of each split only")
    parser.add_argument("--epochs", type=common.positive_int, default=2, help="train: epochs")
    parser.add_argument("--batch-size", type=common.positive_int, default=None,
                        help="train: global batch size (default: the recipe's)")
    parser.add_argument("--max-images", type=common.non_negative_int, default=0,
                        help="train and train-classifier: first N images only (0: all)")
    parser.add_argument("--classifier-epochs", type=common.positive_int, default=None,
                        help="train-classifier: epochs (default: 5); given, the classifier is "
                             "trained again even when one is published")
    parser.add_argument("--classifier", default=None,
                        help="label: classifier handle (default: train one when missing)")
    parser.add_argument("--generate-count", type=common.positive_int, default=1000,
                        help="generate: images to draw")
    return parser


def _shared_args(args, settings) -> list[str]:
    shared = ["--root", settings.root, "--database", settings.database,
              "--executors", str(settings.executors),
              "--executor-memory-mb", str(settings.executor_memory_mb),
              "--log-level", settings.log_level]
    for option, value in (("--master", args.master), ("--config", args.config),
                          ("--metastore-uri", args.metastore_uri),
                          ("--metastore-jdbc-url", args.metastore_jdbc_url),
                          ("--state-dir", args.state_dir)):
        if value:
            shared += [option, value]
    return shared


def run_stage(name: str, stage_args: list[str]) -> dict:
    """Run one stage as a child process; return its JSON line or raise StageError."""
    command = [sys.executable, "-m", "jobs.cli", name] + stage_args
    logger.info("stage %s: starting", name)
    started = time.monotonic()
    # Its own process group: a signal to the pipeline reaches the stage once, forwarded
    # below; and SIGTERM when the pipeline dies without forwarding (SIGKILL, as `timeout -s
    # KILL` or a container's last kill sends it to the pipeline's group)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               env=os.environ.copy(), process_group=0,
                               preexec_fn=common.terminate_with_parent)
    try:
        stdout, _ = process.communicate()
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the stage stops and records it
        process.send_signal(signal.SIGTERM if isinstance(stop, common.Terminated)
                            else signal.SIGINT)
        _wait_for_stage(process, name)
        raise
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise StageError(f"stage {name} failed with exit code {process.returncode} (its error "
                         "is printed above); fix it and rerun the pipeline")
    summary = json.loads(lines[-1])
    logger.info("stage %s: done in %.0f s: %s", name, time.monotonic() - started,
                json.dumps(summary.get("counts", {})))
    return summary


def run(args, settings):
    check_before_any_stage(args, settings)
    if args.dataset is None:
        args.dataset = datasets.DEFAULT_DATASET
        if args.data:
            preprocessing.check_not_replaced_unnamed(
                settings, args.dataset, preprocessing.absolute_input(args.data, "--data"),
                "--data")
    shared = _shared_args(args, settings)
    pipeline_id = args.run_id or new_run_id("pipeline")
    started = time.monotonic()
    summaries = {}
    source = args.data
    if source is None:
        raw = datasets.raw_dir(settings, args.dataset)
        needed, why = _ingest_reason(settings, raw, args.ingest_limit)
        if needed:
            logger.info("stage ingest: %s", why)
            ingest = ["--dataset", args.dataset]
            if args.ingest_limit:
                ingest += ["--limit", str(args.ingest_limit)]
            summaries["ingest"] = run_stage("ingest", shared + ingest)
        else:
            logger.info("stage ingest: skipped: %s (hdp-gan ingest replaces them)", why)
        source = raw
    summaries["preprocess"] = run_stage("preprocess", shared + [
        "--dataset", args.dataset, "--input", source, "--image-size", str(args.image_size),
        "--channels", str(args.channels)] + _given(args, "test_percent"))
    summaries["train"] = run_stage("train", shared + [
        "--dataset", args.dataset, "--epochs", str(args.epochs),
        "--max-images", str(args.max_images)] + _given(args, "batch_size"))
    handle = args.classifier or published_handle(settings, args.dataset)
    if args.classifier is None:
        reason = _classifier_reason(settings, handle, args,
                                    summaries["preprocess"]["outputs"].get("label_names"))
        if reason:
            logger.info("stage train-classifier: %s", reason)
            summaries["train-classifier"] = run_stage("train-classifier", shared + [
                "--dataset", args.dataset, "--epochs", str(args.classifier_epochs or 5),
                "--max-images", str(args.max_images)])
        else:
            logger.info("stage train-classifier: skipped: the published classifier %s knows "
                        "the dataset's classes (--classifier-epochs N trains it again)", handle)
    summaries["generate"] = run_stage("generate", shared + [
        "--generator-run", summaries["train"]["run_id"], "--count", str(args.generate_count)])
    summaries["label"] = run_stage("label", shared + [
        "--generated", summaries["generate"]["run_id"], "--dataset", args.dataset,
        "--classifier", handle])
    if _has_report_stage():
        summaries["report"] = run_stage("report", shared + [summaries["train"]["run_id"]])
    return {"stage": "pipeline", "run_id": pipeline_id, "status": "succeeded",
            "duration_s": round(time.monotonic() - started, 1),
            "runs": {name: summary["run_id"] for name, summary in summaries.items()},
            "counts": {name: summary.get("counts", {}) for name, summary in summaries.items()},
            "outputs": {**summaries["train"]["outputs"], **summaries["label"]["outputs"],
                        **summaries.get("report", {}).get("outputs", {})}}


def check_before_any_stage(args, settings) -> None:
    """What a later stage would refuse, refused before the first one runs: train after
    preprocessing, label after training and generating."""
    from gan_lib import models
    from jobs.train_dcgan import check_batch_split

    if args.batch_size:
        check_batch_split(args.batch_size, settings.executors,
                          f"--batch-size {args.batch_size}")
    try:
        models.check_shape(args.image_size, args.channels)
    except ValueError as error:
        raise ConfigError(f"--image-size {args.image_size}: {error}") from None
    # the recipe may come from a configuration file: compare with the smallest batch of any
    batch = args.batch_size or min(recipe.batch_size for recipe in models.RECIPES.values())
    if args.max_images and args.max_images < batch:
        named = f"--batch-size {batch}" if args.batch_size else f"the recipes' {batch}"
        raise ConfigError(f"--max-images {args.max_images} is fewer than one training batch "
                          f"({named}); give at least {batch}")
    if args.classifier is not None and not args.classifier.strip():
        args.classifier = None  # as label takes it: the published classifier, or a new one
    if args.classifier is not None:
        try:
            inference.check_handle_present(args.classifier, settings)
        except (inference.HandleError, storage.StorageError) as error:
            raise ConfigError(str(error)) from None


def _wait_for_stage(process, name: str) -> None:
    """Wait for a stage that was told to stop; another Ctrl-C does not leave it behind."""
    deadline = time.monotonic() + STAGE_STOP_S
    while process.poll() is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            logger.warning("stage %s did not stop within %d s; killing it", name, STAGE_STOP_S)
            process.kill()
            process.wait()
            return
        try:
            process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            logger.warning("stage %s is stopping (it records its run); waiting for it", name)


def _ingest_reason(settings, raw: str, limit: int | None) -> tuple[bool, str]:
    """Whether the pipeline ingests, and why (or why the raw images it has will do). An
    earlier ingest with another limit (or one when none is given now) is replaced."""
    store = storage.open_storage(raw, settings)
    if not store.exists(raw):
        return True, f"{raw} does not exist yet"
    earlier = datasets.ingest_record(settings, raw)
    if earlier is None:  # put there by hand, by an older version, or its record is damaged
        return False, (f"{raw} holds images without a readable {datasets.INGEST_RECORD}, taken "
                       "as they are whatever --ingest-limit says")
    if earlier.get("limit") != limit:
        asked = f"the first {limit} of each split" if limit else "every image"
        had = (f"the first {earlier['limit']} of each split" if earlier.get("limit")
               else "every image")
        return True, f"{raw} holds {had} of an earlier ingest, {asked} was asked for"
    return False, f"{raw} holds the images of an earlier ingest with the same limit"


def _classifier_reason(settings, handle: str, args, dataset_labels) -> str | None:
    """Why the pipeline trains the classifier (None: the published one will do): there is
    none, --classifier-epochs asks for one, or the published one knows other classes than
    the dataset now has."""
    if not storage.open_storage(handle, settings).exists(handle):
        return f"no classifier is published at {handle} yet"
    if args.classifier_epochs is not None:
        return f"--classifier-epochs {args.classifier_epochs} was given"
    known = inference.stored_class_names(handle, settings)
    if dataset_labels is not None and known is not None and sorted(known) != sorted(
            dataset_labels):
        return (f"the published classifier knows {len(known)} classes, the dataset has "
                f"{len(dataset_labels)} labels now ({', '.join(sorted(dataset_labels)[:12])})")
    return None


def _given(args, name: str) -> list[str]:
    """The option for a stage when given to the pipeline; else the stage's own default, or
    its table's value in --config, applies."""
    value = getattr(args, name)
    return [] if value is None else [f"--{name.replace('_', '-')}", str(value)]


def _has_report_stage() -> bool:
    import importlib.util
    return importlib.util.find_spec("jobs.report") is not None


def check_data_before_the_root(args, settings) -> None:
    """Before the root is made: --data must be there, and the root not inside it (it would be
    created there first)."""
    if args.data:
        data = preprocessing.absolute_input(args.data, "--data")
        if not storage.open_storage(data, settings).exists(data):
            raise ConfigError(f"--data {args.data} does not exist")
        preprocessing.check_root_outside_input(settings, data, "--data")


def main(argv=None):
    return common.run_main(build_parser(), "pipeline", run, argv, root="create",
                           check_first=check_data_before_the_root)


if __name__ == "__main__":
    sys.exit(main())
