"""Validates the Cartola CSV with TFDV and fits the tf.Transform graph, in one Beam pipeline.

Locally (DirectRunner):

    python -m beam_jobs.preprocess --config configs/default.yaml \
        --input data/cartola.csv --output_dir runs/preprocess

On Dataflow (the pipeline becomes one Dataflow job; workers install this package):

    python -m beam_jobs.preprocess --config configs/default.yaml \
        --input 'gs://BUCKET/cartola/*.csv' --output_dir gs://BUCKET/runs/preprocess \
        --runner DataflowRunner --project PROJECT --region REGION \
        --temp_location gs://BUCKET/tmp --setup_file ./setup.py

Stages: (1) check and hash the inputs; (2) one Beam pipeline, one read of the
input: type and split the rows as Arrow record batches (bad rows quarantined),
write the raw splits, TFDV statistics per split, tf.Transform analyze (train) and
transform (train, eval); (3) validation against the curated schema, and drift
of eval from train and of train from the baseline (by default the served version of
the configured model, tf_cartola.export.served, which carries its training data's statistics);
(4) the manifest, and the transform outputs published only if validation passed.
Any flag this module does not know goes to Beam's
PipelineOptions. Exit status 1 means anomalies were found (their table is
printed; statistics and anomalies are written); 2 means bad arguments or config.
"""

import argparse
import json
import sys

from beam_jobs import job_cli
from tf_cartola.common import cli
from tf_cartola.contract import config as config_lib

EXIT_STATUS = (
    "0 valid and transformed, 1 anomalies found, 2 bad arguments, config, input or workers that "
    "cannot start (--worker_start_timeout)"
)


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("beam_jobs.preprocess", __doc__, EXIT_STATUS)
    config_lib.add_flag(parser)
    parser.add_argument(
        "--input",
        help="CSV path or glob (any Beam filesystem), or postgresql://USER@HOST:PORT/DB "
        "(password from PGPASSWORD or ~/.pgpass); overrides the config",
    )
    job_cli.add_database_flags(parser)
    parser.add_argument("--output_dir", help="where artifacts go; overrides the config")
    parser.add_argument("--schema", help="curated schema (text proto); overrides the config")
    parser.add_argument(
        "--baseline",
        help="compare the train split with this model version or preprocessing "
        'output; "served" (the default) is the served version, "none" skips it',
    )
    parser.add_argument(
        "--infer_schema", action="store_true", help="also write a schema inferred from train stats"
    )
    parser.add_argument(
        "--no_fail_on_anomalies",
        action="store_true",
        help="print the anomalies but go on (the output is not valid for training)",
    )
    job_cli.add_accept_flags(parser)
    config_lib.add_serving_flags(parser)
    return parser


def run(argv=None):
    """Parses the command line, runs `beam_jobs.jobs.preprocess.preprocess` and returns its
    `Manifest`.

    Data that fails validation also gets the report page (`report.html` in the output folder),
    something to open and share, named in the error.

    Raises:
      job_cli.UnknownFlag: a flag that neither the job nor Beam knows (before any work).
      AnomaliesFound: the data failed validation (everything is written first).
    """
    from beam_jobs.jobs import preprocess as preprocess_job
    from beam_jobs.shared.outputs import AnomaliesFound
    from tf_cartola.common import files
    from tf_cartola.inspect import report

    args, beam_args = _parser().parse_known_args(argv)
    options = job_cli.pipeline_options(beam_args, _parser())
    config = config_lib.with_serving_flags(config_lib.load(args.config), args)
    config = config_lib.override(
        config,
        "preprocess",
        input=args.input,
        output_dir=args.output_dir,
        schema=args.schema,
        baseline=args.baseline,
        **job_cli.database_overrides(args),
        fail_on_anomalies=False if args.no_fail_on_anomalies else None,
        accept=tuple(args.accept) if args.accept else None,
        accepted_by=args.accepted_by,
    )
    try:
        return preprocess_job.preprocess(config.preprocess, options, args.infer_schema, config)
    except AnomaliesFound as e:
        page = report.write_report(
            files.join(config.preprocess.output_dir, "report.html"), config.preprocess.output_dir
        )
        raise AnomaliesFound(f"{e}\nreport: {page}", e.manifest) from None


def _show(manifest, passed: bool) -> None:
    from tf_cartola.validate import validation

    shown = [tuple(a[k] for k in validation.ANOMALY_FIELDS) for a in manifest.anomalies]
    if passed and shown:  # Accepted, or --no_fail_on_anomalies: said all the same.
        print(f"Anomalies (the run goes on):\n{validation.format_table(shown)}", file=sys.stderr)
    if passed:
        print(
            json.dumps(
                {"output_dir": manifest.dir, "rows": manifest.rows, "seconds": manifest.seconds},
                indent=2,
            )
        )


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    return job_cli.main(_parser(), run, argv, _show)


if __name__ == "__main__":
    cli.leave(cli.run(main))
