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
    """Engineers every raw feature, imputes missing values with the training mean and z-scores.

    Imputing with the mean leaves the mean as it is and scales the variance by the share
    of valid values, so the z-score of the imputed column is (x - mean) / sqrt(var * share)
    for a valid x and 0 for a missing one, with mean and var over the valid values. All
    three statistics come from one pass over the data, for every feature at once.

    Args:
      inputs: raw features parsed with `features.raw_feature_spec()`.

    Returns:
      One float32 [batch] tensor per `features.TRANSFORMED_FEATURES`, plus the
      label and the id passed through when present.
    """
    engineered = [_engineer(column, inputs[column]) for column in F.RAW_FEATURES]
    valid = tf.stack([v for _, v in engineered], axis=1)
    # NaN marks a missing value: TFT's mean and var skip non-finite values, column by column.
    x = tf.where(valid, tf.stack([value for value, _ in engineered], axis=1), float("nan"))
    mean = tft.mean(x, reduce_instance_dims=False, name="valid_mean")
    var = tft.var(x, reduce_instance_dims=False, name="valid_var")
    share = tft.mean(tf.cast(valid, tf.float64), reduce_instance_dims=False, name="valid_share")
    std = tf.sqrt(var * share)
    # As tft.scale_to_z_score: a constant column is only centred.
    z = tf.where(valid, (x - mean) / tf.where(std > 0, std, 1.0), 0.0)
    outputs = {F.transformed_name(c): tf.cast(z[:, i], tf.float32) for i, c in enumerate(F.RAW_FEATURES)}
    for passthrough in (F.LABEL_KEY, F.ID_KEY):
        if passthrough in inputs:
            outputs[passthrough] = inputs[passthrough]
    return outputs
