"""Scoring a raw split with an exported SavedModel in this process (evaluation, the report): the
split parsed once, each model called on its columns through `predict_raw`.
"""

import logging
import typing

import numpy as np
import tensorflow as tf

from tf_cartola.common import files, timing
from tf_cartola.contract import features as F
from tf_cartola.contract.manifest import PreprocessOutputError
from tf_cartola.contract.signatures import PROBABILITY, RAW_SIGNATURE
from tf_cartola.export.store import SAVED_MODEL_FILE
from tf_cartola.read import examples

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


def _dense(value) -> np.ndarray:
    """A raw column (VarLen, at most one value a row) as a [rows] array: float64 with NaN where
    missing, or str with "" where missing.
    """
    rows = int(value.dense_shape[0])
    at = value.indices.numpy()[:, 0]
    if value.dtype == tf.string:
        out = np.full(rows, "", dtype=object)
        out[at] = [v.decode("utf-8") for v in value.values.numpy()]
    else:
        out = np.full(rows, np.nan)
        out[at] = value.values.numpy()
    return out


def read_split(pattern: str, columns: typing.Sequence[str]) -> typing.Tuple[np.ndarray, dict]:
    """(labels, {column: values}) of one raw split, parsed once: the ids under F.ID_KEY and the
    raw `columns` (numbers as float64 with NaN where missing, `pixels` as str with "" where
    missing). Streamed from its files a batch at a time; only the arrays are held.

    Raises:
      PreprocessOutputError: no file matches `pattern`, or they hold no rows.
    """
    full = F.raw_feature_spec()
    spec = {k: full[k] for k in (F.LABEL_KEY, F.ID_KEY, *columns)}
    parts = {k: [] for k in spec}
    progress = timing.Progress(log, f"reading {pattern}")
    for batch in examples.records(pattern).batch(65536):
        for name, value in tf.io.parse_example(batch, spec).items():
            parts[name].append(
                _dense(value) if isinstance(value, tf.SparseTensor) else value.numpy()
            )
        progress.add(len(parts[F.ID_KEY][-1]))
    if not parts[F.ID_KEY]:
        raise PreprocessOutputError(f"no rows in {pattern}")
    joined = {name: np.concatenate(values) for name, values in parts.items()}
    return joined.pop(F.LABEL_KEY), joined


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
