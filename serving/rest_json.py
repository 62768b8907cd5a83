"""TF Serving's REST JSON formats (api_rest.md) <-> the request and response protos."""

import base64
import json
import typing

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2

from serving.errors import invalid

_FLOATS = {types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16}
_INTS = {types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_UINT8,
         types_pb2.DT_UINT16, types_pb2.DT_UINT32, types_pb2.DT_UINT64}


def parse_body(body: bytes) -> dict:
    """The request body as a JSON object (NaN and Infinity accepted, as TF Serving does)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(data, dict):
        raise invalid("JSON Parse error: the request body must be a JSON object")
    return data


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _leaf(value, dtype: int, where: str):
    if isinstance(value, list):
        return [_leaf(v, dtype, where) for v in value]
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value) and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise invalid(f"{where}: Unable to base64 decode") from None
    elif dtype in _FLOATS:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif dtype in _INTS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif dtype == types_pb2.DT_BOOL and isinstance(value, bool):
        return value
    expected = types_pb2.DataType.Name(dtype)[3:].lower()
    raise invalid(f"{where}: JSON Value: {json.dumps(value)} not of expected type: {expected}")


def _tensor(values: list, dtype: int, where: str):
    converted = _leaf(values, dtype, where)
    try:
        array = np.array(converted, dtype=object if dtype == types_pb2.DT_STRING else tf.as_dtype(dtype).as_numpy_dtype)
    except ValueError as e:
        raise invalid(f"{where}: the values do not form a tensor of one shape ({e})") from None
    if array.dtype == object and any(isinstance(v, list) for v in array.ravel()):
        raise invalid(f"{where}: the values do not form a tensor of one shape")
    return tf.make_tensor_proto(array, dtype=tf.as_dtype(dtype))


def predict_request(body: dict, servable) -> typing.Tuple[predict_pb2.PredictRequest, str]:
    """A PredictRequest from a `:predict` body; returns it with the format, "row" or "columnar"."""
    signature_name = body.get("signature_name", "")
    _, sig = servable.signature(signature_name)
    if ("instances" in body) == ("inputs" in body):
        raise invalid('Request body must have exactly one of "instances" (row format) or "inputs" (columnar format)')
    names = sorted(sig.inputs)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid('"instances" must be a non-empty JSON list')
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if not named:
            if len(names) != 1:
                raise invalid(f"The signature has {len(names)} inputs {names}: each instance must be an object")
            columns = {names[0]: instances}
        else:
            columns = {n: [] for n in names}
            for i, instance in enumerate(instances):
                if not isinstance(instance, dict) or set(instance) != set(names):
                    got = sorted(instance) if isinstance(instance, dict) else type(instance).__name__
                    raise invalid(f"Failed to process element: {i} of 'instances' list. "
                                  f"Expected the named inputs {names}, got {got}")
                for n in names:
                    columns[n].append(instance[n])
        fmt = "row"
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            columns = inputs
        elif len(names) == 1:
            columns = {names[0]: inputs}
        else:
            raise invalid(f"The signature has {len(names)} inputs {names}: \"inputs\" must be an object")
        fmt = "columnar"
    for name, values in columns.items():
        if name not in sig.inputs:
            raise invalid(f"input tensor alias not found in signature: {name}. "
                          f"Inputs expected to be in the set {{{','.join(names)}}}.")
        request.inputs[name].CopyFrom(_tensor(values, sig.inputs[name].dtype, f"input '{name}'"))
    return request, fmt


def _json_value(name: str, array: np.ndarray):
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object])(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def predict_response(response: predict_pb2.PredictResponse, fmt: str) -> dict:
    """`{"predictions": ...}` (row) or `{"outputs": ...}` (columnar) from a PredictResponse."""
    arrays = {name: tf.make_ndarray(proto) for name, proto in sorted(response.outputs.items())}
    values = {name: _json_value(name, a) for name, a in arrays.items()}
    if fmt == "columnar":
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(sizes) != 1 or None in sizes:
        raise invalid("Batch size of the outputs differ: use the columnar (\"inputs\") format")
    size = sizes.pop()
    return {"predictions": [{n: v[i] for n, v in values.items()} for i in range(size)]}


def _feature(value, where: str) -> tf.train.Feature:
    items = value if isinstance(value, list) else [value]
    if all(isinstance(v, bool) for v in items) and items:
        raise invalid(f"{where}: booleans are not a tf.Example type")
    if all(isinstance(v, int) for v in items):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=items))
    if all(isinstance(v, (int, float)) for v in items):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in items]))
    if all(isinstance(v, str) or _is_b64(v) for v in items):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=_leaf(items, types_pb2.DT_STRING, where)))
    raise invalid(f"{where}: a feature's values must all be ints, all numbers or all strings; got {json.dumps(value)}")


def _example(obj, where: str) -> tf.train.Example:
    if not isinstance(obj, dict):
        raise invalid(f"{where}: an example must be a JSON object")
    return tf.train.Example(features=tf.train.Features(
        feature={k: _feature(v, f"{where} feature '{k}'") for k, v in obj.items()}))


def classify_request(body: dict) -> classification_pb2.ClassificationRequest:
    """A ClassificationRequest from a `:classify` body (JSON numbers: int -> int64, else float)."""
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid('"examples" must be a non-empty JSON list')
    request = classification_pb2.ClassificationRequest()
    request.model_spec.signature_name = body.get("signature_name", "")
    parsed = [_example(e, f"example {i}") for i, e in enumerate(examples)]
    if "context" in body:
        request.input.example_list_with_context.context.CopyFrom(_example(body["context"], "context"))
        request.input.example_list_with_context.examples.extend(parsed)
    else:
        request.input.example_list.examples.extend(parsed)
    return request


def classify_response(response: classification_pb2.ClassificationResponse) -> dict:
    """`{"result": [[[label, score], ...], ...]}` from a ClassificationResponse."""
    return {"result": [[[c.label, c.score] for c in r.classes] for r in response.result.classifications]}
