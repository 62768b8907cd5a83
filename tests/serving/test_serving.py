"""The local TF-Serving-compatible server and the clients, over loopback, on a real exported
model."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving import client as client_cli
from serving import local_server, model_config
from serving.grpc_client import GrpcClient, GrpcError
from serving.options import PortInUse
from serving.rest_client import RestClient
from serving.server import LocalServer
from tests.helpers import ROOT, USED_RAW, eventually
from tf_cartola import synthetic
from tf_cartola.common.loopback import free_port
from tf_cartola.contract import features as F
from tf_cartola.contract import signatures
from tf_cartola.export import requests
from tf_cartola.export import saved_model as export
from tf_cartola.export import store as model_store
from tf_cartola.read import examples

MODEL = "cartola_pro"


@pytest.fixture(scope="module")
def records():
    frame = synthetic.generate(40, seed=17).drop(columns=[F.LABEL_KEY])
    return frame.astype(object).where(pd.notna(frame), None).to_dict("records")


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """A server on a private copy of the trained export, as version 1."""
    _, result = trained
    base = tmp_path_factory.mktemp("models") / MODEL
    shutil.copytree(result["export_dir"], base / "1")
    config = model_config.build(MODEL, str(base), latest=2, labels={"stable": 1})
    with LocalServer(config, grpc_port=0, rest_port=0, poll_seconds=0.2) as server:
        yield server, base, tf.saved_model.load(str(base / "1"))


@pytest.fixture
def rest(served):
    return RestClient(served[0].rest_url, MODEL)


@pytest.fixture
def grpc_client(served):
    c = GrpcClient(served[0].grpc_address, MODEL)
    yield c
    c.close()


def _b64(serialized):
    return [{"b64": base64.b64encode(s).decode("ascii")} for s in serialized]


def test_every_signature_and_json_format_matches_the_in_process_model(
    served, rest, grpc_client, records
):
    _, _, loaded = served
    serialized = [examples.to_example(r) for r in records]
    # The model's own six.
    columns = requests.to_columns(records, export.used_raw_columns(F.FINAL_FEATURES))
    in_process = {
        "serving_default": loaded.signatures["serving_default"](inputs=tf.constant(serialized)),
        "predict_raw": loaded.signatures["predict_raw"](
            **{k: tf.constant(v) for k, v in columns.items()}
        ),
        "transform_features": loaded.signatures["transform_features"](
            inputs=tf.constant(serialized)
        ),
    }
    expected_p = in_process["predict_raw"][signatures.PROBABILITY].numpy()
    np.testing.assert_allclose(
        in_process["serving_default"]["scores"].numpy()[:, 1], expected_p, atol=1e-6
    )

    # serving_default: REST row + columnar (b64 examples), REST :classify, gRPC Predict + Classify.
    row = rest.predict(instances=_b64(serialized))["predictions"]
    np.testing.assert_allclose(
        [r["scores"] for r in row], in_process["serving_default"]["scores"], atol=1e-6
    )
    assert row[0]["classes"] == ["0", "1"]
    col = rest.predict(inputs=_b64(serialized))["outputs"]
    np.testing.assert_allclose(col["scores"], in_process["serving_default"]["scores"], atol=1e-6)
    result = rest.classify([requests.classify_json(r) for r in records])
    np.testing.assert_allclose(
        [[s for _, s in r] for r in result], in_process["serving_default"]["scores"], atol=1e-6
    )
    out = grpc_client.predict({"inputs": np.array(serialized, dtype=object)}, "serving_default")
    np.testing.assert_allclose(out["scores"], in_process["serving_default"]["scores"], atol=1e-6)
    labels, scores = grpc_client.classify(requests.classify_examples(records))
    np.testing.assert_allclose(scores, in_process["serving_default"]["scores"], atol=1e-6)
    assert labels[0].tolist() == ["0", "1"]

    # predict_raw: REST row + columnar, gRPC; integer columns as JSON 12 and 12.0 alike.
    np.testing.assert_allclose(rest.score(records), expected_p, atol=1e-6)
    as_ints = [
        {
            k: (int(v) if not np.isnan(v) and float(v).is_integer() else v)
            if not isinstance(v, str)
            else v
            for k, v in r.items()
        }
        for r in (dict(zip(columns, vals)) for vals in zip(*columns.values()))
    ]
    by_int = rest.predict(instances=as_ints, signature_name="predict_raw")["predictions"]
    np.testing.assert_allclose(by_int, expected_p, atol=1e-6)
    by_col = rest.predict(inputs=columns, signature_name="predict_raw")["outputs"]
    np.testing.assert_allclose(by_col, expected_p, atol=1e-6)
    np.testing.assert_allclose(grpc_client.score(records), expected_p, atol=1e-6)

    # transform_features: every transformed feature, REST row + columnar and gRPC.
    expected_t = {k: v.numpy() for k, v in in_process["transform_features"].items()}
    row = rest.predict(instances=_b64(serialized), signature_name="transform_features")[
        "predictions"
    ]
    col = rest.predict(inputs=_b64(serialized), signature_name="transform_features")["outputs"]
    out = grpc_client.predict({"inputs": np.array(serialized, dtype=object)}, "transform_features")
    for name, values in expected_t.items():
        np.testing.assert_allclose([r[name] for r in row], values, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(col[name], values, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(out[name], values, atol=1e-6, err_msg=name)


def test_classify_accepts_json_ints_and_floats_for_any_numeric_column(rest, records):
    as_floats = [
        {k: float(v) if isinstance(v, int) else v for k, v in requests.classify_json(r).items()}
        for r in records
    ]
    as_ints = [
        {
            k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in requests.classify_json(r).items()
        }
        for r in records
    ]
    assert any(isinstance(v, int) for v in as_ints[0].values())
    a, b = rest.classify(as_floats), rest.classify(as_ints)
    np.testing.assert_allclose(
        [[s for _, s in r] for r in a], [[s for _, s in r] for r in b], atol=1e-6
    )


def test_missing_values_are_nan_or_empty_and_equal_an_absent_feature(rest, records):
    record = dict(records[0], rel_pont=None, tempo_desperd=None, pixels=None)
    by_raw = rest.score([record])
    result = rest.classify([requests.classify_json(record)])  # Absent features in the tf.Example.
    assert by_raw[0] == pytest.approx(result[0][1][1], abs=1e-6)


def test_status_metadata_and_label_routing(rest, grpc_client):
    status = rest.status()
    assert status["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    assert rest.status(label="stable") == status
    sigs = rest.metadata()["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/classify"
    # predict_raw takes only the raw columns the model uses.
    assert set(sigs["predict_raw"]["inputs"]) == set(export.used_raw_columns(F.FINAL_FEATURES))
    assert set(export.used_raw_columns(F.FINAL_FEATURES)) == set(USED_RAW)
    assert grpc_client.status().model_version_status[0].version == 1
    assert grpc_client.metadata().model_spec.version.value == 1


def test_models_config_in_repo_parses_as_model_server_config():
    text = open(os.path.join(ROOT, "serving", "models.config")).read()
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    assert model.name == MODEL and model.model_version_policy.latest.num_versions == 2
    assert text_format.MessageToString(model_config.build(MODEL, "/models/cartola_pro")) == text


def test_warmup_file_parses_and_every_request_succeeds(served, grpc_client):
    _, base, _ = served
    path = base / "1" / signatures.WARMUP_FILE
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(str(path))
    ]
    assert {log.WhichOneof("log_type") for log in logs} == {"predict_log", "classify_log"}
    for log in logs:
        if log.HasField("classify_log"):
            request = log.classify_log.request
            request.model_spec.name = MODEL
            response = grpc_client.call(grpc_client.prediction.Classify, request)
            assert len(response.result.classifications) == len(request.input.example_list.examples)
        else:
            request = log.predict_log.request
            request.model_spec.name = MODEL
            response = grpc_client.call(grpc_client.prediction.Predict, request)
            assert response.outputs


def _post(url, body: bytes):
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# One row per case, alike in shape by design (the duplicates tool pairs rows of this table).
@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (f"/v1/models/{MODEL}:predict", b"{not json", 400, "JSON Parse error"),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"instances": [1, 2]}',
            400,
            "not of expected type: string",
        ),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"instances": [[["a"]], "b"]}',
            400,
            "Expecting shape [1,1] but got: []",
        ),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"signature_name": "predict_raw", "instances": [{"avg_3": 1}]}',
            400,
            "keys must be equal to",
        ),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"signature_name": "nope", "instances": ["a"]}',
            400,
            'signature key "nope" not found',
        ),
        (f"/v1/models/{MODEL}:predict", b'{"inputs": {"inputs": [{"b64": "!!"}]}}', 400, "base64"),
        (f"/v1/models/{MODEL}:predict", b'{"inputs": [{"b64": "Cv8="}]}', 400, "parse"),
        (
            f"/v1/models/{MODEL}:classify",
            b'{"examples": []}',
            400,
            "'examples' value is an empty array",
        ),
        (
            f"/v1/models/{MODEL}:regress",
            b'{"examples": [{"avg_3": 1.0}]}',
            400,
            "regression signature",
        ),
        ("/v1/models/nope:predict", b'{"instances": ["a"]}', 404, "Servable not found"),
        (
            f"/v1/models/{MODEL}/versions/99:predict",
            b'{"instances": ["a"]}',
            404,
            "Specific(cartola_pro, 99)",
        ),
        (
            f"/v1/models/{MODEL}/labels/canary:predict",
            b'{"instances": ["a"]}',
            400,
            "version label",
        ),
        (f"/v1/models/{MODEL}:explode", b"{}", 400, "Malformed request: POST"),
        (
            f"/v1/models/{MODEL}/versions/99999999999999999999:predict",
            b"{}",
            400,
            "Failed to convert version",
        ),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"instances": ["a"], "inputs": ["a"]}',
            400,
            "expecting only one of 'inputs' or 'instances' keys",
        ),
        (
            f"/v1/models/{MODEL}:predict",
            b'{"signature_name": 3, "instances": ["a"]}',
            400,
            "'signature_name' key must be a string value",
        ),
        (
            f"/v1/models/{MODEL}:predict",
            json.dumps(
                {
                    "signature_name": "predict_raw",
                    "instances": [
                        dict.fromkeys(USED_RAW, 1),
                        [1],
                    ],
                }
            ).encode(),
            400,
            "Expecting object but got list at item 1",
        ),
    ],
)
def test_bad_rest_requests_get_tf_serving_codes_and_the_server_stays_up(
    served, rest, path, body, status, message
):
    got_status, got = _post(served[0].rest_url + path, body)
    assert got_status == status and message in got["error"], got
    assert rest.status()["model_version_status"][0]["state"] == "AVAILABLE"


def test_oversized_request_is_refused_with_413_before_its_body_is_read(served, rest):
    import http.client

    host, port = served[0].rest_url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", f"/v1/models/{MODEL}:predict")
    conn.putheader("Content-Length", str(17 << 20))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "exceeds" in json.loads(response.read())["error"]
    conn.close()
    assert rest.status()


def test_oversized_grpc_request_is_refused(grpc_client):
    with pytest.raises(GrpcError) as e:
        grpc_client.predict({"inputs": np.array([b"x" * (17 << 20)], dtype=object)})
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_client.status()


def test_bad_grpc_requests_get_status_codes(grpc_client, served):
    with pytest.raises(GrpcError) as e:
        grpc_client.predict({"inputs": np.array([1.0, 2.0], dtype=np.float32)})
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "string" in e.value.message
    other = GrpcClient(served[0].grpc_address, "nope")
    with pytest.raises(GrpcError) as e:
        other.status()
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(GrpcError) as e:
        grpc_client.predict({"inputs": np.array([b"x"], dtype=object)}, version=42)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "predict_raw"
    request.input.example_list.examples.add()
    with pytest.raises(GrpcError) as e:
        grpc_client.call(grpc_client.prediction.Classify, request)
    assert (
        e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        and "classification signature" in e.value.message
    )
    assert grpc_client.status().model_version_status[0].state == 30  # AVAILABLE


def test_client_cli_scores_a_csv_over_rest_and_grpc(served, records, tmp_path):
    server, _, loaded = served
    frame = synthetic.generate(120, seed=4).drop(columns=[F.LABEL_KEY]).astype(object)
    frame.loc[5, "escalacoes"] = "oops"
    csv_path = tmp_path / "in-2026-01.csv"
    synthetic.write_csv(frame, str(csv_path))
    outs = []
    for flag, where in (("--rest", server.rest_url), ("--grpc", server.grpc_address)):
        out = tmp_path / f"out{flag}.csv"
        assert (
            client_cli.main(
                [
                    flag,
                    where,
                    "--model",
                    MODEL,
                    "--csv",
                    str(csv_path),
                    "--out",
                    str(out),
                    "--batch_size",
                    "50",
                ]
            )
            == 0
        )
        outs.append(pd.read_csv(out))
        assert len(open(str(out) + ".bad.jsonl").read().splitlines()) == 1
    assert len(outs[0]) == 119
    np.testing.assert_allclose(outs[0]["pro_probability"], outs[1]["pro_probability"], atol=2e-6)


def test_new_version_is_served_under_load_without_errors(served, trained, tmp_path):
    server, base, loaded = served
    _, result = trained
    import tensorflow_transform as tft

    from tf_cartola.contract import config as config_lib
    from tf_cartola.train import builder as model_lib

    # A visibly different version 2: the same model with halved weights.
    changed = model_lib.build(result["features"], config_lib.TrainConfig())
    changed.set_weights([w * 0.5 for w in result["model"].get_weights()])
    manifest = json.load(open(os.path.join(result["preprocess_dir"], "manifest.json")))
    export_dir = str(tmp_path / "v2")
    export.export(
        changed,
        tft.TFTransformOutput(manifest["artifacts"]["transform"]),
        result["features"],
        export_dir,
    )
    loaded_v2 = tf.saved_model.load(export_dir)

    frame = synthetic.generate(10, seed=8).drop(columns=[F.LABEL_KEY])
    records = frame.astype(object).where(pd.notna(frame), None).to_dict("records")
    serialized = tf.constant([examples.to_example(r) for r in records])
    expected = {
        v: m.signatures["serving_default"](inputs=serialized)["scores"].numpy()
        for v, m in ((1, loaded), (2, loaded_v2))
    }
    assert np.abs(expected[1] - expected[2]).max() > 1e-3

    answers, errors = [], []
    answered = {1: threading.Event(), 2: threading.Event()}

    def worker():
        # Each sends at least 50 requests, and on until version 2 has answered (or a minute has
        # passed).
        c = GrpcClient(server.grpc_address, MODEL, retries=0)
        deadline, sent = time.monotonic() + 60, 0
        while (sent < 50 or not answered[2].is_set()) and time.monotonic() < deadline:
            sent += 1
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(serialized))
            try:
                response = c.call(c.prediction.Predict, request)
            except GrpcError as e:
                errors.append(e)
                continue
            version = response.model_spec.version.value
            answers.append((version, tf.make_ndarray(response.outputs["scores"])))
            answered[version].set()
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    assert answered[1].wait(30)  # Under load before the push...
    model_store.push(export_dir, str(base))
    for t in threads:
        t.join()
    assert errors == [] and len(answers) >= 8 * 50
    for version, scores in answers:
        np.testing.assert_allclose(scores, expected[version], atol=1e-6)
    assert {v for v, _ in answers} == {1, 2}  # ... and both versions answered, without one error.
    # Once loaded, version 2 is the latest and answers by default.
    rest = RestClient(server.rest_url, MODEL)

    def states():
        return [(s["version"], s["state"]) for s in rest.status()["model_version_status"]]

    eventually(
        lambda: states() == [("2", "AVAILABLE"), ("1", "AVAILABLE")],
        "both versions listed, newest first",
    )
    latest = rest.predict(instances=_b64(serialized.numpy().tolist()))["predictions"]
    np.testing.assert_allclose([p["scores"] for p in latest], expected[2], atol=1e-6)
    # A version removed from disk is unloaded.
    shutil.rmtree(base / "2")
    # TF Serving keeps reporting an unloaded version as END.
    eventually(lambda: states() == [("2", "END"), ("1", "AVAILABLE")], "version 2 unloaded")


def test_a_taken_port_is_refused_naming_it(served):
    server, base, _ = served
    config = model_config.build(MODEL, str(base))
    grpc_port = int(server.grpc_address.rsplit(":", 1)[1])
    rest_port = int(server.rest_url.rsplit(":", 1)[1])
    with pytest.raises(PortInUse, match=f"gRPC port {grpc_port} .* in use"):
        LocalServer(config, grpc_port=grpc_port, rest_port=0)
    with pytest.raises(PortInUse, match=f"REST port {rest_port} .* in use"):
        LocalServer(config, grpc_port=0, rest_port=rest_port)
    assert (
        local_server.main(
            ["--model_base_path", str(base), "--port", str(grpc_port), "--rest_api_port", "0"]
        )
        == 2
    )


def test_a_batching_or_monitoring_file_tf_serving_refuses_stops_the_start_in_protobufs_words(
    served, tmp_path, capsys
):
    _, base, _ = served
    start = ["--model_base_path", str(base), "--port", "0", "--rest_api_port", "0"]
    (tmp_path / "batching.txt").write_text(
        "max_batch_size { value: 8 }\nnum_batch_thread { value: 2 }\n"
    )
    assert (
        local_server.main(
            [
                *start,
                "--enable_batching",
                "--batching_parameters_file",
                str(tmp_path / "batching.txt"),
            ]
        )
        == 2
    )
    assert (
        '2:1 : Message type "tensorflow.serving.BatchingParameters" has no field named '
        '"num_batch_thread"' in capsys.readouterr().err
    )
    (tmp_path / "monitoring.config").write_text("prometheus_config { enable: yes }")
    assert (
        local_server.main(
            [*start, "--monitoring_config_file", str(tmp_path / "monitoring.config")]
        )
        == 2
    )
    assert 'Expected "true" or "false"' in capsys.readouterr().err


def test_a_missing_config_file_is_one_line_and_an_empty_base_path_is_logged(
    tmp_path, capsys, caplog
):
    assert local_server.main(["--model_config_file", str(tmp_path / "none.config")]) == 2
    assert "model config file" in capsys.readouterr().err
    logged = f"No versions of servable {MODEL} found under base path {tmp_path}"
    with LocalServer(
        model_config.build(MODEL, str(tmp_path)), grpc_port=0, rest_port=0, poll_seconds=0.1
    ):
        eventually(lambda: logged in caplog.text, "the empty base path logged")


def test_model_config_prints_unless_told_where_and_checks_its_arguments(served, tmp_path, capsys):
    _, base, _ = served
    assert model_config.main([]) == 0
    assert (
        model_config.parse(capsys.readouterr().out).model_config_list.config[0].base_path
        == "/models/cartola_pro"
    )
    with pytest.raises(SystemExit):
        model_config.main(["--latest", "0"])
    assert model_config.main(["--label", "stable=3"]) == 2
    assert "--allow_version_labels_for_unavailable_models" in capsys.readouterr().err
    out = tmp_path / "local.config"
    assert (
        model_config.main(["--base_path", str(base), "--label", "stable=1", "--out", str(out)])
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    assert model_config.read(str(out)).model_config_list.config[0].version_labels["stable"] == 1


def test_a_client_hanging_up_is_one_line_and_the_server_stays_up(served, rest, caplog):
    server, _, _ = served
    host, port = server.rest_url[len("http://") :].split(":")
    with socket.create_connection((host, int(port))) as s:
        body = b'{"instances": [' + b'{"pixels": "1x1"},' * 20000 + b'{"pixels": "1x1"}]}'
        s.sendall(
            b"POST /v1/models/%s:predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
            % (MODEL.encode(), len(body))
        )
        s.sendall(body[:100])  # ... and hang up mid-request.
    eventually(lambda: "hung up before the answer" in caplog.text, "the hang-up logged")
    assert "Traceback" not in caplog.text
    assert rest.status()["model_version_status"]


def test_the_client_needs_only_the_model_columns_and_says_what_it_wrote(served, tmp_path, capsys):
    server, _, loaded = served
    needed = [F.ID_KEY, *export.used_raw_columns(F.FINAL_FEATURES)]
    frame = synthetic.generate(30, seed=5)[needed]
    csv_path, out = tmp_path / "few-2026-01.csv", tmp_path / "scores.csv"
    synthetic.write_csv(frame, str(csv_path))
    (tmp_path / "scores.csv.bad.jsonl").write_text("stale\n")
    assert (
        client_cli.main(
            ["--rest", server.rest_url, "--csv", str(csv_path), "--out", str(out), "--no_progress"]
        )
        == 0
    )
    assert f"scored 30 rows of {csv_path} into {out}" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 30 and not (tmp_path / "scores.csv.bad.jsonl").exists()
    assert not list(tmp_path.glob(".*.part"))
    synthetic.write_csv(frame.drop(columns=["avg_4"]), str(csv_path))
    assert (
        client_cli.main(
            [
                "--grpc",
                server.grpc_address,
                "--csv",
                str(csv_path),
                "--out",
                str(tmp_path / "x.csv"),
                "--no_progress",
            ]
        )
        == client_cli.EXIT_INPUT
    )
    assert "lacks column(s) ['avg_4']" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".*.part"))


def test_scoring_a_csv_over_rest_does_not_load_tensorflow(served, tmp_path):
    server, base, _ = served
    csv_path, out = tmp_path / "users-2026-01.csv", tmp_path / "scores.csv"
    synthetic.write_csv(synthetic.generate(20, seed=6), str(csv_path))
    code = (
        "import sys\n"
        "import serving.rest_client\n"
        "assert 'tensorflow' not in sys.modules\n"
        "from serving import client\n"
        f"assert client.main(['--rest', {server.rest_url!r}, '--csv', {str(csv_path)!r}, '--out', "
        f"{str(out)!r}, '--serving_dir', {str(base.parent)!r}, '--no_progress']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', "
        "'tf_keras'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not checked" not in done.stderr  # The served version's schema was read, without TF.
    assert len(pd.read_csv(out)) == 20


@pytest.mark.parametrize("flag", ["--rest", "--grpc"])
def test_the_client_exit_statuses_say_what_went_wrong(served, tmp_path, capsys, flag):
    server, _, _ = served
    csv_path, out = tmp_path / "in-2026-01.csv", tmp_path / "out.csv"
    synthetic.write_csv(synthetic.generate(5, seed=6), str(csv_path))
    good = server.rest_url if flag == "--rest" else server.grpc_address
    nobody = f"http://127.0.0.1:{free_port()}" if flag == "--rest" else f"127.0.0.1:{free_port()}"
    bad_address = "127.0.0.1:8501" if flag == "--rest" else "http://127.0.0.1:8500"
    base = ["--csv", str(csv_path), "--out", str(out), "--no_progress", "--timeout", "2"]
    assert client_cli.main([flag, bad_address, *base]) == client_cli.EXIT_ARGUMENTS
    assert "expected" in capsys.readouterr().err
    assert (
        client_cli.main([flag, good, "--csv", str(tmp_path / "none.csv"), "--out", str(out)])
        == client_cli.EXIT_INPUT
    )
    assert client_cli.main([flag, nobody, *base]) == client_cli.EXIT_UNREACHABLE
    assert "unreachable" in capsys.readouterr().err
    other_protocol = (
        f"http://{server.grpc_address}" if flag == "--rest" else server.rest_url.split("//")[1]
    )
    assert client_cli.main([flag, other_protocol, *base]) == client_cli.EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert err.startswith("error: the server is unreachable") and len(err.splitlines()) == 1, err
    assert (
        client_cli.main([flag, good, "--model", "no_such_model", *base]) == client_cli.EXIT_SERVER
    )
    assert "refused or failed" in capsys.readouterr().err
    assert not out.exists()


def test_scoring_counts_rows_outside_the_models_schema_and_can_set_them_aside(
    served, tmp_path, capsys
):
    server, base, _ = served
    frame = synthetic.generate(50, seed=8)
    frame.loc[:6, "anos_como_pro"] = 42  # The schema's domain is 0-3.
    frame = pd.concat([frame, frame.iloc[[10]]])  # One user twice.
    csv_path, out = tmp_path / "month-2026-01.csv", tmp_path / "scores.csv"
    synthetic.write_csv(frame, str(csv_path))
    base_args = ["--csv", str(csv_path), "--out", str(out), "--no_progress"]
    assert (
        client_cli.main(["--rest", server.rest_url, "--serving_dir", str(base.parent), *base_args])
        == 0
    )
    err = capsys.readouterr().err
    anyway = "scored anyway"
    assert (
        f"7 of 51 rows have anos_como_pro above the schema's maximum (INT_TYPE_BIG_INT): {anyway}"
        in err
        and "1 GLOBO_ID values appear more than once, in 2 rows" in err
    ), err
    assert len(pd.read_csv(out)) == 51

    assert (
        client_cli.main(
            [
                "--model_dir",
                str(base / "1"),
                "--set_aside_invalid",
                "--max_set_aside_fraction",
                "0.2",
                *base_args,
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        "7 of 51 rows have anos_como_pro above the schema's maximum (INT_TYPE_BIG_INT): set aside"
        in captured.err
    )
    assert "scored 44 rows" in captured.out and "7 rows set aside" in captured.out
    aside = [
        json.loads(line) for line in (tmp_path / "scores.csv.bad.jsonl").read_text().splitlines()
    ]
    assert sorted(r[F.ID_KEY] for r in aside) == sorted(frame[F.ID_KEY].iloc[:7])
    assert {r["kind"] for r in aside} == {"INT_TYPE_BIG_INT"} and aside[0]["row"][
        "anos_como_pro"
    ] == 42
    assert set(pd.read_csv(out)[F.ID_KEY]) == set(frame[F.ID_KEY].iloc[7:])

    assert (
        client_cli.main(
            ["--grpc", server.grpc_address, "--serving_dir", str(tmp_path), *base_args]
        )
        == 0
    )
    assert (
        f"not checked against a schema: no version 1 of {MODEL} under {tmp_path}: give "
        "--serving_dir" in capsys.readouterr().err
    )
    csv_path.write_text(",".join(F.CSV_COLUMNS) + "\n")
    assert client_cli.main(["--model_dir", str(base / "1"), *base_args]) == 0
    assert "the input has no rows: nothing was scored" in capsys.readouterr().err


def test_the_server_starts_quietly_and_says_where_it_serves(served):
    _, base, _ = served
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.local_server",
            "--model_base_path",
            str(base),
            "--model_name",
            MODEL,
            "--port",
            "0",
            "--rest_api_port",
            "0",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
    )
    lines = []
    try:
        for line in server.stderr:
            lines.append(line.rstrip("\n"))
            if "to stop" in line:
                break
    finally:
        server.terminate()
        lines += server.communicate(timeout=60)[1].splitlines()
    assert server.returncode == 0, lines
    assert any(f"serving ['{MODEL}']: gRPC 127.0.0.1:" in line for line in lines), lines
    ours = [line for line in lines if " INFO serving." in line]
    # No CUDA, TensorRT or warnings.
    assert lines and ours == lines, [line for line in lines if line not in ours]


@pytest.mark.parametrize("flag", ["--rest", "--grpc"])
def test_the_client_scores_with_the_stable_version_of_a_canary_and_labels_rows_with_it(
    trained, tmp_path, flag
):
    _, result = trained
    base = tmp_path / "serving" / MODEL
    for version in (1, 2):
        shutil.copytree(result["export_dir"], base / str(version))
    canary = model_config.build(
        MODEL, str(base), labels={"stable": 1, "canary": 2}, versions=[1, 2]
    )
    config_file = tmp_path / "canary.config"
    model_config.write(canary, str(config_file))
    csv_path = tmp_path / "users-2026-01.csv"
    synthetic.write_csv(synthetic.generate(30, seed=8), str(csv_path))
    with LocalServer(canary, grpc_port=0, rest_port=0, poll_seconds=0.2) as server:
        address = server.rest_url if flag == "--rest" else server.grpc_address
        common = [flag, address, "--csv", str(csv_path), "--no_progress", "--run_id", "2026-05"]
        common += ["--serving_dir", str(base.parent)]
        # TF Serving's rule: a request naming no version gets the newest served, the canary.
        assert client_cli.main([*common, "--out", str(tmp_path / "newest.csv")]) == 0
        assert set(pd.read_csv(tmp_path / "newest.csv")["model_version"]) == {2}
        # With the models.config the server runs: the stable version, named in every request.
        with_config = [*common, "--model_config_file", str(config_file)]
        assert client_cli.main([*with_config, "--out", str(tmp_path / "stable.csv")]) == 0
    scored = pd.read_csv(tmp_path / "stable.csv")
    assert len(scored) == 30 and set(scored["model_version"]) == {1}
