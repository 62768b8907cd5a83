"""TF Serving's gRPC PredictionService and ModelService over the shared inference operations."""

import logging

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import inference
from serving.errors import ServingError
from serving.request_log import RequestLogger
from serving.servables import ServableManager

log = logging.getLogger(__name__)


def _call(context, fn, *args):
    try:
        return fn(*args)
    except ServingError as e:
        context.abort(e.code, e.message)
    except Exception as e:  # The server stays up; the client gets the reason.
        log.exception("internal error in a gRPC call")
        context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {e}")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata; answered requests go to the request log."""

    def __init__(self, manager: ServableManager, logger: RequestLogger):
        self._manager = manager
        self._logger = logger

    def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        response = _call(context, inference.predict, self._manager, request)
        self._logger.record("predict_log", request, response)
        return response

    def Classify(self, request, context):  # noqa: N802
        response = _call(context, inference.classify, self._manager, request)
        self._logger.record("classify_log", request, response)
        return response

    def Regress(self, request, context):  # noqa: N802
        return _call(context, inference.regress, self._manager, request)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _call(context, inference.metadata, self._manager, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest is left UNIMPLEMENTED)."""

    def __init__(self, manager: ServableManager):
        self._manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802
        return _call(context, inference.status, self._manager, request)


def add_services(server: grpc.Server, manager: ServableManager, logger: RequestLogger) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager, logger), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
