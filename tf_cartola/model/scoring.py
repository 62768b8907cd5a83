"""Scoring raw tf.Examples with an exported SavedModel in this process (evaluation, the report)."""

import typing

import numpy as np
import tensorflow as tf

from tf_cartola.model.signatures import DEFAULT_SIGNATURE


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
