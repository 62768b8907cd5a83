"""The tf.Transform `preprocessing_fn`: the data scientists' feature engineering as a TF graph."""

import tensorflow as tf
import tensorflow_transform as tft

from tf_cartola import features as F


def _densify(x: tf.SparseTensor, default) -> tf.Tensor:
    """An optional (VarLen, at most one value) feature as a dense [batch] tensor."""
    x = tf.SparseTensor(x.indices, x.values, tf.stack([x.dense_shape[0], 1]))
    return tf.squeeze(tf.sparse.to_dense(x, default_value=default), axis=1)


def _engineer(column: str, raw) -> tuple:
    """(value, valid) of one engineered feature; `value` is arbitrary where not `valid`."""
    if column == F.PIXELS:
        text = _densify(raw, "")
        valid = tf.strings.regex_full_match(text, F.PIXELS_PATTERN)
        parts = tf.strings.split(tf.strings.regex_replace(tf.where(valid, text, "0x0"), F.PIXELS_PATTERN, r"\1 \2"))
        sizes = tf.strings.to_number(parts.to_tensor(shape=[None, 2], default_value="0"), tf.float64)
        return sizes[:, 0] * sizes[:, 1], valid
    x = _densify(tf.cast(raw, tf.float64) if raw.dtype != tf.float64 else raw, float("nan"))
    valid = tf.math.logical_not(tf.math.is_nan(x))
    if column in F.LONG_TAIL:
        valid = tf.math.logical_and(valid, x > -1.0)  # <= -1 is the "unknown" sentinel.
        return tf.math.log1p(tf.where(valid, x, 0.0)), valid
    if column in F.CAPPED:
        return tf.minimum(x, 1.0), valid
    return x, valid


def preprocessing_fn(inputs: dict) -> dict:
    """Engineers, imputes with the training mean and z-scores every raw feature.

    Args:
      inputs: raw features parsed with `features.raw_feature_spec()`.

    Returns:
      One float32 [batch] tensor per `features.TRANSFORMED_FEATURES`, plus the
      label and the id passed through when present.
    """
    outputs = {}
    for column in F.RAW_FEATURES:
        value, valid = _engineer(column, inputs[column])
        # Only valid values reach the analyzers: no NaN or infinity can skew the mean.
        name = F.transformed_name(column)
        mean = tft.mean(tf.boolean_mask(value, valid), name=f"impute_mean_{name}")
        imputed = tf.where(valid, value, mean)
        outputs[name] = tf.cast(tft.scale_to_z_score(imputed, name=f"z_score_{name}"), tf.float32)
    for passthrough in (F.LABEL_KEY, F.ID_KEY):
        if passthrough in inputs:
            outputs[passthrough] = inputs[passthrough]
    return outputs
