"""Reading users from PostgreSQL vs from a CSV file, side by side in one run, into typed record
batches.

    python bench/postgres_read.py --rows 1000000 [--partitions 4]

Generates the users, writes them as a CSV, starts a throwaway PostgreSQL on loopback
(tf_cartola.common.local_postgres) and loads the same rows with COPY; then times, one
after the other: the CSV through `csv_reader.read_csv`, the snapshot with the row count and
fingerprint the database computes (part of every table read below), the table as one partition
(`postgres.read_all`), and the table as N partitions read by N threads (as N Beam
workers would). Prints rows/s and each rate's ratio to the CSV's; writes
bench/results/postgres_read-ROWS.json.
"""

import argparse
import concurrent.futures
import json
import os
import tempfile
import time

from tf_cartola import synthetic
from tf_cartola.common import local_postgres
from tf_cartola.read import csv_reader, postgres
from tf_cartola.write import postgres as write_postgres


def _rows(chunks) -> int:
    return sum(c.batch.num_rows + len(c.bad) for c in chunks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    results = {"rows": args.rows, "partitions": args.partitions}
    with tempfile.TemporaryDirectory() as tmp, local_postgres.running() as server:
        os.environ.update(server.env)
        path = os.path.join(tmp, "users.csv")
        synthetic.write_csv(synthetic.generate(args.rows, seed=0), path)
        start = time.perf_counter()
        write_postgres.load_csv(server.url, server.password, "users", path)
        results["load_copy_seconds"] = round(time.perf_counter() - start, 2)

        def timed(name, fn):
            start = time.perf_counter()
            n = fn()
            seconds = time.perf_counter() - start
            assert n == args.rows, (name, n)
            results[name] = {"seconds": round(seconds, 2), "rows_per_second": round(n / seconds)}

        def csv_rows():
            with open(path, "rb") as f:
                return _rows(csv_reader.read_csv(f, path))

        def table_partitions():
            with (
                postgres.snapshot(server.url, "users", partitions=args.partitions) as (parts, _),
                concurrent.futures.ThreadPoolExecutor(args.partitions) as pool,
            ):
                return sum(pool.map(lambda p: _rows(postgres.read_partition(p)), parts))

        def snapshot_only():
            with postgres.snapshot(server.url, "users") as (_, description):
                return description["rows"]

        timed("csv", csv_rows)
        timed("snapshot_count_fingerprint", snapshot_only)
        timed("table_1_partition", lambda: _rows(postgres.read_all(server.url, "users")))
        timed(f"table_{args.partitions}_partitions_threads", table_partitions)
    base = results["csv"]["rows_per_second"]
    for name, r in results.items():
        if isinstance(r, dict):
            r["ratio_to_csv"] = round(r["rows_per_second"] / base, 2)
            print(
                f"{name:>32}: {r['seconds']:7.2f} s  {r['rows_per_second']:>9,} rows/s  "
                f"x{r['ratio_to_csv']}"
            )
    print(f"load with COPY: {results['load_copy_seconds']} s")
    out = os.path.join(os.path.dirname(__file__), "results", f"postgres_read-{args.rows}.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
