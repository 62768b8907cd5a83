"""TF Serving's server-side batching (--enable_batching, --batching_parameters_file).

As TF Serving's batching session does it: each signature of each loaded version has a
queue; a request's run is a task in the queue's open batch. A batch runs on one of
`num_batch_threads` threads once it is full (`max_batch_size` rows, or
`max_execution_batch_size` with `enable_large_batch_splitting`), once
`batch_timeout_micros` have passed since it opened, or at once when that timeout is 0 and a
thread is free. Its tasks' inputs are concatenated (padded up to the next of
`allowed_batch_sizes` with the first row of the last task), run once, and the outputs are
split back. With splitting, a large task fills the open batch and the rest goes into
new batches. TF Serving's refusals come with its words: a task over `max_batch_size`
rows, more than `max_enqueued_batches` waiting batches, inputs it cannot batch.

Unlike TF Serving, the threads belong to one queue (not shared by all models), start
with the first request and end after a second without work.
"""

import collections
import dataclasses
import logging
import os
import threading
import time
import typing

import grpc
import numpy as np

from serving import tf_serving_configs
from serving.errors import ServingError, invalid

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 1000
IDLE_SECONDS = 1.0  # A batch thread with nothing to do for this long ends.


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """The fields of TF Serving's BatchingParameters, with its defaults."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: typing.Tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0  # 0: max_batch_size.

    @property
    def execution_batch_size(self) -> int:
        """The most rows one run takes."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size:
            return self.max_execution_batch_size
        return self.max_batch_size

    def validate(self) -> "BatchingParameters":
        """Raises ValueError for what TF Serving refuses at start-up."""
        sizes = self.allowed_batch_sizes
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
        if sizes and sizes[-1] != self.execution_batch_size:
            which = (
                "max_execution_batch_size"
                if self.enable_large_batch_splitting
                else "max_batch_size"
            )
            raise ValueError(
                f"final entry in allowed_batch_sizes ({sizes[-1]}) must equal {which} "
                f"({self.execution_batch_size})"
            )
        if self.num_batch_threads < 1 or self.max_batch_size < 1:
            raise ValueError("num_batch_threads and max_batch_size must be positive")
        return self


_WRAPPED = (
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "max_execution_batch_size",
)
_IMPLEMENTED = {
    *_WRAPPED,
    "allowed_batch_sizes",
    "pad_variable_length_inputs",
    "enable_large_batch_splitting",
}


def parse(text: str) -> BatchingParameters:
    """A `--batching_parameters_file` (a BatchingParameters text proto), read as TF Serving reads
    it.

    Fields TF Serving accepts and this server does not implement (the thread pool's name, lazy
    splitting, the priority queues) are accepted and logged.

    Raises:
      text_format.ParseError: a field BatchingParameters does not have, or a value of the wrong
      type.
      ValueError: values TF Serving refuses at start-up (see `BatchingParameters.validate`).
    """
    message = tf_serving_configs.parse(text, "BatchingParameters")
    defaults = BatchingParameters()
    ignored = sorted(f.name for f, _ in message.ListFields() if f.name not in _IMPLEMENTED)
    if ignored:
        log.warning(
            "batching parameters accepted and ignored (not implemented here): %s",
            ", ".join(ignored),
        )
    return BatchingParameters(
        **{
            f: getattr(message, f).value if message.HasField(f) else getattr(defaults, f)
            for f in _WRAPPED
        },
        allowed_batch_sizes=tuple(message.allowed_batch_sizes),
        pad_variable_length_inputs=message.pad_variable_length_inputs,
        enable_large_batch_splitting=message.enable_large_batch_splitting,
    ).validate()


def task_size(feeds: typing.Mapping[str, np.ndarray]) -> int:
    """The rows of a run, as TF Serving counts them: every input's 0th dimension, all equal."""
    if not feeds:
        raise invalid("Batching Run() must have at least one input tensor")
    if any(value.ndim == 0 for value in feeds.values()):
        raise invalid("Batching Run() input tensors must have at least one dimension")
    sizes = {value.shape[0] for value in feeds.values()}
    if len(sizes) > 1:
        raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


class _Task:
    """One request's run: its pieces (more than one when split) and, once all ran, the outputs or
    an error.
    """

    def __init__(self, pieces: int):
        self.outputs: typing.List[typing.Optional[dict]] = [None] * pieces
        self.error: typing.Optional[BaseException] = None
        self.done = threading.Event()
        self._left = pieces
        self._lock = threading.Lock()

    def finish(
        self,
        index: int,
        outputs: typing.Optional[dict] = None,
        error: typing.Optional[BaseException] = None,
    ) -> None:
        with self._lock:
            self.outputs[index] = outputs
            self.error = self.error or error
            self._left -= 1
            if not self._left:
                self.done.set()

    def result(self) -> dict:
        self.done.wait()
        if self.error is not None:
            raise self.error
        if len(self.outputs) == 1:
            return self.outputs[0]
        return {
            name: np.concatenate([part[name] for part in self.outputs]) for name in self.outputs[0]
        }


@dataclasses.dataclass
class _Piece:
    task: _Task
    index: int
    feeds: typing.Dict[str, np.ndarray]
    rows: int


@dataclasses.dataclass
class _Batch:
    opened: float = dataclasses.field(default_factory=time.monotonic)
    pieces: typing.List[_Piece] = dataclasses.field(default_factory=list)
    rows: int = 0


def _pad_shape(value: np.ndarray, shape: tuple) -> np.ndarray:
    """`value` grown to `shape` after its 0th dimension, filled with its first element (as TF
    Serving pads).
    """
    if value.shape[1:] == shape:
        return value
    if not value.size:
        raise invalid("Got empty tensor in batch of non-empty tensors.")
    out = np.full((value.shape[0], *shape), value.flat[0], dtype=value.dtype)
    out[tuple(slice(0, n) for n in value.shape)] = value
    return out


class Batcher:
    """The batch queue of one signature: call it as the signature's run ({input: array} -> {output:
    array}).
    """

    def __init__(self, run: typing.Callable[[dict], dict], params: BatchingParameters):
        self._run = run
        self._params = params
        self._batches: typing.Deque[_Batch] = collections.deque()
        self._changed = threading.Condition()
        self._threads = 0

    def queued_rows(self) -> int:
        """Rows of the batches waiting for a thread (a batch that runs is no longer queued)."""
        with self._changed:
            return sum(batch.rows for batch in self._batches)

    def __call__(self, feeds: typing.Dict[str, np.ndarray]) -> dict:
        """Runs `feeds` in a batch with other requests' rows; returns this request's outputs.

        Raises:
          ServingError: what TF Serving refuses (too many rows, a full queue, unbatchable inputs).
        """
        rows = task_size(feeds)
        if rows > self._params.max_batch_size:
            raise invalid(
                f"Task size {rows} is larger than maximum input batch size "
                f"{self._params.max_batch_size}"
            )
        if not rows:
            return self._run(feeds)  # Nothing to batch.
        return self._schedule(feeds, rows).result()

    def _schedule(self, feeds: dict, rows: int) -> _Task:
        limit = self._params.execution_batch_size
        with self._changed:
            room = limit - self._batches[-1].rows if self._batches else 0
            if rows <= room:
                sizes = [rows]
            elif self._params.enable_large_batch_splitting:
                sizes = [room] if room else []
                sizes += [min(limit, rows - start) for start in range(room, rows, limit)]
            else:
                sizes, room = [rows], 0
            opened = len(sizes) - (1 if room else 0)
            if len(self._batches) + opened > self._params.max_enqueued_batches:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            task, start = _Task(len(sizes)), 0
            for index, size in enumerate(sizes):
                if index or not room:
                    self._batches.append(_Batch())
                batch = self._batches[-1]
                batch.pieces.append(
                    _Piece(
                        task, index, {k: v[start : start + size] for k, v in feeds.items()}, size
                    )
                )
                batch.rows += size
                start += size
            if self._threads < self._params.num_batch_threads:
                self._threads += 1
                threading.Thread(target=self._work, name="batch", daemon=True).start()
            self._changed.notify_all()
        return task

    def _next(self) -> typing.Optional[_Batch]:
        """The next batch due, waiting for it; None once idle for IDLE_SECONDS (the thread then
        ends).
        """
        idle_until = time.monotonic() + IDLE_SECONDS
        with self._changed:
            while True:
                now = time.monotonic()
                if self._batches:
                    first = self._batches[0]
                    due = first.opened + self._params.batch_timeout_micros / 1e6
                    if (
                        len(self._batches) > 1
                        or first.rows >= self._params.execution_batch_size
                        or now >= due
                    ):
                        return self._batches.popleft()
                    self._changed.wait(due - now)
                elif now >= idle_until:
                    self._threads -= 1
                    return None
                else:
                    self._changed.wait(idle_until - now)

    def _work(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            try:
                self._process(batch)
            except Exception as e:  # The batch's requests get the reason; the thread goes on.
                for piece in batch.pieces:
                    piece.task.finish(piece.index, error=e)

    def _process(self, batch: _Batch) -> None:
        padded = next(
            (size for size in self._params.allowed_batch_sizes if size >= batch.rows), batch.rows
        )
        outputs = self._run(self._merge(batch.pieces, padded - batch.rows))
        for name, value in outputs.items():
            if value.ndim == 0:
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions"
                )
            if value.shape[0] != padded:
                raise ServingError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    "dimension sizes of the input tensors",
                )
        start = 0
        for piece in batch.pieces:
            piece.task.finish(
                piece.index,
                {name: value[start : start + piece.rows] for name, value in outputs.items()},
            )
            start += piece.rows

    def _merge(self, pieces: typing.List[_Piece], padding: int) -> dict:
        if len(pieces) == 1 and not padding:
            return pieces[0].feeds
        merged = {}
        for name in pieces[0].feeds:
            values = [piece.feeds[name] for piece in pieces]
            shapes = {value.shape[1:] for value in values}
            if len(shapes) > 1:
                if (
                    not self._params.pad_variable_length_inputs
                    or len({len(s) for s in shapes}) > 1
                ):
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Tensors with name '{name}' from different tasks have different shapes "
                        "and padding is "
                        "turned off. Set pad_variable_length_inputs to true, or ensure that all "
                        "tensors with the "
                        "same name have equal dimensions starting with the first dim.",
                    )
                shape = tuple(max(dims) for dims in zip(*shapes))
                values = [_pad_shape(value, shape) for value in values]
            if padding:
                values.append(np.repeat(values[-1][:1], padding, axis=0))
            merged[name] = np.concatenate(values)
        return merged
