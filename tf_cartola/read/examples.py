"""Typed rows <-> serialized tf.Examples of the raw contract columns (requests, warmup, tests)."""

import typing

from tf_cartola.contract import features as F


def to_example(row: typing.Mapping[str, typing.Any]) -> bytes:
    """Serializes a typed row as a tf.Example; None (missing) values are left out."""
    import tensorflow as tf  # Lazy: parsing rows does not need TensorFlow.

    feature = {}
    for column, value in row.items():
        if value is None:
            continue
        if column == F.PIXELS:
            feature[column] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[value.encode("utf-8")])
            )
        elif column in F.INT_COLUMNS:
            feature[column] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature[column] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


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
