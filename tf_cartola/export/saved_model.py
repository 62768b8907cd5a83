"""One SavedModel that parses raw input, applies the tf.Transform graph and runs the model.

Signatures:
  serving_default     serialized tf.Example (raw columns; numbers as int64 or float lists) in
                      `inputs` -> `classes`, `scores` ([batch, 2], PRO last); method
                      `tensorflow/serving/classify`.
  predict_raw         one [batch] input per raw column the model uses (numbers as float32,
                      `pixels` as string; NaN / "" = missing) -> `pro_probability`.
  transform_features  serialized tf.Example -> every transformed feature and `pro_probability`.
"""

import posixpath
import typing

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.contract.signatures import (
    CLASS_LABELS,
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PROBABILITY,
    RAW_SIGNATURE,
    WARMUP_FILE,
)
from tf_cartola.export import requests, store


def serving_feature_spec() -> dict:
    """What a client sends: the raw features, no id and no label."""
    spec = F.raw_feature_spec(with_label=False)
    spec.pop(F.ID_KEY)
    return spec


def _one(values: tf.Tensor) -> tf.Tensor:
    """A decode_proto field holding at most one value per row ([n, 0|1]) as [n] ('' where
    absent).
    """
    return tf.strings.reduce_join(values, axis=1)


def _first(values: tf.Tensor, sizes: tf.Tensor, default) -> tf.Tensor:
    """The first of each row's decoded repeated values, or `default` where the row has none."""
    pad = tf.fill([tf.shape(values)[0], 1], tf.cast(default, values.dtype))
    return tf.where(
        sizes[:, 0] > 0, tf.concat([values, pad], axis=1)[:, 0], tf.cast(default, values.dtype)
    )


def parse_raw_examples(serialized: tf.Tensor) -> dict:
    """Parses serialized raw tf.Examples like `tf.io.parse_example(serialized,
    serving_feature_spec())`, except that any numeric column may come as an int64_list or a
    float_list.

    TF Serving's REST `:classify` turns JSON `12` into an int64 feature and `12.0` into a
    float one, and clients cannot be trusted to know which column is which, so both are
    accepted (parse_example would reject either one). The Example is decoded field by field.
    """
    batch = tf.shape(serialized, out_type=tf.int64)[0]
    row_of_entry, keys, lists = _feature_entries(serialized)
    strings, has_string, number, has_number = _first_values(lists)
    out = {}
    for name in F.RAW_FEATURES:
        if name == F.PIXELS:
            selected = tf.equal(keys, name) & has_string
            picked = tf.boolean_mask(strings, selected)
        else:
            selected = tf.equal(keys, name) & has_number
            picked = tf.boolean_mask(number, selected)
            dtype = F.column_dtype(name)
            picked = tf.cast(tf.round(picked) if dtype == tf.int64 else picked, dtype)
        rows_ = tf.boolean_mask(row_of_entry, selected)
        out[name] = tf.SparseTensor(
            tf.stack([rows_, tf.zeros_like(rows_)], axis=1), picked, tf.stack([batch, 1])
        )
    return out


def _feature_entries(serialized: tf.Tensor):
    """Every feature entry of a batch of serialized Examples: (the row it is of, its key, its
    Feature's bytes_list, float_list and int64_list, serialized).
    """
    _, [features] = tf.io.decode_proto(serialized, "tensorflow.Example", ["features"], [tf.string])
    sizes, [entries] = tf.io.decode_proto(
        _one(features), "tensorflow.Features", ["feature"], [tf.string]
    )
    present = tf.sequence_mask(sizes[:, 0], tf.shape(entries)[1])
    _, [keys, values] = tf.io.decode_proto(
        tf.boolean_mask(entries, present),
        "tensorflow.Features.FeatureEntry",
        ["key", "value"],
        [tf.string] * 2,
    )
    _, lists = tf.io.decode_proto(
        _one(values),
        "tensorflow.Feature",
        ["bytes_list", "float_list", "int64_list"],
        [tf.string] * 3,
    )
    return tf.where(present)[:, 0], _one(keys), lists


def _first_values(lists):
    """Each entry's first value: (string, whether it has one, number as float64 from a float_list
    or an int64_list, whether it has one).
    """
    b_sizes, [b_values] = tf.io.decode_proto(
        _one(lists[0]), "tensorflow.BytesList", ["value"], [tf.string]
    )
    f_sizes, [f_values] = tf.io.decode_proto(
        _one(lists[1]), "tensorflow.FloatList", ["value"], [tf.float32]
    )
    i_sizes, [i_values] = tf.io.decode_proto(
        _one(lists[2]), "tensorflow.Int64List", ["value"], [tf.int64]
    )
    is_float = f_sizes[:, 0] > 0
    number = tf.where(
        is_float,
        tf.cast(_first(f_values, f_sizes, 0.0), tf.float64),
        tf.cast(_first(i_values, i_sizes, 0), tf.float64),
    )
    strings = _first(b_values, b_sizes, "")
    return strings, b_sizes[:, 0] > 0, number, is_float | (i_sizes[:, 0] > 0)


def _raw_columns_to_features(columns: dict) -> dict:
    """Dense per-column tensors (NaN / "" = missing) -> the sparse raw features of the spec."""
    out = {}
    for name, value in columns.items():
        valid = (
            tf.not_equal(value, "")
            if value.dtype == tf.string
            else tf.logical_not(tf.math.is_nan(value))
        )
        values = tf.boolean_mask(value, valid)
        if F.column_dtype(name) == tf.int64:
            values = tf.cast(tf.round(values), tf.int64)
        indices = tf.stack([tf.where(valid)[:, 0], tf.zeros_like(tf.where(valid)[:, 0])], axis=1)
        out[name] = tf.SparseTensor(
            indices, values, tf.stack([tf.shape(value, out_type=tf.int64)[0], 1])
        )
    return out


def used_raw_columns(feature_names) -> typing.List[str]:
    """The raw columns the model's transformed features are made from, in contract order."""
    return [c for c in F.RAW_FEATURES if F.transformed_name(c) in set(feature_names)]


def attach_signatures(
    model: tf_keras.Model, tft_output: tft.TFTransformOutput, feature_names
) -> dict:
    """Builds the serving signatures; `model.tft_layer` keeps the transform graph tracked for
    saving.

    Args:
      model: the trained tf_keras model (the transform layer is attached to it).
      tft_output: the fitted transform.
      feature_names: the transformed features the model takes.
    """
    model.tft_layer = tft_output.transform_features_layer()
    feature_names = tuple(feature_names)

    def transformed_and_probability(raw):
        transformed = model.tft_layer(raw)
        inputs = {n: tf.expand_dims(transformed[n], -1) for n in feature_names}
        return transformed, tf.squeeze(model(inputs), -1)

    return {
        **_example_signatures(transformed_and_probability),
        RAW_SIGNATURE: _predict_raw(transformed_and_probability, feature_names),
    }


# autograph=False: nothing here branches on tensors, and converting tf_keras's call path (which
# AutoGraph does not skip) costs seconds per export.
_EXAMPLES = [tf.TensorSpec([None], tf.string, name="inputs")]


def _example_signatures(transformed_and_probability) -> dict:
    """The signatures over serialized raw Examples: TF Serving's classification (`serving_default`)
    and `transform_features` (the transformed features beside the probability).
    """

    # Traced once, called by both signatures.
    @tf.function(input_signature=_EXAMPLES, autograph=False)
    def from_examples(inputs):
        return transformed_and_probability(parse_raw_examples(inputs))

    @tf.function(input_signature=_EXAMPLES, autograph=False)
    def serving_default(inputs):
        _, p = from_examples(inputs)
        batch = tf.shape(p)[0]
        classes = tf.tile(tf.constant([list(CLASS_LABELS)]), tf.stack([batch, 1]))
        return {"classes": classes, "scores": tf.stack([1.0 - p, p], axis=1)}

    @tf.function(input_signature=_EXAMPLES, autograph=False)
    def transform_features(inputs):
        transformed, p = from_examples(inputs)
        outputs = {n: transformed[n] for n in F.TRANSFORMED_FEATURES}
        outputs[PROBABILITY] = p
        return outputs

    return {
        DEFAULT_SIGNATURE: serving_default.get_concrete_function(),
        "transform_features": transform_features.get_concrete_function(),
    }


def _predict_raw(transformed_and_probability, feature_names: tuple):
    """The `predict_raw` signature: the raw columns the model uses, as tensors (numbers float32
    with NaN for missing, `pixels` strings with "" for missing); the columns it does not use are
    not asked for.
    """
    raw_signature = {
        name: tf.TensorSpec([None], tf.string if name == F.PIXELS else tf.float32, name=name)
        for name in used_raw_columns(feature_names)
    }

    @tf.function(input_signature=[raw_signature], autograph=False)
    def predict_raw(columns):
        batch = tf.shape(next(iter(columns.values())))[0]
        missing = {
            name: tf.fill([batch], "" if name == F.PIXELS else float("nan"))
            for name in F.RAW_FEATURES
            if name not in columns
        }
        _, p = transformed_and_probability(_raw_columns_to_features({**columns, **missing}))
        return {PROBABILITY: p}

    return predict_raw.get_concrete_function()


def export(
    model: tf_keras.Model,
    tft_output: tft.TFTransformOutput,
    feature_names,
    export_dir: str,
    warmup_records=(),
    model_name: str = "",
) -> None:
    """Saves the hermetic SavedModel (the transform graph's assets are copied in).

    Args:
      model: the trained tf_keras model over `feature_names`.
      tft_output: the preprocessing job's transform output.
      feature_names: the transformed features the model takes.
      export_dir: where to save.
      warmup_records: a few typed raw rows; TF Serving replays them as warmup requests.
      model_name: the model name written into the warmup requests.
    """
    files.reach(export_dir)
    signatures = attach_signatures(model, tft_output, feature_names)
    model.save(
        export_dir,
        save_format="tf",
        signatures=signatures,
        include_optimizer=False,
        save_traces=False,
    )
    # TF2 saves every signature as `predict`; TF Serving's Classify API needs `classify`.
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(export_dir)
    updater.replace_method_name(
        signature_key=DEFAULT_SIGNATURE, method_name=CLASSIFY_METHOD, tags="serve"
    )
    # The updater holds the SavedModel and writes it back. TensorFlow's ram:// filesystem (our
    # stand-in for object stores in tests) appends to a file opened for writing instead of
    # replacing it: remove it first.
    tf.io.gfile.remove(files.join(export_dir, store.SAVED_MODEL_FILE))
    updater.save()
    if warmup_records:
        tf.io.gfile.makedirs(posixpath.dirname(files.join(export_dir, WARMUP_FILE)))
        with tf.io.TFRecordWriter(files.join(export_dir, WARMUP_FILE)) as writer:
            for log in requests.warmup_logs(
                warmup_records, model_name, used_raw_columns(feature_names)
            ):
                writer.write(log.SerializeToString())
