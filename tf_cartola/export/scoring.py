"""Scoring raw tf.Examples with an exported SavedModel in this process (evaluation, the report)."""

import logging
import typing

import numpy as np
import tensorflow as tf

from tf_cartola.common import timing
from tf_cartola.contract import features as F
from tf_cartola.contract.manifest import PreprocessOutputError
from tf_cartola.contract.signatures import DEFAULT_SIGNATURE
from tf_cartola.read import examples

log = logging.getLogger(__name__)


def load_scorer(export_dir: str):
    """(loaded SavedModel, function: serialized raw tf.Examples -> PRO probabilities as numpy)."""
    loaded = tf.saved_model.load(export_dir)
    fn = loaded.signatures[DEFAULT_SIGNATURE]

    def score(serialized: typing.Sequence[bytes], batch_size: int = 8192):
        parts = [
            fn(inputs=tf.constant(serialized[i : i + batch_size]))["scores"][:, 1].numpy()
            for i in range(0, len(serialized), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros([0], np.float32)

    return loaded, score


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


def score_split(
    export_dir: str, pattern: str, batch_size: int = 8192, columns: typing.Sequence[str] = ()
) -> typing.Tuple[np.ndarray, np.ndarray, dict]:
    """(labels, scores, {column: values}) of a SavedModel's serving signature on one raw split:
    the ids under F.ID_KEY and the raw `columns` asked for (numbers as float64 with NaN where
    missing, `pixels` as str with "" where missing).

    The split is streamed from its files a batch at a time: only the arrays are held, never the
    split's examples.

    Args:
      export_dir: the SavedModel.
      pattern: the raw split's TFRecord files (a glob, any filesystem).
      batch_size: examples per call of the signature.
      columns: raw columns to read beside the label and the id (e.g. the evaluation's slices).

    Raises:
      PreprocessOutputError: no file matches `pattern`, or they hold no rows.
    """
    _, score = load_scorer(export_dir)
    full = F.raw_feature_spec()
    spec = {k: full[k] for k in (F.LABEL_KEY, F.ID_KEY, *columns)}
    parts = {k: [] for k in spec}
    scores = []
    progress = timing.Progress(log, f"scoring {pattern} with {export_dir}")
    for batch in examples.records(pattern).batch(batch_size):
        parsed = tf.io.parse_example(batch, spec)
        for name, value in parsed.items():
            parts[name].append(
                _dense(value) if isinstance(value, tf.SparseTensor) else value.numpy()
            )
        scores.append(score(batch.numpy()))
        progress.add(len(scores[-1]))
    if not scores:
        raise PreprocessOutputError(f"no rows in {pattern}")
    joined = {name: np.concatenate(values) for name, values in parts.items()}
    return joined.pop(F.LABEL_KEY), np.concatenate(scores), joined
