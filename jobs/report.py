"""Write the static HTML report of a run into its run folder.

    spark-submit jobs/report.py --root /data/gan train-20261204T133050-ce266a

The report (<root>/runs/<RUN_ID>/report/index.html, pictures beside it) covers a training
run with its dataset, rejects, losses, samples, generate and label runs, quality scores and
lineage; a generate or label run with its training run; a preprocess run with its dataset.
The final JSON line gives the page's location as outputs.report.
"""

import dataclasses
import sys

from gan_lib import report, runs, session
from gan_lib.config import ConfigError, validate_name
from gan_lib.runs import StageRun
from jobs import common


@dataclasses.dataclass
class ReportRun(StageRun):
    """The report's row in the runs table (stage ``report``, the reported run's id). A report
    asked for a run that is not in the table leaves no row behind."""

    run_exists: bool = False

    def record(self, spark, settings, status="succeeded", message=""):
        if self.run_exists:
            super().record(spark, settings, status, message)


def build_parser():
    parser = common.new_parser("report", __doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", metavar="RUN_ID",
                        help="the run to report on: a train, generate, label or preprocess run "
                             "(`hdp-gan runs` lists them); --run-id also works")
    return parser


def run(args, settings):
    if args.run and args.run_id and args.run != args.run_id:
        raise ConfigError(f"RUN_ID {args.run!r} and --run-id {args.run_id!r} disagree; give one")
    run_id = args.run or args.run_id
    if not run_id:
        raise ConfigError("name the run to report on: hdp-gan report RUN_ID "
                          "(`hdp-gan runs` lists the runs)")
    run_id = validate_name(run_id, "RUN_ID")
    settings = report.table_reader_settings(settings)
    if session.no_metastore_yet(settings):
        report.related_runs([], run_id)  # refuses the run in its own words, before Spark
    stage = ReportRun("report", run_id, parameters=vars(args), lineage={"run": run_id})
    # no hold on the run id, which a report only reads (it may be training still); the
    # report's own hold keeps a second report of the run from writing at the same time
    with runs.report_lease(settings, run_id), \
            common.spark_stage(settings, stage, f"hdp-gan report {run_id}", lease=False) as spark:
        related = report.related_runs(report.read_runs(spark, settings), run_id)
        stage.run_exists = True
        result = report.write_report(spark, settings, related)
        stage.counts = {"related_runs": len(result.related.all_runs()),
                        "generate_runs": len(result.related.generates),
                        "pictures": result.pictures}
        stage.outputs = {"report": result.uri}
        stage.lineage = {"run": run_id, "stage": result.related.stage,
                         "dataset": result.related.dataset}
        stage.record(spark, settings)
    return stage.summary()


def main(argv=None):
    return common.run_main(build_parser(), "report", run, argv)


if __name__ == "__main__":
    sys.exit(main())
