"""Scores a CSV of Cartola users against a model server (TF Serving or the local one).

    python -m serving.client --rest http://127.0.0.1:8501 --model cartola_pro --csv users.csv --out scores.csv
    python -m serving.client --grpc 127.0.0.1:8500 --model cartola_pro --csv users.csv --out scores.csv

Asks the server which raw columns the model uses (the inputs of its `predict_raw`
signature): the CSV needs those and GLOBO_ID, nothing else. Writes GLOBO_ID,pro_probability
per row to a temporary file that becomes --out only when every row is scored. Rows that
cannot be typed are not sent: they go, as the preprocessing job's quarantine records, to
OUT.bad.jsonl, which exists only when there are some.
"""

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse

from tf_cartola import features as F
from tf_cartola import rows
from tf_cartola.data import csv_reader

EXIT_OK, EXIT_ARGUMENTS, EXIT_INPUT, EXIT_UNREACHABLE, EXIT_SERVER = 0, 2, 3, 4, 5
EXIT_STATUS = ("0 scored; 2 bad arguments; 3 input problem (no file, a column the model uses is "
               "missing, a malformed file); 4 server unreachable; 5 the server refused or failed a request")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


def rest_url(text: str) -> str:
    """An argparse type: http(s)://HOST[:PORT], nothing after."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise argparse.ArgumentTypeError(f"expected a URL like http://127.0.0.1:8501, got {text!r}")
    return text.rstrip("/")


def grpc_address(text: str) -> str:
    """An argparse type: HOST:PORT, no scheme."""
    if not _HOST_PORT.match(text):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT without a scheme, like 127.0.0.1:8500, got {text!r}")
    return text


def _count_rows(path: str) -> int:
    with open(path, "rb") as f:
        return max(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1, 0)


def score_csv(client, csv_path: str, out_path: str, batch_size: int = 500, version=None, label=None,
              progress: bool = True) -> dict:
    """Streams a CSV through `client.score` in batches; the output appears only when complete.

    Args:
      client: a RestClient or GrpcClient.
      csv_path: input CSV with GLOBO_ID and the columns the served model uses.
      out_path: output CSV (GLOBO_ID, pro_probability); bad rows go to `out_path + ".bad.jsonl"`.
      batch_size: rows per request.
      progress: show a progress bar on stderr.

    Returns:
      {"scored": n, "bad": n, "out": path, "quarantine": path or None, "seconds": s}

    Raises:
      rows.InputError, FileNotFoundError: the CSV cannot be read as the model needs it.
      Exceptions of the client: the server failed or is unreachable.
    """
    import tqdm

    start, scored = time.perf_counter(), 0
    needed = [F.ID_KEY, *client.raw_inputs(version, label)]
    total = _count_rows(csv_path)
    directory = os.path.dirname(os.path.abspath(out_path))
    part = tempfile.NamedTemporaryFile("w", dir=directory, prefix=f".{os.path.basename(out_path)}.", suffix=".part",
                                       newline="", delete=False)
    quarantine = out_path + ".bad.jsonl"
    bad = []
    try:
        with part, open(csv_path, "rb") as f, tqdm.tqdm(total=total, unit="rows", disable=not progress,
                                                         desc="scoring") as bar:
            writer = csv.writer(part)
            writer.writerow([F.ID_KEY, "pro_probability"])
            for chunk in csv_reader.read_csv(f, csv_path, required=needed):
                bad += chunk.bad
                bar.update(len(chunk.bad))
                records = csv_reader.to_records(chunk.batch)
                for i in range(0, len(records), batch_size):
                    batch = records[i:i + batch_size]
                    for record, p in zip(batch, client.score(batch, version=version, label=label)):
                        writer.writerow([record[F.ID_KEY], f"{p:.6f}"])
                    scored += len(batch)
                    bar.update(len(batch))
        os.replace(part.name, out_path)
    finally:
        if os.path.exists(part.name):
            os.remove(part.name)  # Never leave a half-written result behind.
    if bad:
        with open(quarantine, "w") as f:
            f.writelines(json.dumps(record, sort_keys=True) + "\n" for record in bad)
    elif os.path.exists(quarantine):
        os.remove(quarantine)  # A stale one from an earlier run would mislead.
    return {"scored": scored, "bad": len(bad), "out": out_path, "quarantine": quarantine if bad else None,
            "seconds": round(time.perf_counter() - start, 2)}


def main(argv=None) -> int:
    from tf_cartola import cli

    parser = cli.parser("serving.client", __doc__, EXIT_STATUS)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", type=rest_url, help="REST base URL, e.g. http://127.0.0.1:8501")
    where.add_argument("--grpc", type=grpc_address, help="gRPC HOST:PORT, e.g. 127.0.0.1:8500")
    parser.add_argument("--model", default="cartola_pro", help="model name (default: %(default)s)")
    parser.add_argument("--version", type=int, help="a version number (default: the server's choice)")
    parser.add_argument("--label", help="a version label, e.g. stable")
    parser.add_argument("--csv", required=True, help="users to score")
    parser.add_argument("--out", required=True, help="scores CSV to write")
    parser.add_argument("--batch_size", type=int, default=500, help="rows per request (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds to wait for the server and model to come up, for scripts (default: %(default)s)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return EXIT_ARGUMENTS if e.code else EXIT_OK
    cli.setup_logging(args.verbose)
    if args.batch_size < 1:
        print("error: --batch_size must be >= 1", file=sys.stderr)
        return EXIT_ARGUMENTS
    if not os.path.isfile(args.csv):
        print(f"error: no such file: {args.csv}", file=sys.stderr)
        return EXIT_INPUT
    if args.rest:
        from serving.rest_client import RestClient, RestError, Unreachable as RestUnreachable

        client = RestClient(args.rest, args.model, timeout=args.timeout)
        unreachable, failed = (RestUnreachable,), (RestError,)
    else:
        from serving.grpc_client import GrpcClient, GrpcError

        client = GrpcClient(args.grpc, args.model, timeout=args.timeout)
        unreachable, failed = (), (GrpcError,)
    try:
        deadline = time.monotonic() + args.wait
        while True:  # The model's inputs, asked once the server answers (or at once without --wait).
            try:
                client.raw_inputs(args.version, args.label)
                break
            except unreachable + failed:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        summary = score_csv(client, args.csv, args.out, args.batch_size, args.version, args.label,
                            progress=not args.no_progress)
    except (rows.InputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except unreachable + failed as e:
        code = getattr(e, "code", None)
        if isinstance(e, unreachable) or (code is not None and code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED")):
            print(f"error: the server is unreachable: {e}", file=sys.stderr)
            return EXIT_UNREACHABLE
        print(f"error: the server refused or failed a request: {e}", file=sys.stderr)
        return EXIT_SERVER
    bad = f"; {summary['bad']} rows set aside in {summary['quarantine']}" if summary["bad"] else ""
    print(f"scored {summary['scored']} rows of {args.csv} into {summary['out']} in {summary['seconds']} s{bad}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
