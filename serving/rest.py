"""TF Serving's REST API (api_rest.md) over the shared inference operations."""

import http.server
import json
import logging
import re
import socket
import threading
import time
import typing

from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from serving import inference, rest_json
from serving.errors import ServingError, invalid, not_found
from serving.monitoring import Metrics
from serving.request_log import RequestLogger
from serving.servables import ServableManager

log = logging.getLogger(__name__)

# TF Serving's REST routes (http_rest_api_handler.cc), case-insensitive like its regexes.
_PREDICTION = re.compile(
    r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r":(?P<verb>classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/(?P<name>[^/:]+))?(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<metadata>/metadata)?",
    re.IGNORECASE,
)
_INT64_MAX = 2**63 - 1


def malformed(method: str, path: str) -> ServingError:
    """TF Serving's answer to a /v1/ path, verb or method it does not know: 400."""
    if not path.lower().startswith("/v1/"):
        # TF Serving hands only /v1/... to its REST handler; its HTTP server answers anything else
        # 404.
        return not_found(f"Not found: {method} {path}")
    return invalid(f"Malformed request: {method} {path}")


def _spec(out, match) -> None:
    if not match["name"]:
        raise invalid("Missing model name in request.")
    out.name = match["name"]
    if match["version"] is not None:
        if int(match["version"]) > _INT64_MAX:
            raise invalid(f"Failed to convert version: {match['version']} to numeric.")
        out.version.value = int(match["version"])
    elif match["label"] is not None:
        out.version_label = match["label"]


def _to_dict(message) -> dict:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, including_default_value_fields=True
    )


class InFlight:
    """Counts requests being answered, so that a shutdown can wait for them (`with in_flight:` per
    request).
    """

    def __init__(self):
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self):
        with self._idle:
            self._count += 1

    def __exit__(self, *exc):
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no request is in flight; False if some still are after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class RestApi:
    """Routes REST requests to the inference operations; every failure is a `{"error": ...}`
    body.
    """

    def __init__(self, manager: ServableManager, logger: RequestLogger, metrics: Metrics):
        self.in_flight = InFlight()
        self.manager = manager
        self._logger = logger
        self.metrics = metrics

    def get(self, path: str) -> dict:
        """Answers a GET of TF Serving's REST API: status or metadata."""
        match = _STATUS.fullmatch(path.split("?", 1)[0])
        if not match:
            raise malformed("GET", path)
        if match["metadata"]:
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            )
            _spec(request.model_spec, match)
            response = inference.metadata(self.manager, request)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            return {
                "model_spec": _to_dict(response.model_spec),
                "metadata": {"signature_def": _to_dict(signature_map)},
            }
        request = get_model_status_pb2.GetModelStatusRequest()
        _spec(request.model_spec, match)
        return _to_dict(inference.status(self.manager, request))

    def post(self, path: str, body: bytes) -> dict:
        """Answers a POST of TF Serving's REST API: predict, classify or regress."""
        match = _PREDICTION.fullmatch(path.split("?", 1)[0])
        if not match:
            raise malformed("POST", path)
        verb = match["verb"].lower()
        start, status = time.perf_counter(), "OK"
        try:
            return self._post(verb, match, body)
        except ServingError as e:
            status = e.code.name
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            self.metrics.record(
                match["name"], verb.capitalize(), "REST", status, time.perf_counter() - start
            )

    def _post(self, verb: str, match, body: bytes) -> dict:
        data = rest_json.parse_body(body)
        if verb == "predict":
            # Resolve first: the JSON is typed by the signature of the version that will run it.
            spec = model_pb2.ModelSpec()
            _spec(spec, match)
            servable = inference.resolve(self.manager, spec)
            request, fmt = rest_json.predict_request(data, servable)
            response = inference.predict_on(servable, request)
            self._logger.record("predict_log", request, response)
            return rest_json.predict_response(response, fmt)
        if verb == "classify":
            request = rest_json.examples_request(
                data, classification_pb2.ClassificationRequest(), verb
            )
            _spec(request.model_spec, match)
            response = inference.classify(self.manager, request)
            self._logger.record("classify_log", request, response)
            return rest_json.classify_response(response)
        request = rest_json.examples_request(data, regression_pb2.RegressionRequest(), verb)
        _spec(request.model_spec, match)
        response = inference.regress(self.manager, request)
        self._logger.record("regress_log", request, response)
        return rest_json.regress_response(response)


def make_handler(
    api: RestApi, max_request_bytes: int, metrics_path: typing.Optional[str] = None
) -> typing.Type[http.server.BaseHTTPRequestHandler]:
    """A request handler class bound to one RestApi; Prometheus metrics at `metrics_path` when
    given.

    Args:
      api: the REST API the handler answers with.
      max_request_bytes: larger bodies are refused (413) before they are read.
      metrics_path: where Prometheus metrics are served, or None.
    """
    bound = {"api": api, "max_request_bytes": max_request_bytes, "metrics_path": metrics_path}
    return type("Handler", (_Handler,), bound)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers TF Serving's REST API with `api` (set by make_handler on a subclass)."""

    api: "RestApi"
    max_request_bytes: int
    metrics_path: typing.Optional[str] = None
    protocol_version = "HTTP/1.1"
    server_version = "tf_cartola-local-serving"

    def setup(self):
        super().setup()
        # Headers and body are separate writes: without this, Nagle's algorithm holds the body
        # until the client's delayed ACK (40 ms) on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, call) -> None:
        with self.api.in_flight:
            try:
                self._answer(call)
            except ConnectionError as e:  # The client hung up: its business, not a server error.
                self.close_connection = True
                log.info(
                    "%s hung up before the answer to %s %s (%s)",
                    self.address_string(),
                    self.command,
                    self.path,
                    type(e).__name__,
                )

    def _answer(self, call) -> None:
        try:
            self._reply(200, call())
        except ServingError as e:
            self._reply(e.http_status, {"error": e.message})
        except ConnectionError:
            raise
        except Exception as e:  # The server stays up; the client gets the reason.
            log.exception("internal error serving %s %s", self.command, self.path)
            self._reply(500, {"error": f"Internal error: {e}"})

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.metrics_path and self.path.split("?", 1)[0] == self.metrics_path:
            body = self.api.metrics.prometheus().encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._serve(lambda: self.api.get(self.path))

    def _refuse(self):
        """Any other method: TF Serving answers 400 Malformed request."""
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= self.max_request_bytes:
            self.rfile.read(length)

        def refuse():
            raise malformed(self.command, self.path)

        self._serve(refuse)

    do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_request_bytes:
            self.close_connection = True
            self._reply(
                413,
                {
                    "error": f"Request of {length} bytes exceeds the limit of "
                    f"{self.max_request_bytes}"
                },
            )
            return
        body = self.rfile.read(length)
        self._serve(lambda: self.api.post(self.path, body))

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)
