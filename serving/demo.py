"""The end of `make demo`: starts the local server on the pushed model and scores a few rows over
REST and gRPC.

python -m serving.demo --config configs/default.yaml --csv data/cartola.csv --rows 5
"""

import subprocess
import sys

import numpy as np

from serving.rest_client import RestClient
from tf_cartola.common import cli, files
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import features as F
from tf_cartola.read import csv_reader


def first_rows(csv_path: str, n: int) -> list:
    """The first `n` typed rows of a CSV (labels kept for display)."""
    with files.open_file(csv_path, "rb") as f:
        return csv_reader.to_records(next(csv_reader.read_csv(f, csv_path)).batch)[:n]


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    parser = cli.parser("serving.demo", __doc__, "0 REST and gRPC agree, 1 they differ")
    config_lib.add_flag(parser)
    parser.add_argument(
        "--csv", default="data/cartola.csv", help="users to score (default: %(default)s)"
    )
    parser.add_argument(
        "--rows", type=int, default=5, help="how many of its first rows (default: %(default)s)"
    )
    parser.add_argument("--grpc_port", type=int, default=8500, help="default: %(default)s")
    parser.add_argument("--rest_port", type=int, default=8501, help="default: %(default)s")
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    from serving.grpc_client import GrpcClient  # TensorFlow's protos: after the flags are read.

    cfg = config_lib.load(args.config).serving
    base_path = files.join(cfg.serving_dir, cfg.model_name)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.local_server",
            "--model_name",
            cfg.model_name,
            "--model_base_path",
            base_path,
            "--port",
            str(args.grpc_port),
            "--rest_api_port",
            str(args.rest_port),
        ]
    )
    try:
        rest = RestClient(
            f"http://127.0.0.1:{args.rest_port}", cfg.model_name, retries=8, backoff=0.5
        )
        status = rest.status()["model_version_status"]
        print(
            f"local server up: {cfg.model_name} versions {[s['version'] for s in status]}, "
            f"REST 127.0.0.1:{args.rest_port}, gRPC 127.0.0.1:{args.grpc_port}"
        )
        records = first_rows(args.csv, args.rows)
        features = [{k: v for k, v in r.items() if k != F.LABEL_KEY} for r in records]
        by_rest = rest.score(features)
        grpc_client = GrpcClient(
            f"127.0.0.1:{args.grpc_port}", cfg.model_name, retries=8, backoff=0.5
        )
        by_grpc = grpc_client.score(features)
        grpc_client.close()
        print(f"{F.ID_KEY:>10} {F.LABEL_KEY:>10} {'REST p(PRO)':>12} {'gRPC p(PRO)':>12}")
        for record, a, b in zip(records, by_rest, by_grpc):
            print(f"{record[F.ID_KEY]:>10} {record[F.LABEL_KEY]:>10} {a:>12.6f} {b:>12.6f}")
        return 0 if np.allclose(by_rest, by_grpc, atol=1e-6) else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    cli.leave(cli.run(main))
