"""A client of TF Serving's gRPC API built on tensorflow-serving-api (works with the local server
too).
"""

import typing

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import retry
from tf_cartola.contract.signatures import PROBABILITY, RAW_SIGNATURE
from tf_cartola.export.requests import raw_columns_tensor_protos


class GrpcError(Exception):
    """A gRPC call that failed; carries the status code and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class GrpcClient:
    """Calls one model's PredictionService and ModelService methods.

    Args:
      address: HOST:PORT.
      model: the model name.
      timeout: deadline in seconds per call.
      retries: extra attempts on UNAVAILABLE, with exponential backoff from `backoff` seconds.
    """

    def __init__(
        self,
        address: str,
        model: str,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_message_bytes: int = 64 << 20,
    ):
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        # The stubs, for calls the methods below do not wrap:
        # client.call(client.prediction.Regress, request).
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._raw_inputs = {}

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def _spec(self, spec, signature_name=None, version=None, label=None) -> None:
        spec.name = self.model
        if signature_name:
            spec.signature_name = signature_name
        if version is not None:
            spec.version.value = version
        elif label:
            spec.version_label = label

    def call(self, method, request):
        """One RPC with retries on UNAVAILABLE; raises GrpcError with the server's message."""

        def attempt():
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                error = GrpcError(e.code(), e.details())
                raise (
                    retry.Transient(error) if e.code() == grpc.StatusCode.UNAVAILABLE else error
                ) from None

        return retry.with_backoff(attempt, self.retries, self.backoff)

    def predict(
        self,
        inputs: typing.Mapping,
        signature_name=None,
        version=None,
        label=None,
        output_filter=(),
    ) -> typing.Dict[str, np.ndarray]:
        """Predict on named inputs (numpy arrays or TensorProtos); returns numpy outputs.

        Args:
          inputs: input name -> numpy array or TensorProto.
          signature_name: the signature (default: the model's default one).
          version: the version to ask for (default: the latest).
          label: a version label to ask for instead.
          output_filter: the outputs wanted (default: all).
        """
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request.model_spec, signature_name, version, label)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(
                value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
            )
        response = self.call(self.prediction.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def classify(
        self,
        examples: typing.Sequence[tf.train.Example],
        signature_name=None,
        version=None,
        label=None,
    ) -> typing.Tuple[np.ndarray, np.ndarray]:
        """Classify tf.Examples; returns (labels [n, k], scores [n, k]).

        Args:
          examples: the tf.Examples to classify.
          signature_name: the signature (default: the model's default one).
          version: the version to ask for (default: the latest).
          label: a version label to ask for instead.
        """
        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, signature_name, version, label)
        request.input.example_list.examples.extend(examples)
        result = self.call(self.prediction.Classify, request).result.classifications
        labels = np.array([[c.label for c in r.classes] for r in result])
        scores = np.array([[c.score for c in r.classes] for r in result], dtype=np.float64)
        return labels, scores

    def metadata(
        self, version=None, label=None
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata of a version or label (default: the latest)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, version=version, label=label)
        return self.call(self.prediction.GetModelMetadata, request)

    def status(self, version=None, label=None) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus of a version or label (default: every served version)."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, version=version, label=label)
        return self.call(self.models.GetModelStatus, request)

    def raw_inputs(self, version=None, label=None) -> typing.List[str]:
        """The raw columns the served model uses: its raw-feature signature's inputs (asked
        once).
        """
        key = (version, label)
        if key not in self._raw_inputs:
            from tensorflow_serving.apis import get_model_metadata_pb2 as metadata_pb2

            signatures = metadata_pb2.SignatureDefMap()
            self.metadata(version, label).metadata["signature_def"].Unpack(signatures)
            self._raw_inputs[key] = sorted(signatures.signature_def[RAW_SIGNATURE].inputs)
        return self._raw_inputs[key]

    def served_version(self, version=None, label=None) -> int:
        """The version number that answers for (version, label): the latest when neither is
        given.
        """
        return self.metadata(version, label).model_spec.version.value

    def score(self, records, version=None, label=None) -> np.ndarray:
        """PRO probabilities of typed rows, through the raw-feature signature.

        Args:
          records: typed rows (column -> value), at least the model's raw columns.
          version: the version to ask for (default: the latest).
          label: a version label to ask for instead.
        """
        protos = raw_columns_tensor_protos(records, self.raw_inputs(version, label))
        return self.predict(protos, RAW_SIGNATURE, version, label)[PROBABILITY].astype(np.float64)
