"""The local TF-Serving-compatible server as a library: `LocalServer` serves a ModelServerConfig
over gRPC and REST (its command line is serving.local_server).
"""

import concurrent.futures
import http.server
import logging
import sys
import threading
import typing

import grpc

from serving import batching, grpc_service, inference, monitoring, request_log
from serving.options import DEFAULT_MAX_REQUEST_BYTES, LoadRetries, PortInUse
from serving.rest import RestApi, make_handler
from serving.servables import ServableManager
from tf_cartola.common import files
from tf_cartola.contract.signatures import WARMUP_FILE

log = logging.getLogger("serving.local_server")


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # The default 5 resets connections under a burst of clients.

    def handle_error(self, request, client_address):
        # A client that hangs up is one line of log, not a traceback; anything else is logged in
        # full.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            log.info("%s:%s hung up (%s)", *client_address[:2], type(error).__name__)
        else:
            log.exception("REST connection from %s:%s failed", *client_address[:2])


def _warmup(servable) -> int:
    return inference.replay_warmup(servable, files.join(servable.path, WARMUP_FILE))


class LocalServer:
    """Serves the models of a ModelServerConfig over gRPC and REST until `stop()`.

    Args:
      config: which models, where, which versions, which labels.
      host: the address to bind (loopback by default).
      grpc_port / rest_port: 0 picks a free port (see `grpc_address`, `rest_url`).
      poll_seconds: how often the base paths are polled for new or removed versions.
      max_request_bytes: larger requests are refused (413 over REST, RESOURCE_EXHAUSTED over gRPC).
      log_rotate_bytes: request log files (a model's `logging_config`) are rotated past this size.
      batching_parameters: TF Serving's server-side batching (--enable_batching); default none.
      metrics_path: serve Prometheus metrics on the REST port at this path
        (--monitoring_config_file).
      retries: how often and how far apart a version that fails to load is tried again.
    """

    def __init__(
        self,
        config,
        host: str = "127.0.0.1",
        grpc_port: int = 8500,
        rest_port: int = 8501,
        poll_seconds: float = 1.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        log_rotate_bytes: int = request_log.DEFAULT_ROTATE_BYTES,
        batching_parameters: typing.Optional[batching.BatchingParameters] = None,
        metrics_path: typing.Optional[str] = None,
        retries: LoadRetries = LoadRetries(),
    ):
        self.manager = ServableManager(
            config, poll_seconds, warmup=_warmup, batching=batching_parameters, retries=retries
        )
        self.request_logger = request_log.RequestLogger(config, log_rotate_bytes)
        self.metrics = monitoring.Metrics()
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=64),
            # Without SO_REUSEPORT a second server on the same port fails instead of sharing it.
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
                ("grpc.so_reuseport", 0),
                ("grpc.max_concurrent_streams", 1024),
            ],
        )
        grpc_service.add_services(self._grpc, self.manager, self.request_logger, self.metrics)
        try:
            self._grpc_port = self._grpc.add_insecure_port(f"{host}:{grpc_port}")
        except RuntimeError:
            self._grpc_port = 0
        if not self._grpc_port:
            raise PortInUse(
                f"gRPC port {grpc_port} on {host} is in use (or cannot be bound); choose another "
                "with --port"
            )
        self._host = host
        self._rest = RestApi(self.manager, self.request_logger, self.metrics)
        try:
            self._http = _HttpServer(
                (host, rest_port), make_handler(self._rest, max_request_bytes, metrics_path)
            )
        except OSError as e:
            self._grpc.stop(None)
            raise PortInUse(
                f"REST port {rest_port} on {host} is in use ({e.strerror}); choose another with "
                "--rest_api_port"
            ) from None
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="rest", daemon=True
        )

    @property
    def grpc_address(self) -> str:
        """host:port of the gRPC API."""
        return f"{self._host}:{self._grpc_port}"

    @property
    def rest_url(self) -> str:
        """http://host:port of the REST API."""
        return f"http://{self._host}:{self._http.server_address[1]}"

    def start(self) -> "LocalServer":
        """Loads (and warms up) the current versions, then starts answering."""
        self.manager.start()
        self._grpc.start()
        self._http_thread.start()
        log.info(
            "serving %s: gRPC %s, REST %s",
            self.manager.model_names(),
            self.grpc_address,
            self.rest_url,
        )
        return self

    def stop(self, drain_seconds: float = 1.0) -> None:
        """Stops accepting requests, lets those in flight finish (up to `drain_seconds`),
        unloads.
        """
        self._http.shutdown()
        grpc_done = self._grpc.stop(grace=drain_seconds)
        if not self._rest.in_flight.wait_idle(drain_seconds):
            log.warning(
                "REST requests still in flight after %.0f s; stopping anyway", drain_seconds
            )
        self._http.server_close()
        grpc_done.wait()
        self.request_logger.close()
        self.manager.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
