"""A client of TF Serving's REST API (works with the local server too)."""

import http.client
import json
import typing
import urllib.error
import urllib.request

import numpy as np

from serving import retry
from tf_cartola.contract.signatures import RAW_SIGNATURE
from tf_cartola.export import requests


class RestError(Exception):
    """A REST call that failed; carries the HTTP status and the server's error message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Unreachable(RestError):
    """No HTTP answer at all: connection refused, no route, name not found, timed out."""

    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.status = None
        self.message = message


class RestClient:
    """Calls one model's REST endpoints, retrying while the server answers 503 or refuses
    connections.

    Args:
      url: e.g. http://127.0.0.1:8501
      model: the model name.
      timeout: seconds per HTTP call.
      retries: extra attempts on 503 / connection errors, with exponential backoff from `backoff`
        seconds.
    """

    def __init__(
        self, url: str, model: str, timeout: float = 10.0, retries: int = 3, backoff: float = 0.2
    ):
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._raw_inputs = {}

    def _path(self, version: typing.Optional[int], label: typing.Optional[str]) -> str:
        path = f"/v1/models/{self.model}"
        if version is not None:
            path += f"/versions/{version}"
        elif label:
            path += f"/labels/{label}"
        return path

    def call(self, method: str, path: str, body: typing.Optional[dict] = None) -> dict:
        """One HTTP call with retries; returns the JSON answer or raises RestError.

        Args:
          method: "GET" or "POST".
          path: the path under the server's URL, e.g. /v1/models/NAME:predict.
          body: the JSON body of a POST.
        """
        data = json.dumps(body).encode("utf-8") if body is not None else None

        def attempt() -> dict:
            request = urllib.request.Request(
                self.url + path,
                data=data,
                method=method,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as e:
                text = e.read().decode("utf-8", "replace")
                try:
                    message = json.loads(text).get("error", text)
                except json.JSONDecodeError:
                    message = text
                error = RestError(e.code, message)
                raise (retry.Transient(error) if e.code == 503 else error) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                raise retry.Transient(
                    Unreachable(f"cannot reach {self.url}: {getattr(e, 'reason', e)}")
                ) from None
            except (
                http.client.HTTPException
            ) as e:  # An answer, but not HTTP/1.x: e.g. a gRPC (HTTP/2) port.
                raise Unreachable(
                    f"{self.url} does not answer as a REST server ({type(e).__name__}); is it a "
                    "gRPC port? (use --grpc HOST:PORT)"
                ) from None

        return retry.with_backoff(attempt, self.retries, self.backoff)

    def status(self, version=None, label=None) -> dict:
        """The model's status (GET /v1/models/NAME[/versions/N | /labels/L])."""
        return self.call("GET", self._path(version, label))

    def metadata(self, version=None, label=None) -> dict:
        """The model's metadata (GET .../metadata)."""
        return self.call("GET", self._path(version, label) + "/metadata")

    def predict(
        self, instances=None, inputs=None, signature_name=None, version=None, label=None
    ) -> dict:
        """`:predict` in the row (`instances`) or columnar (`inputs`) format; returns the JSON
        answer.

        Args:
          instances: rows, for the row format.
          inputs: columns, for the columnar format.
          signature_name: the signature (default: the model's default one).
          version: the version to ask for (default: the latest).
          label: a version label to ask for instead.
        """
        body = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        return self.call("POST", self._path(version, label) + ":predict", body)

    def classify(
        self, examples, context=None, signature_name=None, version=None, label=None
    ) -> list:
        """`:classify` on JSON examples; returns `results`: per example, [label, score] pairs.

        Args:
          examples: the examples as JSON objects.
          context: features shared by every example.
          signature_name: the signature (default: the model's default one).
          version: the version to ask for (default: the latest).
          label: a version label to ask for instead.
        """
        body = {"examples": examples}
        if context:
            body["context"] = context
        if signature_name:
            body["signature_name"] = signature_name
        return self.call("POST", self._path(version, label) + ":classify", body)["results"]

    def raw_inputs(self, version=None, label=None) -> typing.List[str]:
        """The raw columns the served model uses: its raw-feature signature's inputs (asked
        once).
        """
        key = (version, label)
        if key not in self._raw_inputs:
            signatures = self.metadata(version, label)["metadata"]["signature_def"][
                "signature_def"
            ]
            self._raw_inputs[key] = sorted(signatures[RAW_SIGNATURE]["inputs"])
        return self._raw_inputs[key]

    def served_version(self, version=None, label=None) -> int:
        """The version number that answers for (version, label): the latest when neither is
        given.
        """
        return int(self.metadata(version, label)["model_spec"]["version"])

    def score(self, records, version=None, label=None) -> np.ndarray:
        """PRO probabilities of typed rows, through the raw-feature signature (row format).

        Args:
          records: typed rows (column -> value), at least the model's raw columns.
          version: the version to ask for (default: the latest).
          label: a version label to ask for instead.
        """
        columns = requests.to_columns(records, self.raw_inputs(version, label))
        instances = [{c: columns[c][i] for c in columns} for i in range(len(records))]
        answer = self.predict(
            instances=instances, signature_name=RAW_SIGNATURE, version=version, label=label
        )
        return np.array(answer["predictions"], dtype=np.float64)
