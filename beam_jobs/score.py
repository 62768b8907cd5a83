"""Scores every user of a CSV (file, glob or gs://) or a PostgreSQL table with a pushed model, in
one Beam job.

Locally (DirectRunner):

    python -m beam_jobs.score --input data/cartola.csv --serving_dir serving_models \
        --output runs/score/scores
    python -m beam_jobs.score --input postgresql://cartola@db:5432/cartola --table users \
        --model_dir serving_models/cartola_pro/3 --db postgresql://cartola@db:5432/cartola \
        --scores_table scores

On Dataflow add `--runner DataflowRunner --project P --region R --temp_location gs://B/tmp` and the
worker image or `--setup_file ./setup.py` (README, "Beyond one machine"); inputs, the model and the
output on gs://. The model is the served version of --model_name under --serving_dir (the `stable`
label of --model_config_file, the models.config the server runs with; else the newest version)
unless --version or --model_dir says otherwise. Writes `<output>-NNNNN-of-NNNNN.csv` (GLOBO_ID,
pro_probability, model_name, model_version, run_id, decile, pro_target), the rows set aside (bad,
or with --set_aside_invalid outside the model's schema) in `<prefix>.bad-*.jsonl` and
`<prefix>.manifest.json`, where the prefix is --output, else --scores_table. Any flag this module
does not know goes to Beam's PipelineOptions.
"""

import argparse
import json
import sys

from beam_jobs import job_cli
from tf_cartola.common import cli
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import months
from tf_cartola.validate import scoring_checks

EXIT_STATUS = (
    "0 scored, 2 bad arguments, config, input, no model version or workers that cannot start "
    "(--worker_start_timeout), 3 more than --max_set_aside_fraction of the rows set aside (the "
    "scores, quarantine and manifest are written)"
)


EXIT_SET_ASIDE = 3


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("beam_jobs.score", __doc__, EXIT_STATUS)
    config_lib.add_flag(parser)
    parser.add_argument(
        "--input",
        required=True,
        help="CSV path or glob (any Beam filesystem), or "
        "postgresql://USER@HOST:PORT/DB with --table or --query",
    )
    job_cli.add_database_flags(parser)
    config_lib.add_serving_flags(parser)
    parser.add_argument(
        "--version", type=int, help="score with this version (default: the served one)"
    )
    parser.add_argument("--model_dir", help="score with this SavedModel folder instead")
    parser.add_argument("--output", help="prefix of the CSV shards of scores")
    parser.add_argument(
        "--db", help="also (or instead) upsert the scores into this postgresql:// database"
    )
    parser.add_argument(
        "--scores_table", default="scores", help="with --db (default: %(default)s)"
    )
    scoring_checks.add_flags(parser)
    parser.add_argument(
        "--run_id",
        help="the month the data is of, YYYY-MM, kept with every score; a rerun with the same id "
        "replaces its rows in a table (default: the month the input's names carry; required "
        "when they carry none)",
    )
    campaign = parser.add_argument_group("a campaign's target list (README, Closing the loop)")
    campaign.add_argument(
        "--targets",
        type=int,
        default=0,
        help="also write PREFIX.targets.csv: the N highest-scored users not PRO at scoring time",
    )
    campaign.add_argument(
        "--backtest",
        help="the latest backtest.json (beam_jobs.backtest): its conversion rates per decile give "
        "the list's expected conversions (without it there are none)",
    )
    campaign.add_argument(
        "--value_per_conversion", type=float, help="with --cost_per_contact: the best list size"
    )
    campaign.add_argument("--cost_per_contact", type=float, help="with --value_per_conversion")
    return parser


def run(argv=None) -> dict:
    """Parses the command line, runs `score_job.score` and returns its manifest.

    Raises:
      job_cli.UnknownFlag: a flag that neither the job nor Beam knows (before any work).
      models.NoModel: no model version where the flags point.
    """
    from beam_jobs.jobs import score as score_job
    from beam_jobs.shared import inputs as inputs_lib
    from tf_cartola.score import models

    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    options = job_cli.pipeline_options(beam_args, parser)
    if not args.output and not args.db:
        parser.error("nowhere to write the scores: give --output and/or --db")
    if args.targets < 0:
        parser.error("--targets must be >= 0")
    if (args.value_per_conversion is None) != (args.cost_per_contact is None):
        parser.error("--value_per_conversion and --cost_per_contact go together")
    try:
        run_id = months.resolve(args.run_id, [] if "://" in args.input else [args.input])
    except ValueError as e:
        parser.error(str(e))
    config = config_lib.with_serving_flags(config_lib.load(args.config), args)
    model = models.find_model(config.serving, args.version, args.model_dir)
    cfg = config_lib.override(
        config,
        "preprocess",
        **job_cli.database_overrides(args),
    ).preprocess
    return score_job.score(
        args.input,
        model,
        options,
        run_id,
        score_job.Destination(args.output, args.db, args.scores_table),
        inputs_lib.DatabaseInput(cfg.table, cfg.query, cfg.partitions),
        cfg.encoding,
        args.set_aside_invalid,
        args.max_set_aside_fraction,
        score_job.CampaignOptions(
            args.targets, args.backtest, args.value_per_conversion, args.cost_per_contact
        ),
    )


def _show(manifest: dict, passed: bool) -> None:
    from beam_jobs.jobs import score as score_job
    from tf_cartola.evaluate import campaign

    if passed:
        print(
            json.dumps({k: manifest[k] for k in ("model", "rows", "outputs", "seconds")}, indent=2)
        )
        if manifest["targets"]:
            print(campaign.describe_targets(manifest["targets"]))
        for reason, n in sorted(score_job.set_aside_reasons(manifest).items()):
            print(f"set aside: {n} {reason}")
        for line in scoring_checks.warnings(
            manifest["rows"]["read"],
            manifest["invalid"],
            manifest["duplicate_ids"],
            manifest["set_aside_invalid"],
        ):
            print(f"warning: {line}", file=sys.stderr)


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    try:
        return job_cli.main(_parser(), run, argv, _show)
    except scoring_checks.TooManySetAside as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_SET_ASIDE


if __name__ == "__main__":
    cli.leave(cli.run(main))
