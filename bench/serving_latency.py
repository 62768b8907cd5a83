"""Serving latency, side by side in one run: in-process SavedModel vs the local server over gRPC and REST.

    python bench/serving_latency.py --model_base_path serving_models/cartola_pro [--requests 200]

Needs a pushed model (`make demo`). Prints the median and p95 latency per path and
batch size, and each path's ratio to the in-process call. Traffic stays on 127.0.0.1.
"""

import argparse
import statistics
import time

import pandas as pd
import tensorflow as tf

from serving.grpc_client import GrpcClient
from serving.local_server import LocalServer
from serving.rest_client import RestClient
from serving.servables import single_model_config
from tf_cartola import export, rows
from tf_cartola.data import synthetic


def _timings(fn, requests: int) -> list:
    fn()  # Warm: first calls trace and connect.
    out = []
    for _ in range(requests):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_base_path", default="serving_models/cartola_pro")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    frame = synthetic.generate(100, seed=1).drop(columns=["pro_target"])
    records = frame.astype(object).where(pd.notna(frame), None).to_dict("records")
    config = single_model_config("cartola_pro", args.model_base_path)
    with LocalServer(config, grpc_port=0, rest_port=0, poll_seconds=0) as server:
        servable = server.manager.get("cartola_pro")
        raw = servable.loaded.signatures[export.RAW_SIGNATURE]
        rest, grpc_client = RestClient(server.rest_url, "cartola_pro"), GrpcClient(server.grpc_address, "cartola_pro")
        print(f"model version {servable.version}, {args.requests} requests per cell, milliseconds")
        print(f"{'batch':>5} {'path':<12} {'median':>8} {'p95':>8} {'x in-process':>13}")
        for batch in (1, 100):
            chunk = records[:batch]
            columns = {k: tf.constant(v) for k, v in rows.to_columns(chunk, rest.raw_inputs()).items()}
            paths = {
                "in-process": lambda: raw(**columns),
                "gRPC": lambda: grpc_client.score(chunk),
                "REST": lambda: rest.score(chunk),
            }
            medians = {}
            for name, fn in paths.items():
                t = sorted(_timings(fn, args.requests))
                medians[name] = statistics.median(t)
                p95 = t[int(0.95 * (len(t) - 1))]
                print(f"{batch:>5} {name:<12} {medians[name]:>8.2f} {p95:>8.2f} "
                      f"{medians[name] / medians['in-process']:>13.1f}")
        grpc_client.close()


if __name__ == "__main__":
    main()
