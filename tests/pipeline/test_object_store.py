"""Models and runs on an object store: TensorFlow's ram:// filesystem stands in for gs:// (no GCS
emulator reaches tf.io.gfile), with no rename of folders, so every path goes through tf.io.gfile
and nothing lands in a local folder named after the scheme."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from serving import model_config
from serving.options import LoadRetries
from serving.rest_client import RestClient
from serving.server import LocalServer
from tests.helpers import eventually
from tf_cartola.contract import config as config_lib
from tf_cartola.export import store
from tf_cartola.inspect import report, versions
from tf_cartola.train import training
from tf_cartola.validate import baseline

# End to end: a real training run, servers; `make test-production`.
pytestmark = pytest.mark.production

MODEL = "cartola_pro"
ROW = {
    "anos_como_pro": 1.0,
    "avg_3": 0.5,
    "avg_4": 0.5,
    "escalacoes": 10.0,
    "norm_escalacao": 0.3,
    "tempo_desperd": 2.0,
}


def _read(path):
    with tf.io.gfile.GFile(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def ram_run(trained, preprocess_run):
    """A real training run whose run folder and serving folder are on ram://."""
    cfg, _ = trained
    _, preprocess_dir = preprocess_run
    result = training.train(
        cfg, preprocess_dir, serving_dir="ram://bucket/serving", run_dir="ram://bucket/runs/1"
    )
    return cfg, preprocess_dir, result


def test_training_pushes_to_an_object_store_and_nothing_lands_on_local_disk(ram_run):
    _, _, result = ram_run
    base = f"ram://bucket/serving/{MODEL}"
    assert result["blessed"] and result["version"] == 1 and result["version_dir"] == f"{base}/1"
    assert store.versions(base) == [1] and not [
        n for n in tf.io.gfile.listdir(base) if "staging" in n
    ]
    for name in (
        "saved_model.pb",
        "metrics.json",
        "provenance.json",
        "assets.extra/tf_serving_warmup_requests",
        f"{baseline.VERSION_DIR}/about.json",
    ):
        assert tf.io.gfile.exists(f"{base}/1/{name}"), name
    for name in ("blessing.json", "metrics.json", "history.json", "export/saved_model.pb"):
        assert tf.io.gfile.exists(f"ram://bucket/runs/1/{name}"), name
    decisions = [json.loads(line) for line in _read(f"{base}.decisions.jsonl").splitlines()]
    assert [d["version"] for d in decisions] == [1]
    assert not os.path.exists("ram:") and not os.path.exists("ram")


def test_versions_baseline_and_report_read_the_object_store(ram_run, tmp_path, capsys):
    cfg, preprocess_dir, result = ram_run
    base = f"ram://bucket/serving/{MODEL}"
    [record] = versions.describe(base)
    assert record["version"] == 1 and record["ks"] == pytest.approx(result["metrics"]["ks"])
    assert versions.main(["--serving_dir", "ram://bucket/serving"]) == 0
    assert f"{MODEL} at {base}" in capsys.readouterr().out
    serving = config_lib.ServingConfig(serving_dir="ram://bucket/serving", model_name=MODEL)
    found = baseline.resolve("served", serving)
    assert found.description == f"served model {MODEL} version 1 (the newest under {base})"
    assert found.path == f"{base}/1"
    assert (
        report.main(
            [
                "--preprocess_dir",
                preprocess_dir,
                "--run_dir",
                "ram://bucket/runs/1",
                "--out",
                "ram://bucket/report.html",
            ]
        )
        == 0
    )
    assert "<html" in _read("ram://bucket/report.html").lower()


def test_the_local_server_serves_a_config_and_versions_from_the_object_store(ram_run, capsys):
    base = f"ram://bucket/serving/{MODEL}"
    assert (
        model_config.main(
            [
                "--model_name",
                MODEL,
                "--base_path",
                base,
                "--latest",
                "1",
                "--label",
                "stable=1",
                "--out",
                "ram://bucket/models.config",
            ]
        )
        == 0
    )
    config = model_config.read("ram://bucket/models.config")
    assert config.model_config_list.config[0].base_path == base
    # No such version there.
    assert model_config.main(["--base_path", base, "--label", "canary=7"]) == 2
    assert (
        "name no served version (the policy serves [1] of [1] under ram://"
        in capsys.readouterr().err
    )
    with LocalServer(config, grpc_port=0, rest_port=0, poll_seconds=0.1) as server:
        rest = RestClient(server.rest_url, MODEL)
        assert [s["state"] for s in rest.status(label="stable")["model_version_status"]] == [
            "AVAILABLE"
        ]
        [score] = rest.score([ROW])
        assert 0.0 < score < 1.0


def test_a_push_to_an_object_store_writes_the_saved_model_last(trained, monkeypatch):
    _, result = trained
    written = []
    copy = tf.io.gfile.copy
    monkeypatch.setattr(
        tf.io.gfile,
        "copy",
        lambda src, dst, overwrite=False: (written.append(dst), copy(src, dst, overwrite))[1],
    )
    base = "ram://ordered/cartola_pro"
    assert store.push(result["export_dir"], base) == 1
    into_version = [w for w in written if w.startswith(f"{base}/1/")]
    staged = [w for w in written if "/.staging-" in w]
    assert into_version[-1] == f"{base}/1/saved_model.pb"
    # The whole copy was staged first.
    assert written.index(into_version[0]) > written.index(staged[-1])
    assert store.versions(base) == [1] and not [
        n for n in tf.io.gfile.listdir(base) if "staging" in n
    ]


def test_a_version_still_being_copied_is_retried_until_whole_and_a_broken_one_ends_with_its_error(
    trained,
):
    _, result = trained
    base = "ram://partial/cartola_pro"
    store.copy_tree(result["export_dir"], f"{base}/1")
    tf.io.gfile.rename(f"{base}/1/saved_model.pb", "ram://partial/held.pb")  # Not there yet.
    config = model_config.build(MODEL, base, latest=1)
    with LocalServer(
        config,
        grpc_port=0,
        rest_port=0,
        poll_seconds=0.05,
        retries=LoadRetries(max_retries=1000, interval_seconds=0.1),
    ) as server:
        rest = RestClient(server.rest_url, MODEL)
        assert rest.status()["model_version_status"][0]["state"] == "LOADING"
        # The copy completes.
        tf.io.gfile.rename("ram://partial/held.pb", f"{base}/1/saved_model.pb")
        eventually(
            lambda: rest.status()["model_version_status"][0]["state"] == "AVAILABLE",
            "the whole version loaded",
            timeout=60,
        )
        assert np.isfinite(rest.score([ROW])).all()
    broken = "ram://broken/cartola_pro"
    tf.io.gfile.makedirs(f"{broken}/3/variables")
    with LocalServer(
        model_config.build(MODEL, broken, latest=1),
        grpc_port=0,
        rest_port=0,
        poll_seconds=0.05,
        retries=LoadRetries(max_retries=2, interval_seconds=0.05),
    ) as server:
        rest = RestClient(server.rest_url, MODEL)

        def ended() -> list:
            return [s for s in rest.status()["model_version_status"] if s["state"] == "END"]

        eventually(ended, "the broken version given up", timeout=60)
        [status] = ended()
        assert status["version"] == "3" and "SavedModel" in status["status"]["error_message"]
        assert status["status"]["error_code"] != "OK"
