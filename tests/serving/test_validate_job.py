"""beam_jobs.validate on CSV batches and on the local server's request logs, against real
baselines."""

import glob
import io
import json
import os

import numpy as np
import pandas as pd
import pytest

from beam_jobs import validate
from serving import model_config
from serving.grpc_client import GrpcClient
from serving.rest_client import RestClient
from serving.server import LocalServer
from tests.helpers import USED_RAW
from tf_cartola import synthetic
from tf_cartola.contract import features as F
from tf_cartola.export import requests
from tf_cartola.read import prediction_logs, tfrecords

MODEL = "cartola_pro"


def _records(frame):
    frame = frame.drop(columns=[F.LABEL_KEY, F.ID_KEY])
    return frame.astype(object).where(pd.notna(frame), None).to_dict("records")


def test_users_to_score_without_the_label_validate_and_a_shifted_batch_is_flagged(
    preprocess_run, tmp_path, capsys
):
    _, baseline_dir = preprocess_run
    clean, moved = tmp_path / "clean.csv", tmp_path / "moved.csv"
    synthetic.write_csv(synthetic.generate(3000, 41).drop(columns=[F.LABEL_KEY]), str(clean))
    synthetic.write_csv(
        synthetic.shift_mean(
            synthetic.generate(3000, 42), "tempo_desperd", 0.5, np.random.default_rng(0)
        ),
        str(moved),
    )
    common = ["--baseline", baseline_dir, "--output_dir"]
    assert validate.main(["--input", str(clean)] + common + [str(tmp_path / "clean_out")]) == 0
    manifest = json.loads((tmp_path / "clean_out" / "manifest.json").read_text())
    assert manifest["rows"] == {"read": 3000, "good": 3000, "bad": 0}
    assert manifest["baseline"]["description"] == f"preprocessing run {baseline_dir}"
    assert "tempo_desperd" in capsys.readouterr().out  # The drift table.

    assert validate.main(["--input", str(moved)] + common + [str(tmp_path / "moved_out")]) == 1
    manifest = json.loads((tmp_path / "moved_out" / "manifest.json").read_text())
    assert [(a["feature"], a["kind"]) for a in manifest["anomalies"]] == [
        ("tempo_desperd", "DRIFT_DISTRIBUTION")
    ]
    assert "DRIFT_DISTRIBUTION" in capsys.readouterr().err


def test_no_baseline_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"serving:\n  serving_dir: {tmp_path / 'nothing'}\n")
    assert validate.main(["--config", str(config), "--input", "x.csv"]) == 2
    assert "no baseline" in capsys.readouterr().err


def _logged_server(version_dir, prefix, rotate_bytes=1 << 20):
    config = model_config.build(MODEL, os.path.dirname(version_dir), latest=1)
    logging_config = config.model_config_list.config[0].logging_config
    logging_config.log_collector_config.filename_prefix = prefix
    logging_config.sampling_config.sampling_rate = 1.0
    return LocalServer(
        config, grpc_port=0, rest_port=0, poll_seconds=0.2, log_rotate_bytes=rotate_bytes
    )


def _send(server, records):
    """Scores over REST and gRPC (the raw-column signature) and classifies whole rows, 100 rows a
    request."""
    rest, grpc_client = RestClient(server.rest_url, MODEL), GrpcClient(server.grpc_address, MODEL)
    try:
        for k, i in enumerate(range(0, len(records), 100)):
            part = records[i : i + 100]
            [
                rest.score,
                grpc_client.score,
                lambda r: grpc_client.classify(requests.classify_examples(r)),
            ][k % 3](part)
    finally:
        grpc_client.close()


def test_request_logs_validate_against_the_served_version_and_a_skewed_stream_is_flagged(
    trained, tmp_path
):
    _, result = trained
    version_dir = result["version_dir"]
    clean_prefix, skewed_prefix = (
        str(tmp_path / "logs" / "clean"),
        str(tmp_path / "logs" / "skewed"),
    )
    with _logged_server(version_dir, clean_prefix, rotate_bytes=64 << 10) as server:
        _send(server, _records(synthetic.generate(1800, 51)))
    files = sorted(glob.glob(clean_prefix + ".*.tfrecord"))
    assert len(files) > 1  # Rotated by size.
    common = ["--format", "prediction_log", "--baseline", version_dir, "--output_dir"]
    assert (
        validate.main(["--input", clean_prefix + ".*"] + common + [str(tmp_path / "clean_out")])
        == 0
    )
    manifest = json.loads((tmp_path / "clean_out" / "manifest.json").read_text())
    assert manifest["rows"] == {"read": 1800, "good": 1800, "bad": 0}
    assert set(manifest["baseline"]["features"]) == set(USED_RAW)

    skewed = synthetic.shift_mean(
        synthetic.generate(1800, 52), "tempo_desperd", 0.5, np.random.default_rng(0)
    )
    with _logged_server(version_dir, skewed_prefix) as server:
        _send(server, _records(skewed))
    assert (
        validate.main(["--input", skewed_prefix + ".*"] + common + [str(tmp_path / "skewed_out")])
        == 1
    )
    manifest = json.loads((tmp_path / "skewed_out" / "manifest.json").read_text())
    assert [(a["feature"], a["kind"]) for a in manifest["anomalies"]] == [
        ("tempo_desperd", "DRIFT_DISTRIBUTION")
    ]


def test_unreadable_records_and_contract_breaks_are_quarantined_with_reasons():
    from tensorflow_serving.apis import prediction_log_pb2

    def classify_log(**features):
        entry = prediction_log_pb2.PredictionLog()
        example = entry.classify_log.request.input.example_list.examples.add()
        for name, value in features.items():
            feature = example.features.feature[name]
            if isinstance(value, list):
                feature.float_list.value.extend(value)
            elif isinstance(value, float):
                feature.float_list.value.append(value)
            else:
                feature.bytes_list.value.append(value)
        return entry.SerializeToString()

    records = [
        classify_log(anos_como_pro=2.0, avg_3=1.5),
        classify_log(anos_como_pro=1.5),
        classify_log(avg_3=[1.0, 2.0]),
        b"not a prediction log",
        prediction_log_pb2.PredictionLog().SerializeToString(),
    ]
    data = tfrecords.frames(records) + tfrecords.frames([b"truncated"])[:-3]
    chunks = list(prediction_logs.read(io.BytesIO(data), "requests.tfrecord"))
    assert sum(c.rows for c in chunks) == 6 and sum(c.batch.num_rows for c in chunks) == 1
    reasons = {(b["line_number"], b["kind"], b["column"]) for c in chunks for b in c.bad}
    assert reasons == {
        (2, "INT_TYPE_NOT_INT_STRING", "anos_como_pro"),
        (3, "FEATURE_TYPE_HIGH_NUMBER_VALUES", "avg_3"),
        (4, "UNREADABLE_REQUEST", None),
        (5, "UNREADABLE_REQUEST", None),
        (6, "UNREADABLE_REQUEST", None),
    }


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_sampling_keeps_about_its_share_and_never_fails_a_request(trained, tmp_path, rate):
    _, result = trained
    prefix = str(tmp_path / "logs" / "sampled")
    config = model_config.build(MODEL, os.path.dirname(result["version_dir"]), latest=1)
    logging_config = config.model_config_list.config[0].logging_config
    logging_config.log_collector_config.filename_prefix = prefix
    logging_config.sampling_config.sampling_rate = rate
    records = _records(synthetic.generate(400, 53))
    with LocalServer(config, grpc_port=0, rest_port=0) as server:
        rest = RestClient(server.rest_url, MODEL)
        for record in records:
            assert len(rest.score([record])) == 1
    logged = sum(len(list(tfrecords.read(open(f, "rb")))) for f in glob.glob(prefix + ".*"))
    assert logged == 0 if rate == 0 else 140 <= logged <= 260
