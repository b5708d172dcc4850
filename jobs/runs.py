"""List the runs recorded in the runs table, newest first.

    hdp-gan runs --root /data/gan [--stage train] [--limit 20] [--json]

Prints an aligned table: stage, run id, status, start time (UTC), duration and the run's key
figures (its counts); --json prints one JSON object per run instead.
"""

import json
import sys

from gan_lib import report, session
from gan_lib.config import ConfigError
from jobs import common


def build_parser():
    parser = common.new_parser("runs", __doc__.splitlines()[0])
    parser.add_argument("--stage", default=None,
                        help="only runs of this stage: " + ", ".join(report.STAGE_ORDER))
    parser.add_argument("--limit", type=common.positive_int, default=None,
                        help="print only the newest N runs (default: all)")
    parser.add_argument("--json", action="store_true", help="print runs as JSON lines")
    return parser


def run(args, settings):
    if args.stage is not None and args.stage not in report.STAGE_ORDER:
        raise ConfigError(f"--stage {args.stage!r} is not a stage; use one of "
                          + ", ".join(report.STAGE_ORDER))
    settings = report.table_reader_settings(settings)
    spark = session.build_session(settings, "hdp-gan runs")
    try:
        rows = report.read_runs(spark, settings, stage=args.stage)
    finally:
        spark.stop()
    rows = rows[:args.limit] if args.limit else rows
    if args.json:
        for row in rows:
            print(json.dumps(report.run_json(row), sort_keys=True, default=str))
    elif rows:
        print(report.runs_table(rows))
    else:
        which = f"{args.stage} runs" if args.stage else "runs"
        print(f"no {which} recorded under {settings.root} (database {settings.database})",
              file=sys.stderr)
    sys.stdout.flush()
    return common.EXIT_OK


def main(argv=None):
    parser = build_parser()
    args, settings = common.parse(parser, argv, "runs")
    return common.run_body(parser, lambda: run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
