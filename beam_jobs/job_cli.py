"""What the Beam jobs' command lines share: Beam flag checking and the mapping of failures to exit
statuses.
"""

import argparse
import difflib
import sys
import typing

from tf_cartola.common import cli


class UnknownFlag(ValueError):
    """A flag neither the job nor Beam's PipelineOptions knows."""


def pipeline_options(beam_args, parser: argparse.ArgumentParser):
    """The job's Beam PipelineOptions, also given to Beam's filesystems: the job's own reads,
    writes and clearing before and after its pipeline reach the stores the pipeline does (an S3
    endpoint, credentials).

    Raises:
      UnknownFlag: for a flag Beam would discard (it only logs them), naming the closest known one.
    """
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_jobs.shared import workers  # noqa: F401 (registers --worker_start_timeout)

    options = PipelineOptions(beam_args)
    known = options.get_all_options(retain_unknown_options=False)
    try:
        unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    except argparse.ArgumentError as e:  # An unknown flag given twice: "conflicting option".
        unknown = [e.argument_name.lstrip("-")]
    if unknown:
        ours = [a.dest for a in parser._actions if a.option_strings]
        close = difflib.get_close_matches(unknown[0], ours + sorted(known), n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        raise UnknownFlag(
            f"unknown flag --{unknown[0]}{hint}; see --help, and Beam's PipelineOptions"
        )
    FileSystems.set_options(options)
    return options


def add_database_flags(parser: argparse.ArgumentParser) -> None:
    """--table, --query and --partitions, for a postgresql:// --input, and --encoding for a CSV one
    (they override the config).
    """
    parser.add_argument(
        "--encoding",
        help="a CSV input's text encoding, e.g. windows-1252 (config default: utf-8); "
        "a line that is not text in it is set aside",
    )
    parser.add_argument(
        "--table", help="with a database --input: the table (or schema.table) to read"
    )
    parser.add_argument(
        "--query", help="with a database --input: a SELECT to read instead of a table"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        help="with a database --input: ranges of GLOBO_ID read in parallel (config default: 4)",
    )


def database_overrides(args) -> dict:
    """The config's preprocess fields that add_database_flags' flags override (None: as is)."""
    return {
        "table": args.table,
        "query": args.query,
        "partitions": args.partitions,
        "encoding": args.encoding,
    }


def add_accept_flags(parser: argparse.ArgumentParser) -> None:
    """--accept FEATURE (repeatable) and --accepted_by: anomalies accepted on purpose."""
    parser.add_argument(
        "--accept",
        action="append",
        metavar="FEATURE",
        help="accept this feature's anomalies and drift for this run, on purpose (repeatable; "
        "recorded in the manifest, the report, the pushed version and the decisions log); "
        "anything else still fails the run",
    )
    parser.add_argument(
        "--accepted_by", help="who accepts them (default: the user running the job)"
    )


def main(
    parser: argparse.ArgumentParser, run: typing.Callable, argv, show: typing.Callable
) -> int:
    """Runs a job's `run(argv)` and returns the exit status: 0 done, 1 anomalies (their table on
    stderr), 2 bad arguments, config, baseline, input or workers that cannot run the job (one line
    on stderr).

    Args:
      parser: the job's argument parser (its -v sets up logging first).
      run: the job's `run(argv)`, which returns its manifest.
      argv: the command line (None: sys.argv).
      show: called with (manifest, passed) to print what the job found.
    """
    args, _ = parser.parse_known_args(argv)
    cli.setup_logging(args.verbose)
    from beam_jobs.shared import workers
    from beam_jobs.shared.outputs import AnomaliesFound
    from tf_cartola.contract import config as config_lib
    from tf_cartola.contract import rows
    from tf_cartola.export import served
    from tf_cartola.validate import baseline

    try:
        manifest = run(argv)
    except AnomaliesFound as e:
        show(e.manifest, False)
        print(f"Anomalies found; statistics and anomalies are written.\n{e}", file=sys.stderr)
        return 1
    except (
        config_lib.ConfigError,
        FileNotFoundError,
        rows.InputError,
        UnknownFlag,
        baseline.BaselineError,
        served.ServedError,
        workers.WorkersUnavailable,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    show(manifest, True)
    return 0
