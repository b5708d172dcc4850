"""Train the reference classifier on a dataset's real train split and export it for TF Hub.

    spark-submit jobs/train_classifier.py --root /data/gan --dataset fashion-mnist --epochs 4

Exports runs/<run_id>/classifier and publishes a copy at models/<dataset>-classifier, the
default handle of the label stage.
"""

import sys

from gan_lib import classifier, datasets, storage
from gan_lib.config import validate_name
from gan_lib.runs import StageError, StageRun, code_version, new_run_id, run_dir
from jobs import common


def build_parser():
    parser = common.new_parser("train-classifier", __doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", help="preprocessed dataset name")
    parser.add_argument("--epochs", type=common.positive_int, default=5, help="training epochs")
    parser.add_argument("--batch-size", type=common.positive_int, default=128, help="batch size")
    parser.add_argument("--max-images", type=common.non_negative_int, default=0,
                        help="train on the first N images only (0: the whole train split)")
    parser.add_argument("--min-accuracy", type=common.fraction, default=None,
                        help="fail the stage when the test accuracy is below this")
    return parser


def default_handle(settings, dataset: str) -> str:
    name = validate_name(dataset, "--dataset")
    return storage.join(settings.root, "models", f"{name}-classifier")


def published_handle(settings, dataset: str) -> str:
    """The default handle, with its classifier put back if a publish was stopped between
    moving the old copy aside and renaming the new one in."""
    handle = default_handle(settings, dataset)
    storage.restore_retired(storage.open_storage(handle, settings), handle)
    return handle


def run(args, settings):
    run_id = validate_name(args.run_id or new_run_id("classifier"), "--run-id")
    stage = StageRun("train-classifier", run_id, parameters=vars(args),
                     lineage={"dataset": args.dataset})
    with common.spark_stage(settings, stage, f"hdp-gan train-classifier {run_id}") as spark:
        names = datasets.class_names(spark, settings, args.dataset)
        if len(names) < 2:
            raise StageError(f"dataset {args.dataset!r} has {len(names)} labels; a classifier "
                             "needs at least 2 (labels come from sub-folder names)")
        train_images, train_labels = _labelled(settings, args.dataset, "train")
        test_images, test_labels = _labelled(settings, args.dataset, "test")
        if args.max_images:
            train_images = train_images[:args.max_images]
            train_labels = train_labels[:args.max_images]
        model, accuracy = classifier.train(train_images, train_labels, test_images, test_labels,
                                           len(names), epochs=args.epochs,
                                           batch_size=args.batch_size)
        if args.min_accuracy and accuracy < args.min_accuracy:
            raise StageError(f"test accuracy {accuracy:.4f} is below --min-accuracy "
                             f"{args.min_accuracy}")
        destination = storage.join(run_dir(settings, run_id), "classifier")
        classifier.export(model, names, destination, f"{run_id} ({code_version()})", accuracy,
                          settings)
        published = default_handle(settings, args.dataset)
        _publish(destination, published, settings)
        stage.counts = {"train_images": len(train_images), "test_images": len(test_images),
                        "classes": len(names), "test_accuracy": round(accuracy, 4)}
        stage.outputs = {"classifier": destination, "handle": published}
        stage.record(spark, settings)
    return stage.summary()


def _labelled(settings, dataset: str, split: str):
    """One split's images that have a label (those at the input folder's top level have
    none): a classifier learns and is scored on labelled images only."""
    images, labels = datasets.load_split(settings, dataset, split)
    keep = labels >= 0
    if not keep.any():
        raise StageError(f"dataset {dataset!r} has no labelled image in its {split} split "
                         f"({len(labels)} without a label); labels come from sub-folder names")
    if not keep.all():
        common.logger.warning("dataset %r: %d of the %d images in its %s split have no label "
                              "(they sit at the input folder's top level); the classifier "
                              "leaves them out", dataset, (~keep).sum(), len(labels), split)
    return images[keep], labels[keep]


def _publish(source: str, destination: str, settings) -> None:
    """Copy the exported folder to the default handle, atomically."""
    store = storage.open_storage(source, settings)
    with datasets.scratch_folder(settings, "publish-") as folder:
        store.download_dir(source, folder)
        store.upload_dir(folder, destination)


def main(argv=None):
    return common.run_main(build_parser(), "train-classifier", run, argv, root="create")


if __name__ == "__main__":
    sys.exit(main())
