"""Checks a month's scores against what happened next: the next month's input says who is PRO now.

    python -m beam_jobs.backtest --scores runs/2026-11/scores --labels data/2026-12.csv \
        --output_dir runs/2026-12/backtest
    python -m beam_jobs.backtest --db postgresql://cartola@db:5432/cartola --scores_table scores \
        --run_id 2026-11 --labels postgresql://cartola@db:5432/cartola --table users \
        --output_dir runs/2026-12/backtest

--scores is a score run's CSV (beam_jobs.score's shard prefix, a glob, or serving.client's file);
--db with --scores_table and --run_id reads a run's rows of a scores table instead. --labels is the
next month's input (CSV path or glob, any Beam filesystem, or postgresql:// with --table or
--query), read like the preprocessing job reads it: bad rows are counted and set aside in
OUTPUT_DIR/labels.bad-*.jsonl. --previous_scores (or --previous_run_id with --db) adds the score
drift against the run before. Writes OUTPUT_DIR/backtest.json and backtest.html: the served
model's realized KS and AUC with intervals, conversion by scoring decile among users not PRO at
scoring time, and PSI with the calibrated drift test (README, "Closing the loop"). A realized KS
below blessing.min_ks is logged as an error (the run still succeeds: it is a finding, not a
failure). Any flag this module does not know goes to Beam's PipelineOptions.
"""

import argparse
import json
import logging
import sys

from beam_jobs import job_cli
from tf_cartola.common import cli
from tf_cartola.contract import config as config_lib

EXIT_STATUS = (
    "0 backtested, 2 bad arguments, config or input, or workers that cannot start "
    "(--worker_start_timeout), 3 no scores where --scores (or --db and --run_id) point: nothing "
    "to backtest"
)
EXIT_NO_SCORES = 3
log = logging.getLogger("beam_jobs.backtest")


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("beam_jobs.backtest", __doc__, EXIT_STATUS)
    config_lib.add_flag(parser)
    scores = parser.add_mutually_exclusive_group(required=True)
    scores.add_argument("--scores", help="a score run's CSV: shard prefix, path or glob")
    scores.add_argument(
        "--db", help="the scores are a run's rows of --scores_table in this postgresql:// database"
    )
    parser.add_argument(
        "--scores_table", default="scores", help="with --db (default: %(default)s)"
    )
    parser.add_argument("--run_id", help="with --db: the scored run")
    parser.add_argument("--previous_scores", help="the run before's CSV, for the score drift")
    parser.add_argument("--previous_run_id", help="with --db: the run before, for the score drift")
    parser.add_argument(
        "--labels",
        required=True,
        help="the next month's input: CSV path or glob (any Beam filesystem), or "
        "postgresql://USER@HOST:PORT/DB with --table or --query",
    )
    job_cli.add_database_flags(parser)
    parser.add_argument("--output_dir", required=True, help="where backtest.json and its page go")
    config_lib.add_serving_flags(parser)
    return parser


def run(argv=None) -> dict:
    """Parses the command line, runs `backtest_job.backtest` and returns its record.

    Raises:
      job_cli.UnknownFlag: a flag that neither the job nor Beam knows (before any work).
    """
    from beam_jobs.jobs import backtest as backtest_job
    from beam_jobs.shared import inputs as inputs_lib

    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    options = job_cli.pipeline_options(beam_args, parser)
    if args.db and not args.run_id:
        parser.error("--db needs --run_id, the scored run")
    if args.previous_run_id and not args.db:
        parser.error("--previous_run_id goes with --db; give --previous_scores for CSV scores")
    config = config_lib.with_serving_flags(config_lib.load(args.config), args)
    if args.db:
        scores = backtest_job.Scores(args.db, args.scores_table, args.run_id)
        previous = (
            backtest_job.Scores(args.db, args.scores_table, args.previous_run_id)
            if args.previous_run_id
            else None
        )
    else:
        scores = backtest_job.Scores(args.scores)
        previous = backtest_job.Scores(args.previous_scores) if args.previous_scores else None
    cfg = config_lib.override(
        config,
        "preprocess",
        **job_cli.database_overrides(args),
    )
    return backtest_job.backtest(
        scores,
        args.labels,
        args.output_dir,
        options,
        cfg,
        previous,
        inputs_lib.DatabaseInput(
            cfg.preprocess.table, cfg.preprocess.query, cfg.preprocess.partitions
        ),
        cfg.preprocess.encoding,
    )


def _show(record: dict, passed: bool) -> None:
    from tf_cartola.inspect import report

    del passed  # A backtest always passes: a low KS is a finding.
    good, line = report.backtest_line(record)
    print(json.dumps({k: record[k] for k in ("model", "run_id", "rows", "seconds")}, indent=2))
    print(line)
    if not good:
        log.error(
            "ALERT: the served model's realized KS %.3f is below blessing.min_ks %s",
            record["realized"]["ks"]["value"],
            record["realized"]["min_ks"],
        )
    for reason, n in sorted(record["labels"]["reasons"].items()):
        print(f"set aside: {n} {reason}")


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    from beam_jobs.jobs import backtest as backtest_job

    try:
        return job_cli.main(_parser(), run, argv, _show)
    except backtest_job.NoScores as e:
        print(f"nothing to backtest: {e}", file=sys.stderr)
        return EXIT_NO_SCORES


if __name__ == "__main__":
    cli.leave(cli.run(main))
