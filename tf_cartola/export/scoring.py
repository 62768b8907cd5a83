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


def score_split(
    export_dir: str, pattern: str, batch_size: int = 8192
) -> typing.Tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of a SavedModel's serving signature on one raw split.

    The split is streamed from its files a batch at a time: only the two arrays are held, never
    the split's examples.

    Args:
      export_dir: the SavedModel.
      pattern: the raw split's TFRecord files (a glob, any filesystem).
      batch_size: examples per call of the signature.

    Raises:
      PreprocessOutputError: no file matches `pattern`, or they hold no rows.
    """
    _, score = load_scorer(export_dir)
    labels, scores = [], []
    progress = timing.Progress(log, f"scoring {pattern} with {export_dir}")
    label_spec = {F.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    for batch in examples.records(pattern).batch(batch_size):
        labels.append(tf.io.parse_example(batch, label_spec)[F.LABEL_KEY].numpy())
        scores.append(score(batch.numpy()))
        progress.add(len(labels[-1]))
    if not labels:
        raise PreprocessOutputError(f"no rows in {pattern}")
    return np.concatenate(labels), np.concatenate(scores)
