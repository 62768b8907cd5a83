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
transform (train, eval); (3) validation against the curated schema (and
eval-vs-train drift); (4) the manifest, and the transform outputs published only
if validation passed. Any flag this module does not know goes to Beam's
PipelineOptions. Exit status 1 means anomalies were found (their table is
printed; statistics and anomalies are written); 2 means bad arguments or config.
"""

import argparse
import difflib
import json
import sys

from tf_cartola import cli

EXIT_STATUS = "0 valid and transformed, 1 anomalies found, 2 bad arguments, config or input"


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("beam_jobs.preprocess", __doc__, EXIT_STATUS, config=True)
    parser.add_argument("--input", help="CSV path or glob (any Beam filesystem); overrides the config")
    parser.add_argument("--output_dir", help="where artifacts go; overrides the config")
    parser.add_argument("--schema", help="curated schema (text proto); overrides the config")
    parser.add_argument("--infer_schema", action="store_true", help="also write a schema inferred from train stats")
    parser.add_argument("--no_fail_on_anomalies", action="store_true", help="report anomalies but go on")
    return parser


class UnknownFlag(ValueError):
    """A flag neither this job nor Beam's PipelineOptions knows."""


def _check_beam_flags(beam_args) -> None:
    """Raises UnknownFlag for a flag Beam would discard (it only logs them), naming the closest known one."""
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(beam_args)
    known = options.get_all_options(retain_unknown_options=False)
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    if unknown:
        ours = [a.dest for a in _parser()._actions if a.option_strings]  # pylint: disable=protected-access
        close = difflib.get_close_matches(unknown[0], ours + sorted(known), n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        raise UnknownFlag(f"unknown flag --{unknown[0]}{hint}; see --help, and Beam's PipelineOptions")


def run(argv=None) -> dict:
    """Parses the command line, runs `job.preprocess` and returns its manifest.

    Raises:
      UnknownFlag: a flag that neither the job nor Beam knows (before any work).
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs import job
    from tf_cartola import config as config_lib

    args, beam_args = _parser().parse_known_args(argv)
    _check_beam_flags(beam_args)
    config = config_lib.load(args.config)
    config = config_lib.override(
        config, "preprocess", input=args.input, output_dir=args.output_dir, schema=args.schema,
        fail_on_anomalies=False if args.no_fail_on_anomalies else None,
    )
    return job.preprocess(config.preprocess, PipelineOptions(beam_args), args.infer_schema, config)


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    args, _ = _parser().parse_known_args(argv)
    cli.setup_logging(args.verbose)
    from beam_jobs import job
    from tf_cartola import config as config_lib
    from tf_cartola import rows

    try:
        manifest = run(argv)
    except job.AnomaliesFound as e:
        print(f"Anomalies found; statistics and anomalies are written.\n{e}", file=sys.stderr)
        return 1
    except (config_lib.ConfigError, FileNotFoundError, rows.InputError, UnknownFlag) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"output_dir": manifest["config"]["preprocess"]["output_dir"], "rows": manifest["rows"],
                      "seconds": manifest["seconds"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
