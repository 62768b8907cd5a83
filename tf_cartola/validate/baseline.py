"""What a model was trained on, as TFDV statistics and schema: the reference new data is compared
with.

A baseline is read from either
- a preprocessing output directory (`stats/train.binpb`, `schema.pbtxt`, `manifest.json`), or
- a pushed model version, which carries a copy of its preprocessing run's train
  statistics, schema and inputs under `assets.extra/tf_cartola_baseline/` (`save`),
  so the version can be judged against its own training data wherever it is copied.
"""

import dataclasses
import json
import posixpath
import typing

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.contract import manifest as manifest_lib

# Inside a SavedModel version: TF Serving ignores assets.extra/ except for its warmup file.
VERSION_DIR = files.join("assets.extra", "tf_cartola_baseline")
_STATS, _SCHEMA, _ABOUT = "train_stats.binpb", "schema.pbtxt", "about.json"
SCHEMA_IN_VERSION = files.join(VERSION_DIR, _SCHEMA)  # The schema a version carries.


class BaselineError(ValueError):
    """A directory that holds no baseline."""


@dataclasses.dataclass
class Baseline:
    """Train statistics and schema of one preprocessing run, and where they come from."""

    path: str
    description: (
        str  # e.g. "served model cartola_pro version 3" or "preprocessing run runs/preprocess".
    )
    stats: typing.Any  # statistics_pb2.DatasetFeatureStatisticsList
    schema: typing.Any  # schema_pb2.Schema
    inputs: typing.List[dict]  # The preprocessing run's inputs (path, bytes, fingerprint).
    # The raw features new data is checked on: a model version's inputs, else every one.
    features: typing.Sequence[str] = F.RAW_FEATURES

    def summary(self) -> dict:
        """The manifest's record of the baseline."""
        return {
            "path": self.path,
            "description": self.description,
            "inputs": self.inputs,
            "features": list(self.features),
        }


def save(
    manifest: manifest_lib.Manifest, version_dir: str, raw_columns: typing.Sequence[str]
) -> None:
    """Copies a preprocessing run's train statistics, schema and inputs into a model export, with
    the raw columns the model takes (requests carry only those).

    Args:
      manifest: the preprocessing output the version was trained on.
      version_dir: the exported version's folder.
      raw_columns: the raw columns the model takes.
    """
    import tensorflow as tf

    out = files.join(version_dir, VERSION_DIR)
    tf.io.gfile.makedirs(out)
    tf.io.gfile.copy(_stats_path(manifest), files.join(out, _STATS), overwrite=True)
    tf.io.gfile.copy(manifest.artifact("schema"), files.join(out, _SCHEMA), overwrite=True)
    files.write_json(
        files.join(out, _ABOUT),
        {
            "preprocess_dir": manifest.dir,
            "inputs": manifest.inputs,
            "raw_columns": list(raw_columns),
        },
    )


def _stats_path(manifest: manifest_lib.Manifest) -> str:
    return posixpath.splitext(manifest.artifact("stats_train"))[0] + ".binpb"


def load(path: str, description: typing.Optional[str] = None) -> Baseline:
    """Reads the baseline of a model version or a preprocessing output directory.

    Raises:
      BaselineError: `path` is neither.
    """
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

    stats_of = statistics_pb2.DatasetFeatureStatisticsList
    inside = files.join(path, VERSION_DIR)
    if tf.io.gfile.exists(files.join(inside, _STATS)):
        with tf.io.gfile.GFile(files.join(inside, _ABOUT)) as f:
            about = json.load(f)
        return Baseline(
            path,
            description or f"model version {path}",
            files.read_proto(files.join(inside, _STATS), stats_of),
            files.read_proto(files.join(inside, _SCHEMA), schema_pb2.Schema, text=True),
            about["inputs"],
            about["raw_columns"],
        )
    try:
        manifest = manifest_lib.load(path)
    except manifest_lib.PreprocessOutputError as e:
        raise BaselineError(f"{e}; nor is it a model version (no {VERSION_DIR}/)") from None
    return Baseline(
        path,
        description or f"preprocessing run {path}",
        files.read_proto(_stats_path(manifest), stats_of),
        files.read_proto(manifest.artifact("schema"), schema_pb2.Schema, text=True),
        manifest.inputs,
    )


def of_served(served) -> typing.Optional[Baseline]:
    """The baseline the served version carries (`tf_cartola.export.served.Served`), or None when
    nothing is served or the served version carries none.
    """
    version_dir = served.version_dir()
    if version_dir is None or not files.exists(files.join(version_dir, VERSION_DIR, _STATS)):
        return None
    return load(version_dir, f"served model {served.describe()}")


def resolve(setting: str, serving) -> typing.Optional[Baseline]:
    """The baseline a `preprocess.baseline` setting names: "none" (None), "served" (the served
    version's, see tf_cartola.export.served; None when nothing is served or it carries none) or a
    directory.

    Args:
      setting: "none", "served" or a model version or preprocessing output folder.
      serving: the config's serving section (for "served").

    Raises:
      BaselineError: a directory that holds no baseline.
      ServedError: a models.config that cannot say what is served.
    """
    from tf_cartola.export import served as served_lib

    if setting == "none":
        return None
    if setting == "served":
        return of_served(
            served_lib.served(serving.serving_dir, serving.model_name, serving.model_config_file)
        )
    return load(setting)
