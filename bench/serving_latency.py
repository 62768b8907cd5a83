"""Serving latency and throughput, side by side in one run: the signature in-process vs the local
server over gRPC and REST, and over gRPC with TF Serving's batching as the container configures it.

    python bench/serving_latency.py --model_base_path serving_models/cartola_pro [--requests 300]

Needs a pushed model (`make demo`). For batch sizes 1, 64 and 1024 and 1 or 16 concurrent
clients, prints p50 and p99 latency per path, rows/s, and each path's p50 minus the
in-process p50 and its rows/s as a share of in-process. Every path calls the same
`predict_raw` signature with the same rows, encoded once (a PredictRequest over gRPC,
columnar JSON over REST on a kept-alive connection), so the differences are transport
and server. The servers run as their own processes, started by their command line as users
and the container start them, so the clients' threads do not share their interpreter lock:
one plain, one with `--enable_batching` and `--batching_parameters_file` (the container's
`serving/batching_parameters.txt` unless given).
Traffic stays on 127.0.0.1. Writes bench/results/serving_latency.json.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import typing
import urllib.parse

import grpc
import numpy as np
import pandas as pd
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.rest_client import RestClient, RestError
from tf_cartola import synthetic
from tf_cartola.common import loopback
from tf_cartola.contract import signatures
from tf_cartola.export import requests

MODEL = "cartola_pro"


def _run(make_call, requests: int, concurrency: int) -> dict:
    """Latencies (ms) of `requests` calls spread over `concurrency` threads, each with its own
    call.
    """
    calls = [make_call() for _ in range(concurrency)]
    for call in calls:
        call()  # Warm: first calls trace and connect.

    def worker(call):
        out = []
        for _ in range(requests // concurrency):
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1000)
        return out

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(x for part in pool.map(worker, calls) for x in part)
    seconds = time.perf_counter() - start
    return {
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
        "calls_per_second": len(latencies) / seconds,
    }


def _grpc_call(address: str, request):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))
    return lambda: stub.Predict(request, timeout=60)


def _rest_call(url: str, body: bytes):
    connection = http.client.HTTPConnection(
        *urllib.parse.urlsplit(url).netloc.split(":"), timeout=60
    )
    path = urllib.parse.urlsplit(url).path

    def call():
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        return response.read()

    return call


def _start_server(
    model_base_path: str, log, *flags: str
) -> typing.Tuple[subprocess.Popen, str, RestClient]:
    """`python -m serving.local_server` on free loopback ports; returns once the model answers."""
    grpc_port, rest_port = loopback.free_port(), loopback.free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.local_server",
            f"--model_name={MODEL}",
            f"--model_base_path={model_base_path}",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            *flags,
        ],
        stderr=log,
    )
    client = RestClient(f"http://127.0.0.1:{rest_port}", MODEL, retries=0)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}; see {log.name}")
        try:
            client.status()
            return process, f"127.0.0.1:{grpc_port}", client
        except RestError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"the server did not come up in 120 s; see {log.name}")
            time.sleep(0.2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_base_path", default="serving_models/cartola_pro")
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument(
        "--batching_parameters_file",
        default="serving/batching_parameters.txt",
        help="the batching file of the 'gRPC batched' server (the container's by default)",
    )
    args = parser.parse_args(argv)
    frame = synthetic.generate(1024, seed=1).drop(columns=["pro_target"])
    records = frame.astype(object).where(pd.notna(frame), None).to_dict("records")
    results = []
    log = tempfile.NamedTemporaryFile("w", prefix="serving_latency-", suffix=".log", delete=False)
    servers = []  # Stopped whatever happens, including when the second one does not come up.
    try:
        servers.append(_start_server(args.model_base_path, log))
        servers.append(
            _start_server(
                args.model_base_path,
                log,
                "--enable_batching=true",
                f"--batching_parameters_file={args.batching_parameters_file}",
            )
        )
        (_, grpc_address, client), (_, batched_address, _) = servers
        version = client.served_version()
        raw = tf.saved_model.load(os.path.join(args.model_base_path, str(version))).signatures[
            signatures.RAW_SIGNATURE
        ]
        names = client.raw_inputs()
        print(f"model version {version}, {args.requests} requests per cell; latency in ms")
        print(
            f"{'batch':>5} {'clients':>7} {'path':<12} {'p50':>7} {'p99':>7} {'rows/s':>9} "
            f"{'p50 - in-process':>17} {'rows/s share':>12}"
        )
        for batch in (1, 64, 1024):
            columns = requests.to_columns(records[:batch], names)
            tensors = {
                k: tf.constant(v, tf.string if k == "pixels" else tf.float32)
                for k, v in columns.items()
            }
            # The same rows, encoded once: each path pays for its transport and the server, not for
            # turning Python records into a request.
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = (
                MODEL,
                signatures.RAW_SIGNATURE,
            )
            for name, proto in requests.raw_columns_tensor_protos(records[:batch], names).items():
                request.inputs[name].CopyFrom(proto)
            body = json.dumps(
                {"signature_name": signatures.RAW_SIGNATURE, "inputs": columns}
            ).encode()
            paths = {
                "in-process": lambda: lambda: raw(**tensors),
                "gRPC": lambda: _grpc_call(grpc_address, request),
                "gRPC batched": lambda: _grpc_call(batched_address, request),
                "REST": lambda: _rest_call(f"{client.url}/v1/models/{MODEL}:predict", body),
            }
            for concurrency in (1, 16):
                calls = max(args.requests // (8 if batch == 1024 else 1), concurrency * 4)
                cell = {name: _run(make, calls, concurrency) for name, make in paths.items()}
                base = cell["in-process"]
                for name, r in cell.items():
                    r.update(
                        batch=batch,
                        clients=concurrency,
                        path=name,
                        rows_per_second=r["calls_per_second"] * batch,
                        p50_minus_in_process=r["p50"] - base["p50"],
                        rows_share_of_in_process=r["calls_per_second"] / base["calls_per_second"],
                    )
                    results.append(r)
                    print(
                        f"{batch:>5} {concurrency:>7} {name:<12} {r['p50']:>7.2f} "
                        f"{r['p99']:>7.2f} "
                        f"{r['rows_per_second']:>9,.0f} {r['p50_minus_in_process']:>17.2f} "
                        f"{r['rows_share_of_in_process']:>12.2f}"
                    )
    finally:
        for process, _, _ in servers:
            process.terminate()
            process.wait()
    out = os.path.join(os.path.dirname(__file__), "results", "serving_latency.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
