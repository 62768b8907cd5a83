"""The serving operations on protos (Predict, Classify, Regress, metadata, status), shared by REST and gRPC."""

import typing

import grpc
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from serving.errors import ServingError, invalid
from serving.servables import Servable, ServableManager

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def resolve(manager: ServableManager, spec: model_pb2.ModelSpec) -> Servable:
    """The servable a ModelSpec names (latest unless a version or a label is given)."""
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return manager.get(spec.name, version, label)


def _fill_spec(out: model_pb2.ModelSpec, servable: Servable, signature: str) -> None:
    out.name = servable.name
    out.version.value = servable.version
    out.signature_name = signature or "serving_default"


def _run(fn, kwargs: dict) -> dict:
    try:
        return fn(**kwargs)
    except UnicodeDecodeError:  # TF's own message quoted undecodable input bytes.
        raise invalid("Could not parse the input: it is not a valid serialized tf.Example") from None
    except tf.errors.DataLossError as e:  # decode_proto on bytes that are no tf.Example.
        raise invalid(f"Could not parse the input as tf.Example: {e.message.strip().splitlines()[-1]}") from None
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
        raise invalid(str(e).strip().splitlines()[0]) from None


def _to_tensor(name: str, proto, expected) -> tf.Tensor:
    if proto.dtype != expected.dtype:
        raise invalid(
            f"Expects arg[{name}] to be {types_pb2.DataType.Name(expected.dtype)[3:].lower()} but "
            f"{types_pb2.DataType.Name(proto.dtype)[3:].lower()} is provided"
        )
    value = tf.make_ndarray(proto)
    rank = len(expected.tensor_shape.dim)
    if not expected.tensor_shape.unknown_rank and value.ndim != rank:
        raise invalid(f"input '{name}' must have rank {rank}, got shape {list(value.shape)}")
    return tf.constant(value)


def predict(manager: ServableManager, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """Runs a signature on named input tensors; returns (filtered) output tensors."""
    return predict_on(resolve(manager, request.model_spec), request)


def predict_on(servable: Servable, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """`predict` on a given servable."""
    fn, sig = servable.signature(request.model_spec.signature_name)
    unknown = sorted(set(request.inputs) - set(sig.inputs))
    if unknown:
        raise invalid(f"input tensor alias not found in signature: {', '.join(unknown)}. "
                      f"Inputs expected to be in the set {{{','.join(sorted(sig.inputs))}}}.")
    missing = sorted(set(sig.inputs) - set(request.inputs))
    if missing:
        raise invalid(f"Request inputs do not match required inputs for model `{servable.name}`. "
                      f"Send extra: {{}}. Missing but required: {{{','.join(missing)}}}.")
    kwargs = {name: _to_tensor(name, request.inputs[name], sig.inputs[name]) for name in request.inputs}
    outputs = _run(fn, kwargs)
    wanted = list(request.output_filter) or sorted(outputs)
    for name in wanted:
        if name not in outputs:
            raise invalid(f"output tensor alias not found in signature: {name}")
    response = predict_pb2.PredictResponse()
    _fill_spec(response.model_spec, servable, request.model_spec.signature_name)
    for name in wanted:
        response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name].numpy()))
    return response


def examples_of(request_input) -> typing.List[bytes]:
    """Serialized tf.Examples of an Input proto (context features merged into each example)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = list(request_input.example_list.examples)
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        examples = []
        for example in with_context.examples:
            merged = tf.train.Example()
            merged.CopyFrom(with_context.context)
            merged.MergeFrom(example)
            examples.append(merged)
    else:
        examples = []
    if not examples:
        raise invalid("Input is empty.")
    return [e.SerializeToString() for e in examples]


def _method_signature(servable: Servable, name: str, method: str, kind: str):
    fn, sig = servable.signature(name)
    if sig.method_name != method:
        raise invalid(f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}")
    return fn, sig


def classify(manager: ServableManager,
             request: classification_pb2.ClassificationRequest) -> classification_pb2.ClassificationResponse:
    """Runs a classify signature on tf.Examples: per example, (class label, score) pairs."""
    return classify_on(resolve(manager, request.model_spec), request)


def classify_on(servable: Servable,
                request: classification_pb2.ClassificationRequest) -> classification_pb2.ClassificationResponse:
    """`classify` on a given servable."""
    fn, sig = _method_signature(servable, request.model_spec.signature_name, CLASSIFY_METHOD, "classification")
    serialized = examples_of(request.input)
    [input_name] = list(sig.inputs)
    outputs = _run(fn, {input_name: tf.constant(serialized)})
    scores = outputs["scores"].numpy() if "scores" in outputs else None
    classes = outputs["classes"].numpy() if "classes" in outputs else None
    response = classification_pb2.ClassificationResponse()
    _fill_spec(response.model_spec, servable, request.model_spec.signature_name)
    width = (scores if scores is not None else classes).shape[1]
    for i in range(len(serialized)):
        result = response.result.classifications.add()
        for j in range(width):
            c = result.classes.add()
            if classes is not None:
                c.label = classes[i, j].decode("utf-8")
            if scores is not None:
                c.score = float(scores[i, j])
    return response


def regress(manager: ServableManager, request) -> None:
    """The model has no regression signature; this reports it as TF Serving does."""
    servable = resolve(manager, request.model_spec)
    _method_signature(servable, request.model_spec.signature_name, REGRESS_METHOD, "regression")
    raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "Regress is not implemented by this server.")


def metadata(manager: ServableManager,
             request: get_model_metadata_pb2.GetModelMetadataRequest) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The signature defs of the requested version."""
    fields = list(request.metadata_field) or ["signature_def"]
    if fields != ["signature_def"]:
        raise invalid(f"Metadata field {fields[0]} is not supported")
    servable = resolve(manager, request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, sig in servable.signature_defs.items():
        signature_map.signature_def[name].CopyFrom(sig)
    packed = any_pb2.Any()
    packed.Pack(signature_map)
    response.metadata["signature_def"].CopyFrom(packed)
    return response


def status(manager: ServableManager,
           request: get_model_status_pb2.GetModelStatusRequest) -> get_model_status_pb2.GetModelStatusResponse:
    """The state of every version (or the requested one) of a model."""
    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    if spec.WhichOneof("version_choice") == "version_label":
        version = manager.get(spec.name, label=spec.version_label).version
    response = get_model_status_pb2.GetModelStatusResponse()
    for v, state, error in manager.statuses(spec.name, version):
        s = response.model_version_status.add()
        s.version = v
        s.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
        s.status.error_code = 0 if not error else 2  # OK / UNKNOWN
        s.status.error_message = error
    return response


def replay_warmup(servable: Servable, path: str) -> int:
    """Runs every request of a TF Serving warmup file against one servable; returns how many ran."""
    from tensorflow_serving.apis import prediction_log_pb2

    if not tf.io.gfile.exists(path):
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            predict_on(servable, log.predict_log.request)
        elif kind == "classify_log":
            classify_on(servable, log.classify_log.request)
        else:
            raise invalid(f"unsupported warmup request type {kind}")
        count += 1
    return count

