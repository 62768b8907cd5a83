"""Request metrics under TF Serving's names, in Prometheus' text format (--monitoring_config_file).

    :tensorflow:serving:request_count{model_name="m",status="OK"}
        requests, by gRPC status name
    :tensorflow:serving:request_latency_bucket{model_name,API,entrypoint,le}
        wall time in microseconds

as TF Serving's Prometheus exporter names `/tensorflow/serving/request_count` and
`/tensorflow/serving/request_latency` (buckets 10 * 1.8^k, k < 33, as its sampler's).
"""

import bisect
import threading
import typing

from serving import tf_serving_configs

BUCKETS = tuple(10 * 1.8**k for k in range(33))


DEFAULT_PATH = "/monitoring/prometheus/metrics"


def prometheus_path(text: str) -> typing.Optional[str]:
    """The metrics path of a `--monitoring_config_file` (a MonitoringConfig text proto), or None
    when Prometheus is not enabled.

    Raises:
      text_format.ParseError: what TF Serving refuses (a field MonitoringConfig does not have, a
      wrong type).
    """
    prometheus = tf_serving_configs.parse(text, "MonitoringConfig").prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or DEFAULT_PATH


class Metrics:
    """Thread-safe request counts and latency histograms."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: typing.Dict[tuple, int] = {}
        self._latency: typing.Dict[tuple, list] = {}

    def record(
        self, model_name: str, api: str, entrypoint: str, status: str, seconds: float
    ) -> None:
        """Counts one request and its latency under TF Serving's metric names.

        Args:
          model_name: the model asked for.
          api: the API's name as TF Serving labels it (e.g. "predict").
          entrypoint: "GRPC" or "REST".
          status: the answer's gRPC status name ("OK" for a success).
          seconds: the request's wall time.
        """
        micros = seconds * 1e6
        with self._lock:
            self._counts[(model_name, status)] = self._counts.get((model_name, status), 0) + 1
            cell = self._latency.setdefault(
                (model_name, api, entrypoint), [[0] * (len(BUCKETS) + 1), 0.0, 0]
            )
            cell[0][bisect.bisect_left(BUCKETS, micros)] += 1
            cell[1] += micros
            cell[2] += 1

    def prometheus(self) -> str:
        """The exposition text."""
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, status), n in sorted(self._counts.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} '
                    f"{n}"
                )
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (model, api, entrypoint), (buckets, total, count) in sorted(self._latency.items()):
                labels = f'model_name="{model}",API="{api}",entrypoint="{entrypoint}"'
                cumulative = 0
                for bound, n in zip([*BUCKETS, float("inf")], buckets):
                    cumulative += n
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    lines.append(
                        f':tensorflow:serving:request_latency_bucket{{{labels},le="{le}"}} '
                        f"{cumulative}"
                    )
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {total:g}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {count}")
        return "\n".join(lines) + "\n"
