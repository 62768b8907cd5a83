"""Request logging as TF Serving configures it: `logging_config` per model in models.config.

    model_config_list { config {
      name: "cartola_pro" base_path: "/models/cartola_pro" model_platform: "tensorflow"
      logging_config {
        log_collector_config { filename_prefix: "logs/cartola_pro" }
        sampling_config { sampling_rate: 0.1 }
      }
    } }

A sampled request and its response are appended as one `PredictionLog` TFRecord to
`<filename_prefix>.<start time>.<n>.tfrecord`, a new file once one reaches its size
limit. A request never waits for the log: records go through a bounded queue to one
writer thread, and when the queue is full a record is dropped and counted, never the
request failed. (TF Serving's open-source build has no file collector; see README.)
"""

import logging
import posixpath
import queue
import random
import threading
import time
import typing

from tf_cartola.common import files

log = logging.getLogger(__name__)

DEFAULT_ROTATE_BYTES = 64 << 20
QUEUE_RECORDS = 10_000


class _Sink:
    """One model's log files, written by TensorFlow's TFRecord writer (the server has TensorFlow
    loaded), each record flushed whole.
    """

    FRAMING_BYTES = 16  # A TFRecord's length, its CRC and the data's CRC.

    def __init__(self, prefix: str, rotate_bytes: int):
        self.prefix, self.rotate_bytes = prefix, rotate_bytes
        self.started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.number, self.size, self.file = 0, 0, None

    def write(self, records: typing.List[bytes]) -> None:
        import tensorflow as tf

        if self.file is None or self.size >= self.rotate_bytes:
            self.close()
            self.file = tf.io.TFRecordWriter(self._next_path())
            self.size = 0
        for record in records:
            self.file.write(record)
            self.size += len(record) + self.FRAMING_BYTES
        self.file.flush()  # Readers see whole records.

    def _next_path(self) -> str:
        """The next file name not taken (a server restarted within the same second)."""
        while True:
            path = f"{self.prefix}.{self.started}.{self.number:05d}.tfrecord"
            self.number += 1
            if not files.exists(path):
                return path

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _spec_of(request, response):
    """The ModelSpec that answered (a MultiInference answer has one per task: the first)."""
    if hasattr(response, "model_spec"):
        return response.model_spec
    return response.results[0].model_spec if response.results else request.tasks[0].model_spec


class RequestLogger:
    """Samples and writes requests of the models whose config has a `logging_config`.

    Args:
      config: the ModelServerConfig.
      rotate_bytes: a log file is closed and a new one begun past this size.
    """

    def __init__(self, config, rotate_bytes: int = DEFAULT_ROTATE_BYTES):
        self._rates, self._sinks = {}, {}
        for model in config.model_config_list.config:
            logging_config = model.logging_config
            prefix = logging_config.log_collector_config.filename_prefix
            if prefix and logging_config.sampling_config.sampling_rate > 0:
                files.makedirs(posixpath.dirname(files.absolute(prefix)))
                self._rates[model.name] = logging_config.sampling_config.sampling_rate
                self._sinks[model.name] = _Sink(prefix, rotate_bytes)
                log.info(
                    "logging %.3g of %s's requests to %s.*.tfrecord",
                    self._rates[model.name],
                    model.name,
                    prefix,
                )
        self._queue: queue.Queue = queue.Queue(QUEUE_RECORDS)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        if self._sinks:
            self._thread.start()

    def record(self, kind: str, request, response) -> None:
        """Queues (request, response) of one call for the log if its model is logged and it is
        sampled.

        Args:
          kind: the PredictionLog field: "predict_log", "classify_log", "regress_log" or
            "multi_inference_log".
          request: the call's request proto.
          response: the call's response proto.
        """
        name = _spec_of(request, response).name
        rate = self._rates.get(name)
        if rate is None or random.random() >= rate:
            return
        try:
            self._queue.put_nowait((name, kind, request, response))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning(
                    "request log queue full: %d record(s) dropped so far (requests were served)",
                    self.dropped,
                )

    def _run(self) -> None:
        from tensorflow_serving.apis import prediction_log_pb2

        while True:
            items = [self._queue.get()]
            while len(items) < 256 and not self._queue.empty():
                items.append(self._queue.get_nowait())
            by_model: typing.Dict[str, list] = {}
            for item in items:
                if item is None:
                    continue
                name, kind, request, response = item
                entry = prediction_log_pb2.PredictionLog()
                entry.log_metadata.model_spec.CopyFrom(_spec_of(request, response))
                entry.log_metadata.sampling_config.sampling_rate = self._rates[name]
                getattr(entry, kind).request.CopyFrom(request)
                getattr(entry, kind).response.CopyFrom(response)
                by_model.setdefault(name, []).append(entry.SerializeToString())
            for name, records in by_model.items():
                try:
                    self._sinks[name].write(records)
                except OSError as e:  # A full disk loses log records, never requests.
                    self.dropped += len(records)
                    log.error("could not write %s's request log: %s", name, e)
            if None in items:  # close() was called: everything queued before is written.
                for sink in self._sinks.values():
                    sink.close()
                return

    def close(self) -> None:
        """Writes what is queued, then closes the files."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
