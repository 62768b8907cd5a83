"""Raw rows back from TF Serving `PredictionLog` records: warmup files and request logs.

Classify, Regress and MultiInference requests carry tf.Examples (a context example's
features apply to every example); Predict requests carry one tensor per raw column
(NaN or "" is a missing value), or serialized tf.Examples in a string tensor. Each
row's values are written as the text a CSV cell would hold and typed by the same code
as the CSV reader (`csv_reader.type_block`), so a value breaks the contract in a log
exactly when it would in a CSV, and is quarantined with the same reason. A record
that holds no rows we can read is quarantined whole.
"""

import json
import math
import typing

import numpy as np
import pyarrow as pa

from tf_cartola.contract import features as F
from tf_cartola.contract import rows
from tf_cartola.read import csv_reader, tfrecords

# Rows typed together.
BLOCK_ROWS = 20_000
UNREADABLE = "UNREADABLE_REQUEST"
MANY_VALUES = "FEATURE_TYPE_HIGH_NUMBER_VALUES"


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and math.isnan(value):
        return ""  # Missing, as the predict signature takes it.
    return repr(value) if isinstance(value, float) else str(value)


def _example_cells(example, context=None) -> dict:
    """{column: cell text} of a tf.Example's contract features; a BadRow for a feature with several
    values.
    """
    cells = {}
    for source in (context, example):
        if source is None:
            continue
        for column, feature in source.features.feature.items():
            if column not in F.CSV_COLUMNS:
                continue
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value) if kind else []
            if len(values) > 1:
                raise rows.BadRow(
                    MANY_VALUES, column, f"{column}: {len(values)} values where one is expected"
                )
            cells[column] = _text(values[0]) if values else ""
    return cells


def _input_rows(inp) -> typing.List[dict]:
    which = inp.WhichOneof("kind")
    if which == "example_list":
        return [_example_cells(e) for e in inp.example_list.examples]
    if which == "example_list_with_context":
        context = inp.example_list_with_context.context
        return [_example_cells(e, context) for e in inp.example_list_with_context.examples]
    raise rows.BadRow(UNREADABLE, None, "the request's input holds no examples")


def _predict_rows(request) -> typing.List[dict]:
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    arrays = {name: tf.make_ndarray(t) for name, t in request.inputs.items()}
    columns = {n: a for n, a in arrays.items() if n in F.CSV_COLUMNS}
    # Serialized tf.Examples, as the classify signature takes them through Predict.
    if not columns:
        for array in arrays.values():
            if array.dtype == object and array.ndim == 1:
                return [_example_cells(example_pb2.Example.FromString(v)) for v in array]
        raise rows.BadRow(
            UNREADABLE, None, f"no contract column among the inputs {sorted(arrays)}"
        )
    sizes = {n: a.shape[0] if a.ndim else 1 for n, a in columns.items()}
    if len(set(sizes.values())) > 1 or any(
        a.ndim > 2 or (a.ndim == 2 and a.shape[1] != 1) for a in columns.values()
    ):
        raise rows.BadRow(
            UNREADABLE,
            None,
            f"inputs are not one value per row: shapes "
            f"{ {n: list(a.shape) for n, a in columns.items()} }",
        )
    flat = {n: a.reshape(-1).tolist() for n, a in columns.items()}
    return [{n: _text(v[i]) for n, v in flat.items()} for i in range(next(iter(sizes.values())))]


def request_rows(serialized: bytes) -> typing.List[dict]:
    """The rows of one serialized PredictionLog, as {column: cell text}.

    Raises:
      rows.BadRow: the record is not a readable request of rows (kind UNREADABLE_REQUEST), or a
        feature holds several values.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    try:
        log = prediction_log_pb2.PredictionLog.FromString(serialized)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError or RuntimeError.
        raise rows.BadRow(UNREADABLE, None, f"not a PredictionLog: {e}") from None
    kind = log.WhichOneof("log_type")
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        return _input_rows(getattr(log, kind).request.input)
    if kind == "predict_log":
        return _predict_rows(log.predict_log.request)
    raise rows.BadRow(UNREADABLE, None, f"a {kind or 'empty'} record carries no rows to validate")


def _typed(
    cells: typing.List[dict], numbers: typing.List[int], source: str
) -> typing.Tuple[pa.RecordBatch, list]:
    header = [c for c in F.CSV_COLUMNS if any(c in row for row in cells)]
    block = pa.RecordBatch.from_arrays(
        [pa.array([row.get(c, "") for row in cells], pa.string()) for c in header], names=header
    )
    return csv_reader.type_block(
        block,
        np.array(numbers),
        lambda i: json.dumps(cells[i], sort_keys=True),
        source,
        required=(),
    )


def read(f: typing.BinaryIO, source: str, byte_range=None) -> typing.Iterator[csv_reader.Chunk]:
    """Reads a file of PredictionLog TFRecords as typed chunks, like `csv_reader.read_csv`.

    A quarantine record's line number is the record's number in the file (from 1).
    `byte_range` must be None or cover the whole file: records are not split.

    Args:
      f: the file, opened in binary mode.
      source: its path, for quarantine records.
      byte_range: None, or a range covering the whole file.
    """
    if byte_range is not None and (byte_range.start is not None or byte_range.end is not None):
        raise ValueError(f"{source}: prediction logs are read whole")
    cells, numbers, bad, read_rows = [], [], [], 0
    number = 0
    records = tfrecords.read(f)
    while True:
        try:
            serialized = next(records)
        except StopIteration:
            break
        except tfrecords.CorruptRecord as e:
            bad.append(
                csv_reader.quarantine_record(
                    source, number + 1, "", rows.BadRow(UNREADABLE, None, str(e))
                )
            )
            read_rows += 1
            break
        number += 1
        try:
            found = request_rows(serialized)
        except rows.BadRow as e:
            bad.append(csv_reader.quarantine_record(source, number, serialized.hex()[:200], e))
            read_rows += 1
            continue
        cells += found
        numbers += [number] * len(found)
        if len(cells) >= BLOCK_ROWS:
            batch, typed_bad = _typed(cells, numbers, source)
            yield csv_reader.Chunk(batch, bad + typed_bad, read_rows + len(cells))
            cells, numbers, bad, read_rows = [], [], [], 0
    if cells or bad:
        batch, typed_bad = _typed(cells, numbers, source)
        yield csv_reader.Chunk(batch, bad + typed_bad, read_rows + len(cells))
