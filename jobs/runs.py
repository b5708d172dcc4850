"""List the runs recorded in the runs table, newest first.

    hdp-gan runs --root /data/gan [--stage train] [--limit 20] [--json]

Prints an aligned table: stage, run id, status, start time (UTC), duration and the run's key
figures (its counts); --json prints one JSON object per run instead.
"""

import json
import sys

from gan_lib import report, session
from gan_lib.config import redact_url
from jobs import common


def build_parser():
    parser = common.new_parser("runs", __doc__.splitlines()[0])
    parser.add_argument("--stage", default=None, choices=report.STAGE_ORDER,
                        help="only runs of this stage")
    parser.add_argument("--limit", type=common.positive_int, default=None,
                        help="print only the newest N runs (default: all)")
    parser.add_argument("--json", action="store_true", help="print runs as JSON lines")
    return parser


def run(args, settings):
    settings = report.table_reader_settings(settings)
    rows = [] if session.no_metastore_yet(settings) else _read_runs(settings, args.stage)
    rows = rows[:args.limit] if args.limit else rows
    if args.json:
        for row in rows:
            print(json.dumps(report.run_json(row), sort_keys=True, default=str))
    elif rows:
        print(report.runs_table(rows))
    else:
        which = f"{args.stage} runs" if args.stage else "runs"
        print(f"no {which} recorded under {redact_url(settings.root)} "
              f"(database {settings.database})", file=sys.stderr)
    sys.stdout.flush()
    return common.EXIT_OK


def _read_runs(settings, stage):
    spark = session.build_session(settings, "hdp-gan runs")
    try:
        return report.read_runs(spark, settings, stage=stage)
    finally:
        spark.stop()


def main(argv=None):
    return common.run_printing(build_parser(), "runs", run, argv)


if __name__ == "__main__":
    sys.exit(main())
