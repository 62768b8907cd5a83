"""Parsing CSV rows into typed records by the feature contract; malformed rows raise BadRow."""

import csv
import math
import typing

from tf_cartola import features as F


class BadRow(ValueError):
    """A row that cannot be typed; `kind` and `column` say why (used for counters and anomalies)."""

    def __init__(self, kind: str, column: typing.Optional[str], message: str):
        super().__init__(message)
        self.kind = kind
        self.column = column


# Reason kinds, named after TFDV's AnomalyInfo types where one fits.
NOT_A_NUMBER = "FLOAT_TYPE_STRING_NOT_FLOAT"
NOT_AN_INT = "INT_TYPE_NOT_INT_STRING"
MISSING_REQUIRED = "MISSING_REQUIRED_VALUE"
WRONG_FIELD_COUNT = "WRONG_FIELD_COUNT"


class InputError(ValueError):
    """An input file that cannot be read at all (e.g. its header lacks contract columns)."""


def check_header(header: typing.Sequence[str], source: str,
                 required: typing.Sequence[str] = F.CSV_COLUMNS) -> None:
    """Raises InputError naming the missing columns when a CSV header lacks some `required` ones."""
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{source}: the CSV header lacks column(s) {missing}; it has {list(header)}")


def split_line(line: str) -> typing.List[str]:
    """Splits one CSV line (RFC 4180 quoting, no embedded newlines)."""
    return next(csv.reader([line]), [])


def _number(column: str, text: str):
    try:
        value = float(text)
    except ValueError:
        raise BadRow(NOT_A_NUMBER, column, f"{column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRow(NOT_A_NUMBER, column, f"{column}: {text!r} is not a finite number")
    if column in F.INT_COLUMNS:
        if value != int(value):
            raise BadRow(NOT_AN_INT, column, f"{column}: {text!r} is not a whole number")
        return int(value)
    return value


def parse_fields(header: typing.Sequence[str], fields: typing.Sequence[str], label_required: bool = True) -> dict:
    """Types one row's fields by the contract.

    Args:
      header: the file's column names (any order; extra columns are ignored).
      fields: the row's cells.
      label_required: False for rows to score, which have no label column.

    Returns:
      {column: value} for every contract column; a missing optional cell is None.

    Raises:
      BadRow: wrong field count, a non-numeric value in a numeric column, a
        fraction in an integer column, or a missing id or label.
    """
    if len(fields) != len(header):
        raise BadRow(WRONG_FIELD_COUNT, None, f"expected {len(header)} fields, got {len(fields)}")
    cells = dict(zip(header, fields))
    row = {}
    for column in F.CSV_COLUMNS:
        if column == F.LABEL_KEY and not label_required and column not in cells:
            continue
        text = cells[column].strip()
        if not text:
            if column == F.ID_KEY or (column == F.LABEL_KEY and label_required):
                raise BadRow(MISSING_REQUIRED, column, f"{column} is empty")
            row[column] = None
        elif column == F.PIXELS:
            row[column] = text
        else:
            row[column] = _number(column, text)
    return row


def to_example(row: typing.Mapping[str, typing.Any]) -> bytes:
    """Serializes a typed row as a tf.Example; None (missing) values are left out."""
    import tensorflow as tf  # Lazy: parsing rows does not need TensorFlow.

    feature = {}
    for column, value in row.items():
        if value is None:
            continue
        if column == F.PIXELS:
            feature[column] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
        elif column in F.INT_COLUMNS:
            feature[column] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[column] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def to_columns(records: typing.Sequence[typing.Mapping[str, typing.Any]]) -> typing.Dict[str, list]:
    """Typed rows -> one list per raw feature, as the `predict_raw` signature takes them.

    Numbers become floats (NaN = missing) and `pixels` a string ("" = missing); a
    column absent from a row counts as missing.
    """
    columns = {}
    for column in F.RAW_FEATURES:
        if column == F.PIXELS:
            columns[column] = [r.get(column) or "" for r in records]
        else:
            columns[column] = [float("nan") if r.get(column) is None else float(r[column]) for r in records]
    return columns


def from_example(serialized: bytes) -> dict:
    """The typed row of a serialized raw tf.Example (absent features are None)."""
    import tensorflow as tf

    feature = tf.train.Example.FromString(serialized).features.feature
    row = {}
    for column in F.CSV_COLUMNS:
        if column not in feature:
            row[column] = None
            continue
        kind = feature[column].WhichOneof("kind")
        value = getattr(feature[column], kind).value[0] if kind else None
        row[column] = value.decode("utf-8") if isinstance(value, bytes) else value
    return row
