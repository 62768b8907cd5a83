"""A local, TF-Serving-compatible model server (REST and gRPC) for development and tests.

    python -m serving.local_server --model_name cartola_pro --model_base_path serving_models/cartola_pro \
        --port 8500 --rest_api_port 8501

Flags are named as tensorflow_model_server's; `--model_config_file` takes the same
models.config. It binds 127.0.0.1 unless `--host` says otherwise. See README,
"Local server vs TF Serving", for what it does and does not reproduce.
"""

import argparse
import concurrent.futures
import http.server
import logging
import os
import signal
import threading

import grpc

from serving import grpc_service, inference, model_config
from serving.rest import RestApi, make_handler
from serving.servables import ServableManager, single_model_config

log = logging.getLogger("serving.local_server")

DEFAULT_MAX_REQUEST_BYTES = 16 << 20


def _warmup(servable) -> int:
    from tf_cartola.export import WARMUP_FILE

    return inference.replay_warmup(servable, os.path.join(servable.path, WARMUP_FILE))


class LocalServer:
    """Serves the models of a ModelServerConfig over gRPC and REST until `stop()`.

    Args:
      config: which models, where, which versions, which labels.
      host: the address to bind (loopback by default).
      grpc_port / rest_port: 0 picks a free port (see `grpc_address`, `rest_url`).
      poll_seconds: how often the base paths are polled for new or removed versions.
      max_request_bytes: larger requests are refused (413 over REST, RESOURCE_EXHAUSTED over gRPC).
    """

    def __init__(self, config, host: str = "127.0.0.1", grpc_port: int = 8500, rest_port: int = 8501,
                 poll_seconds: float = 1.0, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        self.manager = ServableManager(config, poll_seconds, warmup=_warmup)
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=16),
            options=[("grpc.max_receive_message_length", max_request_bytes)],
        )
        grpc_service.add_services(self._grpc, self.manager)
        self._grpc_port = self._grpc.add_insecure_port(f"{host}:{grpc_port}")
        self._host = host
        self._http = http.server.ThreadingHTTPServer((host, rest_port), make_handler(RestApi(self.manager), max_request_bytes))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="rest", daemon=True)

    @property
    def grpc_address(self) -> str:
        return f"{self._host}:{self._grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self._host}:{self._http.server_address[1]}"

    def start(self) -> "LocalServer":
        """Loads (and warms up) the current versions, then starts answering."""
        self.manager.start()
        self._grpc.start()
        self._http_thread.start()
        log.info("serving %s: gRPC %s, REST %s", self.manager.model_names(), self.grpc_address, self.rest_url)
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=1).wait()
        self.manager.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8500, help="gRPC port")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (TF Serving binds all)")
    parser.add_argument("--model_name", default="cartola_pro")
    parser.add_argument("--model_base_path", help="serve this base path's latest version")
    parser.add_argument("--model_config_file", help="a models.config (ModelServerConfig text proto)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    args = parser.parse_args(argv)
    if bool(args.model_base_path) == bool(args.model_config_file):
        parser.error("give exactly one of --model_base_path and --model_config_file")
    config = (model_config.read(args.model_config_file) if args.model_config_file
              else single_model_config(args.model_name, args.model_base_path))
    server = LocalServer(config, args.host, args.port, args.rest_api_port, args.file_system_poll_wait_seconds,
                         args.max_request_bytes).start()
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
