"""Validates a batch of data against a served model's baseline: schema (SERVING), drift, bad rows.

    python -m beam_jobs.validate --baseline serving_models/cartola_pro/3 \
        --input 'data/to_score/*.csv' --output_dir runs/validate

    python -m beam_jobs.validate --input 'logs/requests*' --format prediction_log

The batch is users to score (CSV of the contract, with or without the label and id)
or TF Serving PredictionLog records (warmup files, the local server's request log):
Classify, Regress, MultiInference and Predict requests become raw rows again. Its
TFDV statistics are checked against the baseline's schema in the SERVING environment
and compared with the statistics of the data the model was trained on. The baseline
is a model version or a preprocessing output; by default the served version of the
configured model (tf_cartola.export.served). Any flag this module does not know goes to Beam's
PipelineOptions. Prints the drift table; on anomalies, also their table.
"""

import argparse
import json

from beam_jobs import job_cli
from tf_cartola.common import cli
from tf_cartola.contract import config as config_lib

EXIT_STATUS = (
    "0 valid, 1 anomalies, drift or bad rows found, 2 bad arguments, config, baseline, input or "
    "workers that cannot start (--worker_start_timeout)"
)


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("beam_jobs.validate", __doc__, EXIT_STATUS)
    config_lib.add_flag(parser)
    parser.add_argument(
        "--input",
        required=True,
        help="files of the batch: a path or glob (any Beam filesystem); "
        "or users in a database: postgresql://USER@HOST:PORT/DB with --table or --query",
    )
    job_cli.add_database_flags(parser)
    parser.add_argument(
        "--format",
        choices=("csv", "prediction_log"),
        default="csv",
        help="csv (the default) or prediction_log (TFRecords of TF Serving PredictionLog)",
    )
    parser.add_argument(
        "--baseline",
        default="served",
        help='a model version or preprocessing output; "served" (the default) is the latest '
        "served version of the configured model",
    )
    parser.add_argument(
        "--output_dir", default="runs/validate", help="where artifacts go (default: %(default)s)"
    )
    job_cli.add_accept_flags(parser)
    config_lib.add_serving_flags(parser)
    return parser


def run(argv=None) -> dict:
    """Parses the command line, runs `beam_jobs.jobs.validate.validate` and returns its manifest.

    Raises:
      baseline.BaselineError: no baseline (nothing served yet, or a directory without one).
    """
    from beam_jobs.jobs import validate as validation_job
    from tf_cartola.validate import baseline as baseline_lib

    args, beam_args = _parser().parse_known_args(argv)
    options = job_cli.pipeline_options(beam_args, _parser())
    config = config_lib.with_serving_flags(config_lib.load(args.config), args)
    cfg = config_lib.override(
        config,
        "preprocess",
        baseline=args.baseline,
        **job_cli.database_overrides(args),
        accept=tuple(args.accept) if args.accept else None,
        accepted_by=args.accepted_by,
    ).preprocess
    baseline = baseline_lib.resolve(cfg.baseline, config.serving)
    if baseline is None:
        from tf_cartola.export import served as served_lib

        served = served_lib.served(
            config.serving.serving_dir,
            config.serving.model_name,
            config.serving.model_config_file,
        )
        raise baseline_lib.BaselineError(
            f"no baseline: no served version of {config.serving.model_name} carries one "
            f"({served.describe()}), and --baseline names no model version or preprocessing output"
        )
    return validation_job.validate(
        args.input,
        baseline,
        args.output_dir,
        options,
        args.format,
        cfg,
    )


def drift_table(drift: dict) -> str:
    """The drift checks (one row per feature, as the report has them), as a plain-text table."""
    from tf_cartola.inspect import report

    lines = [f"{'feature':<20} {'verdict':<10}  tests: reference -> this data"]
    for feature, _, verdict, tests in report.drift_rows(drift):
        lines.append(f"{feature:<20} {verdict:<10}  {tests}")
    return "\n".join(lines)


def _show(manifest: dict, passed: bool) -> None:
    print(drift_table(manifest["drift"]))
    if passed:
        summary = {k: manifest[k] for k in ("rows", "valid", "seconds")}
        print(json.dumps({**summary, "baseline": manifest["baseline"]["description"]}, indent=2))


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    return job_cli.main(_parser(), run, argv, _show)


if __name__ == "__main__":
    cli.leave(cli.run(main))
