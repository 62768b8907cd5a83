"""The tf.Transform `preprocessing_fn`: the data scientists' feature engineering as a TF graph."""

import tensorflow as tf
import tensorflow_transform as tft

from tf_cartola.contract import features as F


def _densify(x: tf.SparseTensor, default) -> tf.Tensor:
    """An optional (VarLen, at most one value) feature as a dense [batch] tensor."""
    x = tf.SparseTensor(x.indices, x.values, tf.stack([x.dense_shape[0], 1]))
    return tf.squeeze(tf.sparse.to_dense(x, default_value=default), axis=1)


def engineer(column: str, raw) -> tuple:
    """One raw feature (as parsed by `features.raw_feature_spec()`) engineered, not yet imputed.

    Returns:
      (value, valid): float64 [batch] tensors; `value` is arbitrary where not `valid`.
    """
    if column == F.PIXELS:
        text = _densify(raw, "")
        valid = tf.strings.regex_full_match(text, F.PIXELS_PATTERN)
        parts = tf.strings.split(
            tf.strings.regex_replace(tf.where(valid, text, "0x0"), F.PIXELS_PATTERN, r"\1 \2")
        )
        sizes = tf.strings.to_number(
            parts.to_tensor(shape=[None, 2], default_value="0"), tf.float64
        )
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
    """Engineers every raw feature, imputes missing values with the training mean and z-scores.

    All features are engineered into one [batch, features] matrix so that each statistic
    is one elementwise analyzer for every feature at once. Every statistic comes from one
    pass over the data: with n rows, v valid values, S1 their sum and S2 their sum of
    squares, the imputed column's mean is S1 / v (the valid mean, imputed where missing)
    and its (population) variance (S2 - S1^2 / v) / n, so the three shares v/n, S1/n and
    S2/n suffice. Imputing first and z-scoring after (tft.scale_to_z_score) would give the
    same numbers in two analysis phases, and a second phase makes tf.Transform hold the
    whole train split until the first is done.

    Args:
      inputs: raw features parsed with `features.raw_feature_spec()`.

    Returns:
      One float32 [batch] tensor per `features.TRANSFORMED_FEATURES`, plus the
      label and the id passed through when present.
    """
    engineered = [engineer(column, inputs[column]) for column in F.RAW_FEATURES]
    valid = tf.stack([v for _, v in engineered], axis=1)
    # Only valid values count.
    x = tf.where(valid, tf.stack([value for value, _ in engineered], axis=1), 0.0)
    share = tft.mean(tf.cast(valid, tf.float64), reduce_instance_dims=False, name="valid_share")
    first = tft.mean(x, reduce_instance_dims=False, name="valid_sum_share")
    second = tft.mean(tf.square(x), reduce_instance_dims=False, name="valid_square_share")
    mean = tf.math.divide_no_nan(first, share)
    std = tf.sqrt(tf.maximum(second - first * mean, 0.0))
    centered = tf.where(valid, x, mean) - mean
    # A constant feature stays centered.
    z = tf.where(std > 0, tf.math.divide_no_nan(centered, std), centered)
    outputs = {
        F.transformed_name(c): tf.cast(z[:, i], tf.float32) for i, c in enumerate(F.RAW_FEATURES)
    }
    for passthrough in (F.LABEL_KEY, F.ID_KEY):
        if passthrough in inputs:
            outputs[passthrough] = inputs[passthrough]
    return outputs
