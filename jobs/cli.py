"""The ``hdp-gan`` command: one subcommand per job, each the same as
``spark-submit jobs/<module>.py`` with the same arguments."""

import importlib
import sys

from jobs.common import EXIT_USAGE, reader_gone

# subcommand -> (module in jobs/, one-line description)
SUBCOMMANDS = {
    "ingest": ("ingest", "put a known dataset (Fashion-MNIST) under the root as image files"),
    "preprocess": ("preprocess", "validate and normalize an image folder into a Parquet dataset"),
    "train": ("train_dcgan", "train the DCGAN with TensorFlowOnSpark"),
    "train-classifier": ("train_classifier", "train and export the reference classifier"),
    "generate": ("generate", "draw images from a trained generator"),
    "label": ("label", "label images with a TF Hub classifier and score their quality"),
    "pipeline": ("pipeline", "run every stage in order"),
    "sql": ("sql", "run a query against the project's Hive metastore"),
    "sql-server": ("sql_server", "serve the project's tables to beeline and JDBC clients"),
    "report": ("report", "write the HTML report of a run"),
    "runs": ("runs", "list runs with their status and key figures"),
    "config": ("show_config", "print the effective configuration, secrets masked"),
}


def usage() -> str:
    lines = ["usage: hdp-gan SUBCOMMAND [options]   (hdp-gan SUBCOMMAND --help for its options)",
             "", "subcommands:"]
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<18}{text}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a usage mistake: the usage goes where errors go
        print(usage(), file=sys.stderr)
        return EXIT_USAGE
    if argv[0] in ("-h", "--help", "help"):
        try:
            print(usage(), flush=True)
        except BrokenPipeError:  # `hdp-gan --help | head`
            return reader_gone()
        return 0
    name, rest = argv[0], argv[1:]
    commands = SUBCOMMANDS
    if name not in commands:
        print(f"hdp-gan: error: unknown subcommand {name!r}; choose from "
              f"{', '.join(commands)} (see hdp-gan --help)", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f"jobs.{commands[name][0]}")
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
