"""Scores a CSV of Cartola users against a model server (TF Serving or the local one).

    python -m serving.client --rest http://127.0.0.1:8501 --model cartola_pro --csv users.csv --out scores.csv
    python -m serving.client --grpc 127.0.0.1:8500 --model cartola_pro --csv users.csv --out scores.csv

Writes GLOBO_ID,pro_probability per row. Rows that cannot be typed are not sent:
they are counted and written with their reason to OUT.bad.jsonl.
"""

import argparse
import csv
import json
import logging
import sys
import time

from tf_cartola import features as F
from tf_cartola import rows
from tf_cartola.data import csv_reader

log = logging.getLogger("serving.client")


def score_csv(client, csv_path: str, out_path: str, batch_size: int = 500, version=None, label=None) -> dict:
    """Streams a CSV through `client.score` in batches.

    Args:
      client: a RestClient or GrpcClient.
      csv_path: input CSV with the contract's columns (the label may be absent).
      out_path: output CSV (GLOBO_ID, pro_probability); bad rows go to `out_path + ".bad.jsonl"`
        as the preprocessing job's quarantine records.
      batch_size: rows per request.

    Returns:
      {"scored": n, "bad": n, "seconds": s}
    """
    start, scored, bad = time.perf_counter(), 0, 0
    with open(csv_path, "rb") as f, open(out_path, "w", newline="") as out, \
            open(out_path + ".bad.jsonl", "w") as bad_out:
        writer = csv.writer(out)
        writer.writerow([F.ID_KEY, "pro_probability"])
        for chunk in csv_reader.read_csv(f, csv_path, label_required=False):
            for record in chunk.bad:
                bad_out.write(json.dumps(record, sort_keys=True) + "\n")
            bad += len(chunk.bad)
            records = csv_reader.to_records(chunk.batch)
            for i in range(0, len(records), batch_size):
                batch = records[i : i + batch_size]
                for record, p in zip(batch, client.score(batch, version=version, label=label)):
                    writer.writerow([record[F.ID_KEY], f"{p:.6f}"])
                scored += len(batch)
                log.info("scored %d rows (%.0f rows/s)", scored, scored / (time.perf_counter() - start))
    return {"scored": scored, "bad": bad, "seconds": round(time.perf_counter() - start, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", help="REST base URL, e.g. http://127.0.0.1:8501")
    where.add_argument("--grpc", help="gRPC HOST:PORT, e.g. 127.0.0.1:8500")
    parser.add_argument("--model", default="cartola_pro")
    parser.add_argument("--version", type=int)
    parser.add_argument("--label")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.rest:
        from serving.rest_client import RestClient, RestError as Error

        client = RestClient(args.rest, args.model, timeout=args.timeout)
    else:
        from serving.grpc_client import GrpcClient, GrpcError as Error

        client = GrpcClient(args.grpc, args.model, timeout=args.timeout)
    try:
        summary = score_csv(client, args.csv, args.out, args.batch_size, args.version, args.label)
    except (Error, rows.InputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
