"""Scores Cartola users, from a CSV or a PostgreSQL table, with a served model or a SavedModel
in-process.

    python -m serving.client --rest http://127.0.0.1:8501 --model cartola_pro --csv users.csv \
        --out scores.csv
    python -m serving.client --grpc 127.0.0.1:8500 --model cartola_pro --csv users.csv --out \
        scores.csv
    python -m serving.client --model_dir serving_models/cartola_pro/3 \
        --db postgresql://cartola@db:5432/cartola --table users --out \
            postgresql://cartola@db:5432/cartola

Asks the model which raw columns it uses (the inputs of its `predict_raw` signature):
the users need those and GLOBO_ID, nothing else. Once every row is scored it ranks the run into
deciles (1 = the highest 10% of scores, ties by GLOBO_ID: tf_cartola.evaluate.campaign, as
beam_jobs.score does) and writes a row per user: GLOBO_ID, pro_probability, model_name,
model_version, run_id, decile and pro_target (the label at scoring time, empty when the input has
none). To a CSV it writes to a temporary file that becomes --out when complete. To a database it
upserts those columns and scored_at into --scores_table (created if missing), one transaction per
--batch_size rows: a crash leaves whole batches, and a rerun replaces the run's rows instead of
adding them. Database passwords come from
PGPASSWORD or ~/.pgpass. Rows that cannot be typed are not sent: they go, as the
preprocessing job's quarantine records, to --quarantine (default OUT.bad.jsonl, or
SCORES_TABLE.bad.jsonl for a database), which exists only when there are some.
"""

import argparse
import contextlib
import re
import sys
import time
import typing
import urllib.parse

from tf_cartola.common import cli, files
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import features as F
from tf_cartola.contract import months, rows
from tf_cartola.export import served as served_lib
from tf_cartola.export import store as model_store
from tf_cartola.read import csv_reader
from tf_cartola.score import batches, models, sinks
from tf_cartola.validate import scoring_checks

EXIT_OK, EXIT_ARGUMENTS, EXIT_INPUT, EXIT_UNREACHABLE, EXIT_SERVER = 0, 2, 3, 4, 5
EXIT_STATUS = (
    "0 scored; 2 bad arguments or config; 3 input problem (no file, a column the model uses is "
    "missing, a malformed file, more than --max_set_aside_fraction of the rows set aside); 4 "
    "server unreachable; 5 the server refused or failed a request"
)
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


def rest_url(text: str) -> str:
    """An argparse type: http(s)://HOST[:PORT], nothing after."""
    parts = urllib.parse.urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path.strip("/")
        or parts.query
    ):
        raise argparse.ArgumentTypeError(
            f"expected a URL like http://127.0.0.1:8501, got {text!r}"
        )
    return text.rstrip("/")


def grpc_address(text: str) -> str:
    """An argparse type: HOST:PORT, no scheme."""
    if not _HOST_PORT.match(text):
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT without a scheme, like 127.0.0.1:8500, got {text!r}"
        )
    return text


def _count_rows(path: str) -> int:
    with files.open_file(path, "rb") as f:
        return max(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1, 0)


def _model_path(args, version) -> typing.Tuple[typing.Optional[str], str]:
    """(the folder of the version that scores, or None, and why there is none): --model_dir, else
    the version's folder under --serving_dir.
    """
    if args.model_dir:
        return args.model_dir, ""
    where = model_store.version_dir(files.join(args.serving_dir, args.model), version)
    if files.isdir(where):
        return where, ""
    return None, (
        f"no version {version} of {args.model} under {args.serving_dir}: give --serving_dir, the "
        "folder the server loads versions from"
    )


def _stable_label(args, model_config_file: str) -> typing.Optional[str]:
    """The label to ask the server for when no --version or --label is given: `stable` when the
    models.config the server runs with has it (a request without one gets the newest version, TF
    Serving's rule, which is a canary's during a canary), else None (the server's newest).
    """
    if args.model_dir or not model_config_file:
        return None
    labels = served_lib.policy(model_config_file, args.model).labels
    return served_lib.STABLE if served_lib.STABLE in labels else None


def _client(args):
    """(client, unreachable errors, failure errors) for the chosen server or model folder."""
    if args.rest:
        from serving.rest_client import RestClient, RestError
        from serving.rest_client import Unreachable as RestUnreachable

        return (
            RestClient(args.rest, args.model, timeout=args.timeout),
            (RestUnreachable,),
            (RestError,),
        )
    if args.grpc:
        from serving.grpc_client import GrpcClient, GrpcError

        return GrpcClient(args.grpc, args.model, timeout=args.timeout), (), (GrpcError,)
    from serving.inprocess_client import InProcessClient

    return InProcessClient(args.model_dir), (), ()


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("serving.client", __doc__, EXIT_STATUS)
    config_lib.add_flag(parser)
    _model_flags(parser.add_argument_group("the model"))
    _user_flags(parser.add_argument_group("the users"))
    _output_flags(parser.add_argument_group("the scores"))
    requests = parser.add_argument_group("the requests")
    requests.add_argument(
        "--batch_size", type=int, default=500, help="rows per request (default: %(default)s)"
    )
    requests.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)"
    )
    requests.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for the server and model to come up, for scripts (default: "
        "%(default)s)",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def _model_flags(group) -> None:
    """Which server or folder, model and version score, and the schema rows are checked with."""
    where = group.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", type=rest_url, help="REST base URL, e.g. http://127.0.0.1:8501")
    where.add_argument("--grpc", type=grpc_address, help="gRPC HOST:PORT, e.g. 127.0.0.1:8500")
    where.add_argument(
        "--model_dir", help="score in this process with a model version folder (no server)"
    )
    group.add_argument(
        "--model",
        "--model_name",
        dest="model",
        help="model name (default: the config's serving.model_name)",
    )
    group.add_argument(
        "--serving_dir",
        help="with --rest or --grpc: the folder the server loads versions from, so rows are "
        "checked against the served version's schema (--model_dir carries its own; default: the "
        "config's serving.serving_dir)",
    )
    scoring_checks.add_flags(group)
    group.add_argument(
        "--version",
        type=int,
        help="a version number (default: the served one: the `stable` label of "
        "--model_config_file, else the server's newest)",
    )
    group.add_argument("--label", help="a version label, e.g. canary")
    config_lib.add_model_config_flag(group)


def _user_flags(group) -> None:
    """Where the users are: a CSV, or a table or query of a database."""
    users = group.add_mutually_exclusive_group(required=True)
    users.add_argument("--csv", help="users to score: a CSV file")
    users.add_argument(
        "--db", help="users to score: postgresql://USER@HOST:PORT/DB, with --table or --query"
    )
    group.add_argument(
        "--encoding",
        default="utf-8",
        help="the CSV's text encoding, e.g. windows-1252 (default: %(default)s); a line that is "
        "not text in it is set aside",
    )
    group.add_argument("--table", help="with --db: the users' table")
    group.add_argument("--query", help="with --db: a SELECT of the users")


def _output_flags(group) -> None:
    """Where the scores and the rows set aside go, and the run's id."""
    group.add_argument(
        "--out", required=True, help="scores: a CSV file, or postgresql://USER@HOST:PORT/DB"
    )
    group.add_argument(
        "--scores_table", default="scores", help="with a database --out (default: %(default)s)"
    )
    group.add_argument(
        "--run_id",
        help="the month the data is of, YYYY-MM, kept with every score; a rerun with the same id "
        "replaces its rows in a table (default: the month the --csv name carries; required when "
        "it carries none, and with --db)",
    )
    group.add_argument(
        "--quarantine", help="bad rows (default: OUT.bad.jsonl, or SCORES_TABLE.bad.jsonl)"
    )


class _Stop(Exception):
    """Ends the command with an exit status and one line on stderr."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_ARGUMENTS if e.code else EXIT_OK
    cli.setup_logging(args.verbose)
    try:
        stable, run_id = _checked(args)
        summary, source = _scored(args, stable, run_id)
        _report(summary, source, args)
    except _Stop as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    return EXIT_OK


def _checked(args) -> typing.Tuple[typing.Optional[str], str]:
    """Fills the config's defaults into `args` and checks them before any work: returns the
    `stable` label's version (or None) and the run's id.
    """
    try:
        serving = config_lib.load(args.config).serving
        args.model = args.model or serving.model_name
        args.serving_dir = args.serving_dir or serving.serving_dir
        stable = _stable_label(args, args.model_config_file or serving.model_config_file)
    except (config_lib.ConfigError, FileNotFoundError, served_lib.ServedError) as e:
        raise _Stop(EXIT_ARGUMENTS, str(e)) from None
    if args.batch_size < 1:
        raise _Stop(EXIT_ARGUMENTS, "--batch_size must be >= 1")
    if args.db and bool(args.table) == bool(args.query):
        raise _Stop(EXIT_ARGUMENTS, "--db needs exactly one of --table and --query")
    if args.csv and (not files.exists(args.csv) or files.isdir(args.csv)):
        raise _Stop(EXIT_INPUT, f"no such file: {args.csv}")
    if args.model_dir and not files.isdir(args.model_dir):
        raise _Stop(EXIT_INPUT, f"no such model folder: {args.model_dir}")
    try:
        return stable, months.resolve(args.run_id, [args.csv] if args.csv else [])
    except ValueError as e:
        raise _Stop(EXIT_ARGUMENTS, str(e)) from None


def _scored(args, stable, run_id: str) -> typing.Tuple[dict, str]:
    """Scores the users with the served version: returns the run's summary and its source."""
    import tqdm

    client, unreachable, failed = _client(args)
    try:
        version, needed = _version_when_up(client, args, stable, unreachable + failed)
        with contextlib.ExitStack() as held:
            source, total, chunks = _users(args, needed, held)
            path, why_none = _model_path(args, version)
            rules = models.schema_rules(path, needed[1:], why_none)
            checks = batches.Checks(rules, args.set_aside_invalid, source)
            # Every request names the version, so each row is labelled with the one that answered
            # it; a version unloaded mid-run fails the run instead of being answered by another.
            sink, quarantine = _sink(args, (args.model, version, run_id))
            bar = held.enter_context(
                tqdm.tqdm(total=total, unit="rows", disable=args.no_progress, desc="scoring")
            )
            summary = batches.stream(
                client, chunks, sink, quarantine, checks, args.batch_size, version, bar
            )
    except (rows.InputError, FileNotFoundError) as e:
        raise _Stop(EXIT_INPUT, str(e)) from None
    except unreachable + failed as e:
        code = getattr(e, "code", None)
        if isinstance(e, unreachable) or (
            code is not None and code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
        ):
            raise _Stop(EXIT_UNREACHABLE, f"the server is unreachable: {e}") from None
        raise _Stop(EXIT_SERVER, f"the server refused or failed a request: {e}") from None
    return summary, source


def _version_when_up(client, args, stable, errors: tuple):
    """(the version to score with, the columns it needs), asked once the server answers (within
    --wait seconds).
    """
    deadline = time.monotonic() + args.wait
    while True:
        try:
            version = client.served_version(args.version, args.label or stable)
            return version, [F.ID_KEY, *client.raw_inputs(version)]
        except errors:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _users(args, needed: list, held: contextlib.ExitStack):
    """(source, rows or None, typed chunks) of the users to score: a CSV or a database query."""
    from tf_cartola.read import postgres

    if args.csv:
        f = held.enter_context(files.open_file(args.csv, "rb"))
        chunks = csv_reader.read_csv(f, args.csv, required=needed, encoding=args.encoding)
        return args.csv, _count_rows(args.csv), chunks
    chunks = postgres.read_all(args.db, args.table, args.query, required=needed)
    return postgres.masked(args.db), None, chunks


def _sink(args, made_by: sinks.MadeBy):
    """(the scores' sink, the quarantine's path): a table or a CSV, as --out says. A table first
    loses the run's earlier rows of this model: a rerun replaces them instead of adding.
    """
    from tf_cartola.read import postgres

    if postgres.is_database(args.out):
        sinks.clear_run(args.out, args.scores_table, made_by)
        sink = sinks.TableScores(args.out, args.scores_table, made_by, args.batch_size)
        return sink, args.quarantine or f"{args.scores_table}.bad.jsonl"
    return sinks.CsvScores(args.out, made_by), args.quarantine or args.out + ".bad.jsonl"


def _report(summary: dict, source: str, args) -> None:
    """Prints what was scored and set aside, and why; raises _Stop for too much set aside."""
    for line in scoring_checks.warnings(
        summary["read"], summary["invalid"], summary["duplicate_ids"], args.set_aside_invalid
    ):
        print(f"warning: {line}", file=sys.stderr)
    bad = f"; {summary['bad']} rows set aside in {summary['quarantine']}" if summary["bad"] else ""
    print(
        f"scored {summary['scored']} rows of {source} into {summary['out']} in "
        f"{summary['seconds']} s{bad}"
    )
    for reason, n in sorted(summary["reasons"].items()):
        print(f"set aside: {n} {reason}")
    try:
        scoring_checks.check_set_aside(
            summary["read"], summary["bad"], summary["reasons"], args.max_set_aside_fraction
        )
    except scoring_checks.TooManySetAside as e:
        raise _Stop(EXIT_INPUT, str(e)) from None


if __name__ == "__main__":
    cli.leave(cli.run(main))
