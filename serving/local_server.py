"""A local, TF-Serving-compatible model server (REST and gRPC) for development and tests.

    python -m serving.local_server --model_name cartola_pro --model_base_path serving_models/cartola_pro \
        --port 8500 --rest_api_port 8501

Flags are named as tensorflow_model_server's; `--model_config_file` takes the same
models.config. It binds 127.0.0.1 unless `--host` says otherwise. See README,
"Local server vs TF Serving", for what it does and does not reproduce.
"""

import concurrent.futures
import http.server
import logging
import os
import signal
import sys
import threading

import grpc

from serving import grpc_service, inference, model_config, request_log
from serving.rest import RestApi, make_handler
from serving.servables import ServableManager, single_model_config

log = logging.getLogger("serving.local_server")

DEFAULT_MAX_REQUEST_BYTES = 16 << 20
DRAIN_SECONDS = 10.0


class PortInUse(OSError):
    """A port the server was told to listen on is taken."""


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up is one line of log, not a traceback; anything else is logged in full.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.info("%s:%s hung up (%s)", *client_address[:2], type(error).__name__)
        else:
            log.exception("REST connection from %s:%s failed", *client_address[:2])


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
      log_rotate_bytes: request log files (a model's `logging_config`) are rotated past this size.
    """

    def __init__(self, config, host: str = "127.0.0.1", grpc_port: int = 8500, rest_port: int = 8501,
                 poll_seconds: float = 1.0, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 log_rotate_bytes: int = request_log.DEFAULT_ROTATE_BYTES):
        self.manager = ServableManager(config, poll_seconds, warmup=_warmup)
        self.request_logger = request_log.RequestLogger(config, log_rotate_bytes)
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=16),
            # Without SO_REUSEPORT a second server on the same port fails instead of sharing it.
            options=[("grpc.max_receive_message_length", max_request_bytes), ("grpc.so_reuseport", 0)],
        )
        grpc_service.add_services(self._grpc, self.manager, self.request_logger)
        try:
            self._grpc_port = self._grpc.add_insecure_port(f"{host}:{grpc_port}")
        except RuntimeError:
            self._grpc_port = 0
        if not self._grpc_port:
            raise PortInUse(f"gRPC port {grpc_port} on {host} is in use (or cannot be bound); choose another with --port")
        self._host = host
        self._rest = RestApi(self.manager, self.request_logger)
        try:
            self._http = _HttpServer((host, rest_port), make_handler(self._rest, max_request_bytes))
        except OSError as e:
            self._grpc.stop(None)
            raise PortInUse(f"REST port {rest_port} on {host} is in use ({e.strerror}); choose another with "
                            "--rest_api_port") from None
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

    def stop(self, drain_seconds: float = 1.0) -> None:
        """Stops accepting requests, lets those in flight finish (up to `drain_seconds`), unloads."""
        self._http.shutdown()
        grpc_done = self._grpc.stop(grace=drain_seconds)
        if not self._rest.in_flight.wait_idle(drain_seconds):
            log.warning("REST requests still in flight after %.0f s; stopping anyway", drain_seconds)
        self._http.server_close()
        grpc_done.wait()
        self.request_logger.close()
        self.manager.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None) -> int:
    """The command-line entry point: serves until SIGINT or SIGTERM; returns the exit status."""
    from tf_cartola import cli

    parser = cli.parser("serving.local_server", __doc__, "0 stopped by SIGINT/SIGTERM, 2 bad flags, config or port")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default: %(default)s)")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; TF Serving "
                                                                 "binds all)")
    parser.add_argument("--model_name", default="cartola_pro", help="with --model_base_path (default: %(default)s)")
    parser.add_argument("--model_base_path", help="serve this base path's latest version")
    parser.add_argument("--model_config_file", help="a models.config (ModelServerConfig text proto)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="how often base paths are polled for versions (default: %(default)s)")
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="larger requests are refused (default: %(default)s)")
    parser.add_argument("--request_log_rotate_bytes", type=int, default=request_log.DEFAULT_ROTATE_BYTES,
                        help="a request log file (logging_config in models.config) is rotated past this size "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    if bool(args.model_base_path) == bool(args.model_config_file):
        parser.error("give exactly one of --model_base_path and --model_config_file")
    if args.model_config_file and not os.path.isfile(args.model_config_file):
        print(f"error: the model config file {args.model_config_file} does not exist", file=sys.stderr)
        return 2
    try:
        config = (model_config.read(args.model_config_file) if args.model_config_file
                  else single_model_config(args.model_name, args.model_base_path))
        server = LocalServer(config, args.host, args.port, args.rest_api_port, args.file_system_poll_wait_seconds,
                             args.max_request_bytes, args.request_log_rotate_bytes)
    except (PortInUse, model_config.text_format.ParseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    server.start()
    log.info("Ctrl-C (or SIGTERM) to stop")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _: (log.info("%s: draining in-flight requests", signal.Signals(number).name),
                                              stopped.set()))
    stopped.wait()
    server.stop(DRAIN_SECONDS)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
