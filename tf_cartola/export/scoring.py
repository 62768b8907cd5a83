"""Scoring a raw split with an exported SavedModel in this process (evaluation, the report): the
split parsed once, each model called on its columns through `predict_raw`.
"""

import logging
import typing

import numpy as np
import tensorflow as tf

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.contract.signatures import PROBABILITY, RAW_SIGNATURE
from tf_cartola.export.store import SAVED_MODEL_FILE
from tf_cartola.read import csv_reader, splits

log = logging.getLogger(__name__)


def raw_inputs(export_dir: str) -> typing.List[str]:
    """The raw columns an export's `predict_raw` signature takes, read from saved_model.pb
    (without restoring the model).
    """
    from tensorflow.core.protobuf import saved_model_pb2

    with files.open_file(files.join(export_dir, SAVED_MODEL_FILE), "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    [serve] = [m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags]
    return sorted(serve.signature_def[RAW_SIGNATURE].inputs)


def read_split(pattern: str, columns: typing.Sequence[str]) -> typing.Tuple[np.ndarray, dict]:
    """(labels, {column: values}) of one raw split: the ids under F.ID_KEY and the raw `columns`
    (numbers as float64 with NaN where missing, `pixels` as str with "" where missing), read as
    columns (tf_cartola.read.splits).

    Raises:
      PreprocessOutputError: no file matches `pattern`, or they hold no rows.
    """
    table = splits.read(pattern, sorted({F.LABEL_KEY, F.ID_KEY, *columns}))
    log.info("read %d rows of %s", table.num_rows, pattern)
    values = {name: csv_reader.dense_column(table, name, text=True) for name in table.schema.names}
    values[F.ID_KEY] = values[F.ID_KEY].astype(np.int64)
    return values.pop(F.LABEL_KEY).astype(np.int64), values


def score_columns(export_dir: str, columns: dict, batch_size: int = 262144) -> np.ndarray:
    """PRO probabilities of rows given as raw columns (`read_split`'s), through the export's
    `predict_raw` signature: the batch path the score job uses, no tf.Example in between.
    """
    fn = tf.saved_model.load(export_dir).signatures[RAW_SIGNATURE]
    needed = raw_inputs(export_dir)
    rows = len(columns[F.ID_KEY])
    out = []
    for start in range(0, rows, batch_size):
        tensors = {
            name: tf.constant(
                columns[name][start : start + batch_size].astype(
                    object if name == F.PIXELS else np.float32
                ),
                tf.string if name == F.PIXELS else tf.float32,
            )
            for name in needed
        }
        out.append(fn(**tensors)[PROBABILITY].numpy())
    return np.concatenate(out).astype(np.float64)


def score_split(
    export_dir: str, pattern: str, columns: typing.Sequence[str] = ()
) -> typing.Tuple[np.ndarray, np.ndarray, dict]:
    """(labels, scores, {column: values}) of an export on one raw split (`read_split` and
    `score_columns`): the ids and the raw `columns` asked for beside the model's own.
    """
    labels, values = read_split(pattern, sorted({*raw_inputs(export_dir), *columns}))
    return labels, score_columns(export_dir, values), values
