"""Scoring with a SavedModel loaded in this process, no server: the clients' interface for batch
jobs.
"""

import typing

import numpy as np
import tensorflow as tf

from tf_cartola.contract import features as F
from tf_cartola.contract.signatures import PROBABILITY, RAW_SIGNATURE
from tf_cartola.export import requests


class InProcessClient:
    """`raw_inputs`, `served_version` and `score` of RestClient / GrpcClient, on a model version
    folder.

    Args:
      model_dir: a pushed version (<serving_dir>/<model>/<version>) or any export of
        tf_cartola.train.
    """

    def __init__(self, model_dir: str):
        self._loaded = tf.saved_model.load(model_dir)
        self._fn = self._loaded.signatures[RAW_SIGNATURE]
        name = model_dir.rstrip("/").rsplit("/", 1)[-1]
        self._version = int(name) if name.isdigit() else None

    def raw_inputs(self, version=None, label=None) -> typing.List[str]:
        """The raw columns the model takes."""
        return sorted(self._fn.structured_input_signature[1])

    def served_version(self, version=None, label=None) -> typing.Optional[int]:
        """The version this client scores with (a SavedModel folder has none: None)."""
        return self._version

    def score(self, records, version=None, label=None) -> np.ndarray:
        """PRO probabilities of typed rows.

        Args:
          records: typed rows (column -> value), at least the model's raw columns.
          version: ignored: the loaded SavedModel is the only version here (the clients share this
            signature).
          label: ignored, as `version`.
        """
        columns = requests.to_columns(records, self.raw_inputs())
        tensors = {
            c: tf.constant(v, tf.string if c == F.PIXELS else tf.float32)
            for c, v in columns.items()
        }
        return self._fn(**tensors)[PROBABILITY].numpy().astype(np.float64)
