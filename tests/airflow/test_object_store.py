"""The monthly DAG with everything on an object store served by another process: moto's S3
server (.venv-s3, `make s3-env`) on loopback holds the input, the work folders, the serving folder
and the scores; the Beam jobs run on a worker pool installed from the package's wheel
(beam_jobs.worker_pool in .venv-worker); the local server polls the bucket. Every process reaches
the store through the environment alone, as it would reach AWS's."""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import urllib.request

import boto3
import pandas as pd
import pytest

from tests.airflow import runs
from tests.helpers import ROOT, eventually, worker_pool
from tf_cartola import synthetic
from tf_cartola.common.loopback import free_port

pytestmark = pytest.mark.airflow
MOTO = os.path.join(ROOT, ".venv-s3", "bin", "moto_server")
WORKER_VENV = os.path.join(ROOT, ".venv-worker")
BUCKET = "cartola"
ROWS = 3000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An S3 server of its own on a free loopback port, with one bucket; yields the environment
    variables every process (Airflow's tasks, the workers, the server) reaches it with."""
    for path in (MOTO, os.path.join(WORKER_VENV, "bin", "python")):
        if not os.access(path, os.X_OK):
            pytest.fail(f"no {path}: `make test-airflow` builds it (make s3-env, make worker-env)")
    port = free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _answers(endpoint), "the S3 server answering", timeout=60)
        env = {
            "AWS_ACCESS_KEY_ID": "cartola",
            "AWS_SECRET_ACCESS_KEY": "cartola",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,  # boto3 (Beam's S3 filesystem) and s3fs (the DAG's).
            "S3_ENDPOINT": endpoint,  # TensorFlow's, through tensorflow-io.
            "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "0",
        }
        _client(env).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(endpoint: str) -> bool:
    with contextlib.suppress(OSError):
        return urllib.request.urlopen(endpoint, timeout=1).status == 200
    return False


def _client(env: dict):
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


def _objects(env: dict, prefix: str = "") -> dict:
    """Every object under `prefix`: key -> MD5 of its bytes."""
    client = _client(env)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {
        k: hashlib.md5(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()).hexdigest()
        for k in keys
    }


def _scores(env: dict, date: str) -> pd.DataFrame:
    client = _client(env)
    keys = sorted(k for k in _objects(env, f"scores/{date}/scores-") if k.endswith(".csv"))
    return pd.concat(
        pd.read_csv(io.BytesIO(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()))
        for k in keys
    )


@contextlib.contextmanager
def _server(env: dict, cwd):
    """The local server polling the bucket's serving folder each second; yields its REST URL."""
    port = free_port()
    with open(cwd / "server.log", "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serving.local_server",
                "--model_name=cartola_pro",
                f"--model_base_path=s3://{BUCKET}/serving/cartola_pro",
                f"--rest_api_port={port}",
                f"--port={free_port()}",
                "--file_system_poll_wait_seconds=1",
            ],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}/v1/models/cartola_pro"
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0  # Ended cleanly, the AWS SDK's teardown skipped.


def _available(url: str) -> list:
    with contextlib.suppress(OSError):
        status = json.load(urllib.request.urlopen(url, timeout=2))["model_version_status"]
        return sorted(int(v["version"]) for v in status if v["state"] == "AVAILABLE")
    return []


def test_two_months_on_a_bucket_with_workers_a_polling_server_a_rerun_and_a_backfill(
    airflow_env, store, tmp_path
):
    client = _client(store)
    first = synthetic.generate(ROWS, 31)
    for month, frame in (("2026-01", first), ("2026-02", synthetic.next_month(first, 32))):
        path = tmp_path / f"users-{month}.csv"
        synthetic.write_csv(frame, str(path))
        client.upload_file(str(path), BUCKET, f"in/users-{month}.csv")
    env = {**airflow_env, **store}
    with (
        worker_pool(
            os.path.join(WORKER_VENV, "bin", "python"),
            os.path.join(WORKER_VENV, "bin"),
            str(tmp_path),
            module="beam_jobs.worker_pool",
            env=store,
        ) as pool,
        _server(store, tmp_path) as served,
    ):
        bucket = f"s3://{BUCKET}"
        conf = {
            "input": f"{bucket}/in/users-{{{{ ds[:7] }}}}.csv",
            "work_dir": f"{bucket}/work",
            "serving_dir": f"{bucket}/serving",
            "scores": f"{bucket}/scores",
            "beam_args": "--runner PortableRunner --job_endpoint embed "
            f"--environment_type EXTERNAL --environment_config {pool}",
        }

        def month(date: str) -> dict:
            run = runs.dags_test(env, date, conf)
            log = run.stdout + run.stderr
            assert run.returncode == 0, log[-3000:]
            assert set(runs.states(env, date).values()) == {"success"}
            return runs.summary(log)

        assert month("2026-01-01")["decision"] == "pushed version 1"
        eventually(lambda: _available(served) == [1], "the server serving version 1", 60)
        second = month("2026-02-01")
        assert second["decision"] in ("pushed version 2", "not blessed"), second
        newest = 2 if second["decision"] == "pushed version 2" else 1
        eventually(lambda: _available(served)[-1:] == [newest], f"version {newest} served", 60)
        assert second["backtest"]["scores_of"] == "2026-01"
        decisions = client.get_object(Bucket=BUCKET, Key="serving/cartola_pro.decisions.jsonl")
        # Appended on a store that has no append.
        assert [json.loads(line)["run_id"] for line in decisions["Body"].iter_lines()] == [
            "2026-01",
            "2026-02",
        ]
        for date, frame_rows in (("2026-01-01", ROWS), ("2026-02-01", None)):
            scored = _scores(store, date)
            assert scored["GLOBO_ID"].is_unique and set(scored["run_id"]) == {date[:7]}
            assert frame_rows is None or len(scored) == frame_rows
        month_two = pd.read_csv(tmp_path / "users-2026-02.csv")
        assert len(_scores(store, "2026-02-01")) == len(month_two)
        folders = ("in/", "work/", "serving/", "scores/")
        assert not [k for k in _objects(store) if not k.startswith(folders)]

        before = _objects(store)
        rerun = month("2026-02-01")
        assert rerun["decision"] == "nothing changed", rerun
        after = _objects(store)
        assert sorted(after) == sorted(before)  # The same objects, none added, none left behind.
        # The models, the decisions log, the scores byte for byte; not the records of timings.
        same = [k for k in before if not k.startswith("work/") and "manifest.json" not in k]
        assert [after[k] for k in same] == [before[k] for k in same]
        assert any(k.startswith("scores/2026-02-01/scores-") for k in same)

        served_before = _objects(store, "serving/")
        backfill = month("2026-01-01")
        assert backfill["decision"] == "backfill: not pushed", backfill
        assert _objects(store, "serving/") == served_before
        assert _available(served)[-1] == newest
    manifest = _client(store).get_object(
        Bucket=BUCKET, Key="work/2026-02-01/preprocess/manifest.json"
    )["Body"]
    runner = json.load(manifest)["runner"]
    assert runner["name"] == "PortableRunner"
    assert [w["python"] for w in runner["workers"]] == [os.path.join(WORKER_VENV, "bin", "python")]
    assert not os.path.exists(tmp_path / "s3:") and not os.path.exists("s3:")
