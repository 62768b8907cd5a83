"""Requests for the exported model from typed rows: the `predict_raw` columns (JSON, REST), their
tensors (gRPC Predict), and the warmup file's PredictionLogs (one per served path). TensorFlow is
imported only by what builds protos, so REST clients stay TF-free.
"""

import typing

from tf_cartola.contract import features as F
from tf_cartola.contract.signatures import DEFAULT_SIGNATURE, RAW_SIGNATURE
from tf_cartola.read import examples


def to_columns(
    records: typing.Sequence[typing.Mapping[str, typing.Any]],
    names: typing.Sequence[str] = F.RAW_FEATURES,
) -> typing.Dict[str, list]:
    """Typed rows -> one list per raw feature in `names`, as the `predict_raw` signature takes
    them.

    Numbers become floats (NaN = missing) and `pixels` a string ("" = missing); a
    column absent from a row counts as missing.
    """
    columns = {}
    for column in names:
        if column == F.PIXELS:
            columns[column] = [r.get(column) or "" for r in records]
        else:
            columns[column] = [
                float("nan") if r.get(column) is None else float(r[column]) for r in records
            ]
    return columns


def raw_columns_tensor_protos(records, columns) -> dict:
    """{column: TensorProto} of `columns` (the `predict_raw` signature's inputs) for gRPC
    Predict.
    """
    import tensorflow as tf

    return {
        column: tf.make_tensor_proto(values, dtype=tf.string if column == F.PIXELS else tf.float32)
        for column, values in to_columns(records, columns).items()
    }


def warmup_logs(records, model_name: str, raw_columns) -> list:
    """PredictionLogs that exercise every served path: Classify, and Predict on both signatures.

    Args:
      records: typed rows, as clients send them.
      model_name: the served model's name.
      raw_columns: the raw columns the model takes.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import (
        classification_pb2,
        model_pb2,
        predict_pb2,
        prediction_log_pb2,
    )

    serialized = [examples.to_example(r) for r in records]

    def spec(signature):
        return model_pb2.ModelSpec(name=model_name, signature_name=signature)

    classify = classification_pb2.ClassificationRequest(model_spec=spec(DEFAULT_SIGNATURE))
    classify.input.example_list.examples.extend(tf.train.Example.FromString(s) for s in serialized)
    by_example = predict_pb2.PredictRequest(model_spec=spec(DEFAULT_SIGNATURE))
    by_example.inputs["inputs"].CopyFrom(tf.make_tensor_proto(serialized, dtype=tf.string))
    by_column = predict_pb2.PredictRequest(model_spec=spec(RAW_SIGNATURE))
    for column, proto in raw_columns_tensor_protos(records, raw_columns).items():
        by_column.inputs[column].CopyFrom(proto)
    return [
        prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classify)
        ),
        prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=by_example)
        ),
        prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=by_column)
        ),
    ]


def classify_json(record: typing.Mapping) -> dict:
    """A typed row as a REST `:classify` example: ints stay ints, floats stay floats, None is left
    out.
    """
    return {k: v for k, v in record.items() if v is not None}


def classify_examples(records) -> list:
    """Typed rows as tf.Example protos, for gRPC Classify."""
    import tensorflow as tf

    return [tf.train.Example.FromString(examples.to_example(r)) for r in records]
