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
_INTS = {
    types_pb2.DT_INT8,
    types_pb2.DT_INT16,
    types_pb2.DT_INT32,
    types_pb2.DT_INT64,
    types_pb2.DT_UINT8,
    types_pb2.DT_UINT16,
    types_pb2.DT_UINT32,
    types_pb2.DT_UINT64,
}


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
    """A JSON value (a list of them, nested) as the Python values of a tensor of `dtype`."""
    if isinstance(value, list):
        return [_leaf(v, dtype, where) for v in value]
    converted = _string(value, where) if dtype == types_pb2.DT_STRING else _scalar(value, dtype)
    if converted is None:
        expected = types_pb2.DataType.Name(dtype)[3:].lower()
        raise invalid(f"{where}: JSON Value: {json.dumps(value)} not of expected type: {expected}")
    return converted


def _string(value, where: str):
    """A string's bytes: text as UTF-8, `{"b64": ...}` decoded; None for anything else."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise invalid(f"{where}: Unable to base64 decode") from None
    return None


def _scalar(value, dtype: int):
    """A number or a boolean as `dtype` takes it (JSON's true is no number); None otherwise."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in _FLOATS and number:
        return float(value)
    if dtype in _INTS and number and isinstance(value, int):
        return value
    if dtype == types_pb2.DT_BOOL and isinstance(value, bool):
        return value
    return None


def _tensor(values: list, dtype: int, where: str):
    converted = _leaf(values, dtype, where)
    try:
        array = np.array(
            converted,
            dtype=object if dtype == types_pb2.DT_STRING else tf.as_dtype(dtype).as_numpy_dtype,
        )
    except ValueError as e:
        raise invalid(f"{where}: the values do not form a tensor of one shape ({e})") from None
    if array.dtype == object and any(isinstance(v, list) for v in array.ravel()):
        raise invalid(f"{where}: the values do not form a tensor of one shape")
    return tf.make_tensor_proto(array, dtype=tf.as_dtype(dtype))


def _shape(value) -> list:
    """The dense shape of a JSON value, following first elements (TF Serving's
    GetDenseTensorShape).
    """
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _size(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def predict_request(body: dict, servable) -> typing.Tuple[predict_pb2.PredictRequest, str]:
    """A PredictRequest from a `:predict` body; returns it with the format, "row" or "columnar".

    Error messages carry TF Serving's key phrases (util/json_tensor.cc).
    """
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid(
            f"JSON Value: {json.dumps(body)[:200]} not formatted correctly. 'signature_name' key "
            "must be a string value."
        )
    _, sig = servable.signature(signature_name)
    names = sorted(sig.inputs)
    if not names:
        raise invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    if "instances" in body and "inputs" in body:
        raise invalid(
            "JSON Value: ... Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist"
        )
    if "instances" in body:
        columns, fmt = _row_columns(body["instances"], names), "row"
    elif "inputs" in body:
        columns, fmt = _columnar_columns(body["inputs"], names), "columnar"
    else:
        raise invalid("Missing 'inputs' or 'instances' key")
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, values in columns.items():
        request.inputs[name].CopyFrom(_tensor(values, sig.inputs[name].dtype, f"input '{name}'"))
    return request, fmt


def _row_columns(instances, names: typing.List[str]) -> dict:
    """The row format's `instances` as one list of values per input: objects keyed by the inputs'
    names, or plain values for a signature of one input; every input's values of one shape.
    """
    if not isinstance(instances, list):
        raise invalid("JSON Value: ... Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid("JSON Value: ... No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named and len(names) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    columns = {n: [] for n in names} if named else {names[0]: []}
    shapes = {}
    for i, instance in enumerate(instances):
        is_object = isinstance(instance, dict) and not _is_b64(instance)
        if named != is_object:
            got, wanted = ("list", "object") if named else ("object", "value/list")
            raise invalid(f"Expecting {wanted} but got {got} at item {i} of input list")
        items = instance if named else {names[0]: instance}
        if set(items) != set(names) and named:
            raise invalid(
                f"Failed to process element: {i} of 'instances' list. JSON object: "
                f"{json.dumps(instance)[:200]} keys must be equal to: {','.join(names)}"
            )
        for n, value in items.items():
            shapes[n] = _same_shape(shapes.get(n), _shape(value), f"{i} key: {n}")
            columns[n].append(value)
    return columns


def _same_shape(first, shape: list, where: str) -> list:
    """`shape`, when it is the first instance's (`first`, None for the first instance)."""
    if first is not None and _size(first) != _size(shape):
        raise invalid(
            f"Failed to process element: {where} of 'instances' list. Error: "
            f"Expecting tensor size: {_size(first)} but got: {_size(shape)}"
        )
    if first is not None and first != shape:
        raise invalid(
            f"Failed to process element: {where} of 'instances' list. Error: "
            f"Expecting shape [{','.join(map(str, first))}] but got: [{','.join(map(str, shape))}]"
        )
    return shape


def _columnar_columns(inputs, names: typing.List[str]) -> dict:
    """The columnar format's `inputs`: an object keyed by the inputs' names, or one plain value
    for a signature of one input.
    """
    if isinstance(inputs, dict) and not _is_b64(inputs):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise invalid(f"Missing named input: {missing[0]} in 'inputs' object.")
        return {n: inputs[n] for n in names}
    if len(names) == 1:
        return {names[0]: inputs}
    raise invalid(
        "inputs is a plain value/list, but expecting an object as multiple input tensors required "
        "as per tensorinfo_map"
    )


def _json_value(name: str, array: np.ndarray):
    if array.dtype == object:
        if name.endswith("_bytes"):
            return np.vectorize(
                lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object]
            )(array).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(
            array
        ).tolist()
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
        raise invalid('Batch size of the outputs differ: use the columnar ("inputs") format')
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
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=_leaf(items, types_pb2.DT_STRING, where))
        )
    raise invalid(
        f"{where}: a feature's values must all be ints, all numbers or all strings; got "
        f"{json.dumps(value)}"
    )


def _example(obj, where: str) -> tf.train.Example:
    if not isinstance(obj, dict):
        raise invalid(f"{where}: an example must be a JSON object")
    return tf.train.Example(
        features=tf.train.Features(
            feature={k: _feature(v, f"{where} feature '{k}'") for k, v in obj.items()}
        )
    )


def examples_request(body: dict, request, verb: str):
    """A ClassificationRequest or RegressionRequest from a `:classify` / `:regress` body (JSON
    numbers: int -> int64, else float).

    Args:
      body: the parsed JSON body.
      request: an empty ClassificationRequest or RegressionRequest, filled and returned.
      verb: "classify" or "regress", for error messages.
    """
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid(
            "JSON Value: ... not formatted correctly. 'signature_name' key must be a string value."
        )
    request.model_spec.signature_name = signature_name
    if "examples" not in body:
        raise invalid(
            f"JSON Value: ... When method is {verb}, key 'examples' is expected and was not found"
        )
    examples = body["examples"]
    if not isinstance(examples, list):
        raise invalid("JSON Value: ... Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid("JSON Value: ... 'examples' value is an empty array")
    parsed = [_example(e, f"example {i}") for i, e in enumerate(examples)]
    if "context" in body:
        request.input.example_list_with_context.context.CopyFrom(
            _example(body["context"], "context")
        )
        request.input.example_list_with_context.examples.extend(parsed)
    else:
        request.input.example_list.examples.extend(parsed)
    return request


def classify_response(response: classification_pb2.ClassificationResponse) -> dict:
    """`{"results": [[[label, score], ...], ...]}` from a ClassificationResponse."""
    return {
        "results": [
            [[c.label, c.score] for c in r.classes] for r in response.result.classifications
        ]
    }


def regress_response(response) -> dict:
    """`{"results": [value, ...]}` from a RegressionResponse."""
    return {"results": [r.value for r in response.result.regressions]}
