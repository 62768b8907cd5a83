"""TF Serving's gRPC PredictionService and ModelService over the shared inference operations."""

import logging
import time
import typing

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import inference
from serving.errors import ServingError
from serving.monitoring import Metrics
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
    """Predict, Classify, Regress, MultiInference and GetModelMetadata; answered requests go to the
    request log, every request to the metrics.
    """

    def __init__(self, manager: ServableManager, logger: RequestLogger, metrics: Metrics):
        self._manager = manager
        self._logger = logger
        self._metrics = metrics

    def _serve(self, context, api: str, log_kind: typing.Optional[str], fn, request):
        start, status = time.perf_counter(), "OK"
        name = (
            request.tasks[0].model_spec.name
            if api == "MultiInference" and request.tasks
            else request.model_spec.name
        )
        try:
            response = fn(self._manager, request)
        except ServingError as e:
            status = e.code.name
            context.abort(e.code, e.message)
        except Exception as e:  # The server stays up; the client gets the reason.
            status = "INTERNAL"
            log.exception("internal error in a gRPC call")
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {e}")
        finally:
            self._metrics.record(name, api, "GRPC", status, time.perf_counter() - start)
        if log_kind:
            self._logger.record(log_kind, request, response)
        return response

    def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        """PredictionService.Predict."""
        return self._serve(context, "Predict", "predict_log", inference.predict, request)

    def Classify(self, request, context):  # noqa: N802
        """PredictionService.Classify."""
        return self._serve(context, "Classify", "classify_log", inference.classify, request)

    def Regress(self, request, context):  # noqa: N802
        """PredictionService.Regress."""
        return self._serve(context, "Regress", "regress_log", inference.regress, request)

    def MultiInference(self, request, context):  # noqa: N802
        """PredictionService.MultiInference."""
        return self._serve(
            context, "MultiInference", "multi_inference_log", inference.multi_inference, request
        )

    def GetModelMetadata(self, request, context):  # noqa: N802
        """PredictionService.GetModelMetadata."""
        return self._serve(context, "GetModelMetadata", None, inference.metadata, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest is left UNIMPLEMENTED)."""

    def __init__(self, manager: ServableManager):
        self._manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802
        """ModelService.GetModelStatus."""
        return _call(context, inference.status, self._manager, request)


def add_services(
    server: grpc.Server, manager: ServableManager, logger: RequestLogger, metrics: Metrics
) -> None:
    """Registers PredictionService and ModelService on a gRPC server.

    Args:
      server: the gRPC server.
      manager: the loaded models.
      logger: the request logger (logging_config per model).
      metrics: the request metrics.
    """
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, logger, metrics), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
