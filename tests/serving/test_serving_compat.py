"""The local server as a stand-in for TF Serving, on a SavedModel that is not ours: predict,
classify and regress signatures of several dtypes, in both start-up modes, checked against what TF
Serving's sources specify (http_rest_api_handler, json_tensor, predict_util,
get_model_metadata_impl, classifier, regressor)."""

import base64
import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import batching, inference, model_config
from serving.servables import single_model_config
from serving.server import LocalServer
from tests.helpers import ROOT, eventually
from tf_cartola.common.loopback import free_port

MODEL = "toy"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
_FEATURES = {"f": tf.io.FixedLenFeature([], tf.float32)}


class _Toy(tf.Module):
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 3], tf.float32, name="x_float"),
            tf.TensorSpec([None], tf.int64, name="x_int"),
            tf.TensorSpec([None], tf.string, name="x_str"),
        ]
    )
    def predict(self, x_float, x_int, x_str):
        return {
            "sum": tf.reduce_sum(x_float, axis=1),
            "doubled": x_int * 2,
            "upper": tf.strings.upper(x_str),
            "positive": x_int > 0,
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        f = tf.io.parse_example(inputs, _FEATURES)["f"]
        p = tf.sigmoid(f)
        batch = tf.shape(f)[0]
        return {
            "classes": tf.tile([["no", "yes"]], [batch, 1]),
            "scores": tf.stack([1 - p, p], axis=1),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def scores_only(self, inputs):
        f = tf.io.parse_example(inputs, _FEATURES)["f"]
        return {"scores": tf.stack([f, -f, f * 0], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": tf.io.parse_example(inputs, _FEATURES)["f"] * 2}


def save_toy(path: str) -> None:
    """Saves the toy model with TF Serving method names (the stack's MethodNameUpdater)."""
    toy = _Toy()
    tf.saved_model.save(
        toy,
        path,
        signatures={
            "serving_default": toy.predict,
            "classify": toy.classify,
            "scores_only": toy.scores_only,
            "regress": toy.regress,
        },
    )
    updater = tf.compat.v1.saved_model.signature_def_utils.MethodNameUpdater(path)
    for name, method in (("classify", CLASSIFY), ("scores_only", CLASSIFY), ("regress", REGRESS)):
        updater.replace_method_name(signature_key=name, method_name=method, tags="serve")
    updater.save()


@pytest.fixture(scope="module")
def toy_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("toy_models") / MODEL
    save_toy(str(base / "1"))
    return base


class _Endpoints:
    def __init__(self, rest_url, grpc_address):
        self.rest_url, self.grpc_address = rest_url, grpc_address
        self.channel = grpc.insecure_channel(grpc_address)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def post(self, path, body, timeout=20):
        request = urllib.request.Request(
            self.rest_url + path, data=json.dumps(body).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(self, path):
        try:
            with urllib.request.urlopen(self.rest_url + path, timeout=20) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


@pytest.fixture(scope="module", params=["model_name flags", "container flags"])
def server(request, toy_base, tmp_path_factory):
    """The local server on the toy model, started with --model_name/--model_base_path (in-process)
    or as the container starts TF Serving (a subprocess with its flags and config files)."""
    if request.param == "model_name flags":
        with LocalServer(single_model_config(MODEL, str(toy_base)), grpc_port=0, rest_port=0) as s:
            yield _Endpoints(s.rest_url, s.grpc_address)
        return
    configs = tmp_path_factory.mktemp("toy_config")
    config = model_config.build(MODEL, str(toy_base), latest=1, labels={"stable": 1, "canary": 2})
    model_config.write(config, str(configs / "models.config"))
    (configs / "monitoring.config").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'
    )
    (configs / "batching.txt").write_text(
        "max_batch_size { value: 4 }\nbatch_timeout_micros { value: 0 }\n"
    )
    with _local_server(
        configs / "server.log",
        f"--model_config_file={configs / 'models.config'}",
        "--model_config_file_poll_wait_seconds=60",
        "--file_system_poll_wait_seconds=1",
        f"--monitoring_config_file={configs / 'monitoring.config'}",
        "--enable_batching=true",
        f"--batching_parameters_file={configs / 'batching.txt'}",
        "--allow_version_labels_for_unavailable_models=true",
        "--tensorflow_intra_op_parallelism=2",
        "--enable_model_warmup",
        "true",
    ) as endpoints:
        yield endpoints


@contextlib.contextmanager
def _local_server(log_path, *flags):
    """`serving.local_server` with `flags`, in its own process on free ports, once it answers for
    MODEL; stopped at the end, also when it never came up."""
    grpc_port, rest_port = free_port(), free_port()
    ports = [f"--port={grpc_port}", f"--rest_api_port={rest_port}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.local_server", *ports, *flags], stderr=open(log_path, "w")
    )
    endpoints = _Endpoints(f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}")
    endpoints.log_path = log_path

    def answering() -> bool:
        assert process.poll() is None, log_path.read_text()
        with contextlib.suppress(urllib.error.URLError):  # Not listening yet.
            return endpoints.get(f"/v1/models/{MODEL}")[0] == 200
        return False

    try:
        eventually(answering, "the server answering", timeout=60)
        yield endpoints
    finally:
        process.terminate()
        process.wait(timeout=30)


def _examples(values):
    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={"f": tf.train.Feature(float_list=tf.train.FloatList(value=[v]))}
            )
        )
        for v in values
    ]


def test_predict_over_rest_row_and_columnar_with_every_dtype(server):
    status, got = server.post(
        f"/v1/models/{MODEL}:predict",
        {
            "instances": [
                {"x_float": [1, 2, 3.5], "x_int": 3, "x_str": "ab"},
                {
                    "x_float": [0, 0, 1],
                    "x_int": -1,
                    "x_str": {"b64": base64.b64encode(b"cd").decode()},
                },
            ]
        },
    )
    assert status == 200, got
    assert got["predictions"] == [
        {"sum": 6.5, "doubled": 6, "upper": "AB", "positive": True},
        {"sum": 1.0, "doubled": -2, "upper": "CD", "positive": False},
    ]
    status, got = server.post(
        f"/v1/models/{MODEL}:predict",
        {"inputs": {"x_float": [[1, 1, 1]], "x_int": [5], "x_str": ["z"]}},
    )
    assert status == 200 and got["outputs"] == {
        "sum": [3.0],
        "doubled": [10],
        "upper": ["Z"],
        "positive": [True],
    }


def test_predict_over_grpc_fills_typed_fields(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for name, value in (
        ("x_float", np.array([[1, 2, 3]], np.float32)),
        ("x_int", np.array([4], np.int64)),
        ("x_str", np.array([b"q"], object)),
    ):
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    response = server.stub.Predict(request, timeout=20)
    assert (
        list(response.outputs["sum"].float_val) == [6.0]
        and not response.outputs["sum"].tensor_content
    )
    assert list(response.outputs["doubled"].int64_val) == [8]
    assert list(response.outputs["upper"].string_val) == [b"Q"]
    assert list(response.outputs["positive"].bool_val) == [True]
    assert (
        response.model_spec.signature_name == "serving_default"
        and response.model_spec.version.value == 1
    )


def test_classify_and_regress_over_rest_and_grpc(server):
    status, got = server.post(
        f"/v1/models/{MODEL}:classify",
        {"signature_name": "classify", "examples": [{"f": 0.0}, {"f": 2.0}]},
    )
    assert status == 200, got
    assert [[c[0] for c in r] for r in got["results"]] == [["no", "yes"]] * 2
    assert got["results"][0][1][1] == pytest.approx(0.5)
    status, got = server.post(
        f"/v1/models/{MODEL}:classify", {"signature_name": "scores_only", "examples": [{"f": 1.5}]}
    )
    assert status == 200 and got["results"] == [[["", 1.5], ["", -1.5], ["", 0.0]]]
    status, got = server.post(
        f"/v1/models/{MODEL}:regress",
        {"signature_name": "regress", "context": {"f": 1.25}, "examples": [{}]},
    )
    assert status == 200 and got == {"results": [2.5]}

    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, "regress"
    request.input.example_list.examples.extend(_examples([1.0, -3.0]))
    assert [r.value for r in server.stub.Regress(request, timeout=20).result.regressions] == [
        2.0,
        -6.0,
    ]
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL, "classify"
    request.input.example_list.examples.extend(_examples([0.0]))
    result = server.stub.Classify(request, timeout=20).result.classifications[0]
    assert [c.label for c in result.classes] == ["no", "yes"]


def test_multi_inference_runs_each_task_on_the_same_examples(server):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", CLASSIFY), ("regress", REGRESS)):
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name, task.method_name = (
            MODEL,
            signature,
            method,
        )
    request.input.example_list.examples.extend(_examples([0.0, 1.0]))
    results = server.stub.MultiInference(request, timeout=20).results
    assert len(results[0].classification_result.classifications) == 2
    assert [r.value for r in results[1].regression_result.regressions] == [0.0, 2.0]
    assert results[1].model_spec.signature_name == "regress"


def test_metadata_is_the_stored_signature_map_and_needs_a_field(server):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = server.stub.GetModelMetadata(request, timeout=20)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {
        "serving_default",
        "classify",
        "scores_only",
        "regress",
        "__saved_model_init_op",
    }
    assert signatures.signature_def["regress"].method_name == REGRESS
    with pytest.raises(grpc.RpcError) as e:
        server.stub.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(model_spec=request.model_spec)
        )
    assert (
        e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "metadata_field" in e.value.details()
    )
    empty = predict_pb2.PredictRequest()
    with pytest.raises(grpc.RpcError) as e:
        server.stub.Predict(empty, timeout=20)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "method, path, status, phrase",
    [
        ("POST", f"/v1/models/{MODEL}:explain", 400, "Malformed request: POST"),
        ("GET", f"/v1/models/{MODEL}:predict", 400, "Malformed request: GET"),
        ("PUT", f"/v1/models/{MODEL}", 400, "Malformed request: PUT"),
        (
            "GET",
            f"/v1/models/{MODEL}/versions/18446744073709551616",
            400,
            "Failed to convert version",
        ),
        ("GET", f"/V1/MODELS/{MODEL}", 200, "AVAILABLE"),
        # TF Serving hands only /v1/ to its REST API.
        ("GET", f"/v2/models/{MODEL}", 404, "Not found: GET"),
        ("POST", f"/models/{MODEL}:predict", 404, "Not found: POST"),
    ],
)
def test_rest_status_codes_for_urls_and_methods(server, method, path, status, phrase):
    request = urllib.request.Request(
        server.rest_url + path, data=b"{}" if method != "GET" else None, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            got_status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        got_status, text = e.code, e.read().decode()
    assert got_status == status and phrase in text, text


@pytest.mark.parametrize("server", ["container flags"], indirect=True)
def test_the_container_flags_apply_batching_monitoring_and_labels(server):
    assert (
        "accepted and ignored (TF Serving flags this server does not implement): "
        "--tensorflow_intra_op_parallelism --enable_model_warmup"
    ) in server.log_path.read_text()
    rows = [{"x_float": [0, 0, 0], "x_int": 1, "x_str": "a"}] * 5
    status, got = server.post(f"/v1/models/{MODEL}:predict", {"instances": rows})
    assert (
        status == 400 and got["error"] == "Task size 5 is larger than maximum input batch size 4"
    )
    assert server.post(f"/v1/models/{MODEL}:predict", {"instances": rows[:4]})[0] == 200
    assert (
        server.post(f"/v1/models/{MODEL}/labels/stable:predict", {"instances": rows[:1]})[0] == 200
    )
    status, text = server.get("/monitoring/prometheus/metrics")
    assert status == 200
    assert f':tensorflow:serving:request_count{{model_name="{MODEL}",status="OK"}}' in text
    assert (
        f':tensorflow:serving:request_count{{model_name="{MODEL}",status="INVALID_ARGUMENT"}}'
        in text
    )
    assert (
        f':tensorflow:serving:request_latency_bucket{{model_name="{MODEL}",API="Predict",entrypoint="REST",'
        'le="+Inf"}'
    ) in text


@pytest.mark.e2e
@pytest.mark.parametrize(
    "batching_file", [None, os.path.join(ROOT, "serving", "batching_parameters.txt")]
)
def test_sixty_four_clients_see_no_failure_across_a_version_swap(
    toy_base, tmp_path, batching_file
):
    """With and without our batching file: with it, requests of both versions go through their
    batch queues."""
    base = tmp_path / MODEL
    shutil.copytree(toy_base / "1", base / "1")
    body = json.dumps({"instances": [{"x_float": [1, 2, 3], "x_int": 1, "x_str": "a"}]}).encode()
    grpc_request = predict_pb2.PredictRequest()
    grpc_request.model_spec.name = MODEL
    for name, value in (
        ("x_float", np.array([[1, 2, 3]], np.float32)),
        ("x_int", np.array([1], np.int64)),
        ("x_str", np.array([b"a"], object)),
    ):
        grpc_request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    swapped, answered = threading.Event(), threading.Event()
    parameters = batching.parse(open(batching_file).read()) if batching_file else None
    with LocalServer(
        single_model_config(MODEL, str(base)),
        grpc_port=0,
        rest_port=0,
        poll_seconds=0.1,
        batching_parameters=parameters,
    ) as s:

        def client(i):
            """Bounded traffic: until the swap is over (at most 300 requests), over gRPC or
            REST."""
            failures, versions, sent = [], set(), 0
            channel = grpc.insecure_channel(s.grpc_address)
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while sent < 300 and not (swapped.is_set() and sent >= 10):
                sent += 1
                try:
                    if i % 2:
                        versions.add(
                            stub.Predict(grpc_request, timeout=30).model_spec.version.value
                        )
                    else:
                        request = urllib.request.Request(
                            f"{s.rest_url}/v1/models/{MODEL}:predict", data=body, method="POST"
                        )
                        with urllib.request.urlopen(request, timeout=30) as r:
                            assert json.loads(r.read())["predictions"][0]["sum"] == 6.0
                    answered.set()
                except Exception as e:  # noqa: BLE001 - every failure is counted; none may happen.
                    failures.append(repr(e))
            channel.close()
            return failures, versions, sent

        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            futures = [pool.submit(client, i) for i in range(64)]
            assert answered.wait(30)  # Under load before version 2 appears.
            shutil.copytree(toy_base / "1", base / ".2")
            # Version 2 loads; the latest-1 policy then unloads version 1.
            os.rename(base / ".2", base / "2")
            eventually(
                lambda: (
                    [v for v, state, _ in s.manager.statuses(MODEL) if state == "AVAILABLE"] == [2]
                ),
                "version 2 alone available",
                timeout=60,
            )
            swapped.set()
            results = [f.result() for f in futures]
    failures = [f for fs, _, _ in results for f in fs]
    assert not failures, failures[:5]
    assert set().union(*(v for _, v, _ in results)) == {1, 2}
    assert sum(n for _, _, n in results) >= 64 * 10


def test_the_model_config_file_is_reloaded(toy_base, tmp_path):
    config_path = tmp_path / "models.config"
    model_config.write(model_config.build(MODEL, str(toy_base), latest=1), str(config_path))
    log_path = tmp_path / "server.log"
    with _local_server(
        log_path, f"--model_config_file={config_path}", "--model_config_file_poll_wait_seconds=0.5"
    ) as endpoints:

        def status(name):
            with contextlib.suppress(urllib.error.URLError):
                return endpoints.get(f"/v1/models/{name}")[0]
            return None

        assert status("toy2") == 404
        config = model_config.build(MODEL, str(toy_base), latest=1)
        config.model_config_list.config.add(
            name="toy2", base_path=str(toy_base), model_platform="tensorflow"
        )
        model_config.write(config, str(config_path))
        eventually(lambda: status("toy2") == 200, "toy2 served after the reload", timeout=60)
        config_path.write_text("this is not a config")  # Logged; the last good config serves on.
        eventually(lambda: "could not reload" in log_path.read_text(), "the bad config logged")
        assert status("toy2") == 200


def test_a_stalled_client_does_not_stall_the_others(server):
    host, port = urllib.parse.urlsplit(server.rest_url).netloc.split(":")
    stalled = socket.create_connection((host, int(port)), timeout=10)
    stalled.sendall(
        f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{{".encode()
    )
    try:
        # Each answered within its 5 s: a served connection does not wait on the stalled one.
        for _ in range(5):
            status, _ = server.post(
                f"/v1/models/{MODEL}:predict",
                {"instances": [{"x_float": [1, 2, 3], "x_int": 1, "x_str": "a"}]},
                timeout=5,
            )
            assert status == 200
    finally:
        stalled.close()


@pytest.mark.parametrize(
    "dtype, values",
    [
        (tf.float32, [[1.5, -2.0, 3.25], [0.0, 1e-30, 3e38]]),
        (tf.float64, [[1e300, -0.5], [2.0, 0.0]]),
        (tf.int32, [[1, -7], [2**31 - 1, 0]]),
        (tf.int64, [[-(2**63), 5]]),
        (tf.bool, [[True, False]]),
        (tf.string, [[b"a", b""], [b"\xff", b"xyz"]]),
        (tf.float32, []),
        (tf.float16, [[1.5, 2.0]]),
    ],
)
def test_typed_tensor_protos_hold_the_values_and_shape(dtype, values):
    array = np.array(values, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    proto = inference.typed_tensor_proto(array, dtype.as_datatype_enum)
    assert proto.dtype == dtype.as_datatype_enum
    assert [d.size for d in proto.tensor_shape.dim] == list(array.shape)
    assert (tf.make_ndarray(proto) == array).all()
    if dtype != tf.float16:  # Half has no typed field here and falls back to tensor_content.
        assert not proto.tensor_content


def _versions(endpoints, path=""):
    status, text = endpoints.get(f"/v1/models/{MODEL}{path}")
    return status, [
        (s["version"], s["state"]) for s in json.loads(text).get("model_version_status", [])
    ]


def test_rollback_and_canary_are_served_as_model_config_writes_them(toy_base, tmp_path, capsys):
    base = tmp_path / MODEL
    for version in (1, 2, 3):
        shutil.copytree(toy_base / "1", base / str(version))
    common = ["--model_name", MODEL, "--base_path", str(base)]
    rollback, canary = tmp_path / "rollback.config", tmp_path / "canary.config"
    assert (
        model_config.main(
            [*common, "--version", "1", "--label", "stable=1", "--out", str(rollback)]
        )
        == 0
    )
    assert "versions [1], labels {'stable': 1}" in capsys.readouterr().out
    # 3 is not served.
    assert model_config.main([*common, "--version", "1", "--label", "canary=3"]) == 2
    assert "name no served version (the policy serves [1] of [1, 2, 3]" in capsys.readouterr().err
    assert (
        model_config.main(
            [
                *common,
                "--version",
                "2",
                "--version",
                "3",
                "--label",
                "stable=2",
                "--label",
                "canary=3",
                "--out",
                str(canary),
            ]
        )
        == 0
    )
    # Rolled back: only version 1 is loaded although 3 is the newest.
    with LocalServer(
        model_config.read(str(rollback)), grpc_port=0, rest_port=0, poll_seconds=0.1
    ) as server:
        endpoints = _Endpoints(server.rest_url, server.grpc_address)
        assert _versions(endpoints) == (200, [("1", "AVAILABLE")])
        assert _versions(endpoints, "/labels/stable") == (200, [("1", "AVAILABLE")])
    # The canary beside the stable version, in the command-line start-up mode.
    with _local_server(tmp_path / "server.log", f"--model_config_file={canary}") as endpoints:
        assert _versions(endpoints) == (200, [("3", "AVAILABLE"), ("2", "AVAILABLE")])
        assert _versions(endpoints, "/labels/stable") == (200, [("2", "AVAILABLE")])
        assert _versions(endpoints, "/labels/canary") == (200, [("3", "AVAILABLE")])
