"""PostgreSQL as source and sink, against a real server started for the session (conftest
`postgres`)."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import psycopg
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft

from beam_jobs import preprocess
from serving import client as client_cli
from tests.helpers import eventually, probe_batch, split_ids
from tf_cartola import synthetic
from tf_cartola.common import local_postgres
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import features as F
from tf_cartola.contract import split
from tf_cartola.read import postgres as pg
from tf_cartola.train import training
from tf_cartola.write import postgres as write_postgres


@pytest.fixture(scope="module")
def users_table(postgres, small_csv):
    """The conftest's small CSV as the table `users`, typed from the contract."""
    assert write_postgres.load_csv(postgres.url, postgres.password, "users", small_csv) > 0
    return "users"


def _preprocess(url, table, out, *extra):
    return preprocess.run(
        ["--input", url, "--table", table, "--output_dir", str(out), "--baseline", "none", *extra]
    )


@pytest.mark.e2e  # The table path against the CSV path, end to end (2 runs and a model).
def test_a_table_gives_the_csv_run_split_statistics_transform_and_model(
    preprocess_run, trained, pg_env, users_table, tmp_path
):
    csv_manifest, _ = preprocess_run
    runs = {
        n: _preprocess(pg_env.url, users_table, tmp_path / f"p{n}", "--partitions", str(n))
        for n in (1, 4)
    }
    probe = probe_batch()
    # The transform graph is TF1 (preprocess_pipeline.transform_context): its Keras layer runs it.
    expected = tft.TFTransformOutput(
        csv_manifest.artifacts["transform"]
    ).transform_features_layer()(probe)
    for n, manifest in runs.items():
        assert manifest.valid and manifest.rows == csv_manifest.rows
        assert manifest.inputs[0]["rows"] == csv_manifest.rows["read"]
        assert manifest.inputs[0]["fingerprint"] == runs[1].inputs[0]["fingerprint"]
        assert "FROM" in manifest.inputs[0]["query"]
        for which in split.SPLITS:
            assert split_ids(manifest.artifacts[f"raw_{which}"]) == split_ids(
                csv_manifest.artifacts[f"raw_{which}"]
            )
            got = tfdv.load_stats_text(manifest.artifacts[f"stats_{which}"]).datasets[0]
            want = tfdv.load_stats_text(csv_manifest.artifacts[f"stats_{which}"]).datasets[0]
            assert got.num_examples == want.num_examples
            for g, w in zip(got.features, want.features):
                kind = g.WhichOneof("stats")
                if kind == "num_stats":
                    np.testing.assert_allclose(
                        [
                            g.num_stats.mean,
                            g.num_stats.std_dev,
                            g.num_stats.min,
                            g.num_stats.max,
                            g.num_stats.common_stats.num_missing,
                        ],
                        [
                            w.num_stats.mean,
                            w.num_stats.std_dev,
                            w.num_stats.min,
                            w.num_stats.max,
                            w.num_stats.common_stats.num_missing,
                        ],
                        rtol=1e-6,
                    )
                else:
                    assert g.string_stats.top_values == w.string_stats.top_values
        layer = tft.TFTransformOutput(manifest.artifacts["transform"]).transform_features_layer()
        got = layer(probe)
        for name in F.TRANSFORMED_FEATURES:
            tf.debugging.assert_near(got[name], expected[name], atol=1e-6, message=name)
    cfg, csv_result = trained
    result = training.train(
        cfg,
        str(tmp_path / "p4"),
        serving_dir=str(tmp_path / "serving"),
        run_dir=str(tmp_path / "run"),
    )
    for metric in ("ks", "auc", "precision", "recall"):
        assert result["metrics"][metric] == pytest.approx(
            csv_result["metrics"][metric], abs=1e-6
        ), metric


def _bad_users(path):
    """A CSV whose bad rows a database can hold too: NULL ids and labels, labels 2 and -1, text in
    number columns, a fraction in an integer column, infinity."""
    frame = synthetic.generate(400, seed=31).astype(object)
    frame.loc[3, F.ID_KEY] = None
    frame.loc[5, F.LABEL_KEY] = None
    frame.loc[7, F.LABEL_KEY] = 2
    frame.loc[9, F.LABEL_KEY] = -1
    frame.loc[11, "escalacoes"] = "abc"
    frame.loc[13, "anos_como_pro"] = "1.5"
    frame.loc[15, "escalacoes"] = "inf"
    frame.loc[17, "rel_pont"] = None
    synthetic.write_csv(frame, str(path))


def _quarantined(out) -> list:
    records = [
        json.loads(line) for f in glob.glob(str(out / "bad_rows" / "*.jsonl")) for line in open(f)
    ]
    return sorted((r["line"].split(",")[0], r["kind"], r["column"]) for r in records)


@pytest.mark.e2e  # The table path against the CSV path, end to end (two preprocessing runs).
def test_a_table_with_nulls_bad_values_and_text_columns_quarantines_what_the_csv_path_does(
    pg_env, tmp_path
):
    path = tmp_path / "bad.csv"
    _bad_users(path)
    write_postgres.load_csv(
        pg_env.url,
        pg_env.password,
        "bad_users",
        str(path),
        text_columns=("escalacoes", "anos_como_pro"),
    )
    from_csv = preprocess.run(
        [
            "--input",
            str(path),
            "--output_dir",
            str(tmp_path / "csv"),
            "--baseline",
            "none",
            "--no_fail_on_anomalies",
        ]
    )
    from_db = _preprocess(
        pg_env.url, "bad_users", tmp_path / "db", "--no_fail_on_anomalies", "--partitions", "3"
    )
    assert from_db.bad_rows == from_csv.bad_rows and from_db.rows == from_csv.rows
    assert from_csv.rows["bad"] == 7  # The NULL rel_pont is a missing value, not a bad row.
    assert _quarantined(tmp_path / "db") == _quarantined(tmp_path / "csv")


def _scoring(model_dir, url: str, users_table: str, *flags) -> list:
    """serving.client's flags to score a users table into a scores table of the same database."""
    database = ["--db", url, "--table", users_table, "--out", url]
    return [
        "--model_dir",
        str(model_dir),
        *database,
        "--no_progress",
        "--run_id",
        "2026-01",
        *flags,
    ]


def test_scores_are_upserted_once_per_user_with_the_latest_version(
    pg_env, users_table, trained, tmp_path
):
    _, result = trained
    base = tmp_path / "models" / "cartola_pro"
    for version in (1, 2):
        shutil.copytree(result["export_dir"], base / str(version))
    for version in (1, 2):
        assert client_cli.main(_scoring(base / str(version), pg_env.url, users_table)) == 0
    with psycopg.connect(pg_env.url) as conn:
        rows, users, versions = conn.execute(
            'SELECT count(*), count(DISTINCT "GLOBO_ID"), array_agg(DISTINCT model_version) FROM '
            "scores"
        ).fetchone()
        assert rows == users == conn.execute("SELECT count(*) FROM users").fetchone()[0]
        assert versions == [2]


def test_a_scorer_killed_midway_leaves_whole_batches_and_a_rerun_completes(
    pg_env, users_table, trained, tmp_path
):
    _, result = trained
    command = [sys.executable, "-m", "serving.client"] + _scoring(
        result["export_dir"],
        pg_env.url,
        users_table,
        "--scores_table",
        "killed",
        "--batch_size",
        "50",
    )
    scorer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with psycopg.connect(pg_env.url, autocommit=True) as conn:

        def upserted(rows: int) -> bool:
            assert scorer.poll() is None, "the scorer ended before it was killed"
            exists = conn.execute("SELECT to_regclass('killed')").fetchone()[0]
            return (
                bool(exists) and conn.execute("SELECT count(*) FROM killed").fetchone()[0] >= rows
            )

        eventually(lambda: upserted(200), "200 rows upserted", timeout=120)
        scorer.send_signal(signal.SIGKILL)
        scorer.wait()
        count = conn.execute("SELECT count(*) FROM killed").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        assert 0 < count < total and count % 50 == 0  # Whole batches only.
        assert subprocess.run(command, capture_output=True, check=False).returncode == 0
        rows, users = conn.execute(
            'SELECT count(*), count(DISTINCT "GLOBO_ID") FROM killed'
        ).fetchone()
        assert rows == users == total


def test_no_password_in_logs_manifests_or_errors(
    postgres, users_table, trained, tmp_path, capsys, monkeypatch
):
    from beam_jobs import validate

    _, result = trained
    with_password = postgres.url.replace(
        f"{local_postgres.ROLE}@", f"{local_postgres.ROLE}:{postgres.password}@"
    )
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    monkeypatch.delenv("PGPASSWORD", raising=False)
    # Two runs as a user runs them, with every library's logs (-v); two in this process.
    runs = [
        [
            sys.executable,
            "-m",
            "beam_jobs.preprocess",
            "--input",
            with_password,
            "--table",
            users_table,
            "--output_dir",
            str(tmp_path / "pre"),
            "--baseline",
            "none",
            "-v",
        ],
        [
            sys.executable,
            "-m",
            "serving.client",
            "--model_dir",
            result["export_dir"],
            "--db",
            with_password,
            "--table",
            users_table,
            "--out",
            with_password,
            "--no_progress",
            "--run_id",
            "2026-01",
            "-v",
        ],
    ]
    seen = ""
    for command in runs:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        seen += done.stdout + done.stderr
    assert (
        validate.main(
            [
                "--input",
                with_password,
                "--table",
                users_table,
                "--baseline",
                str(tmp_path / "pre"),
                "--output_dir",
                str(tmp_path / "val"),
            ]
        )
        == 0
    )
    assert (
        preprocess.main(
            [
                "--input",
                with_password.replace(postgres.password, "wrong"),
                "--table",
                users_table,
                "--output_dir",
                str(tmp_path / "denied"),
                "--baseline",
                "none",
            ]
        )
        == 2
    )
    seen += "".join(capsys.readouterr())
    assert "password authentication failed" in seen and "***" in seen
    for path in glob.glob(str(tmp_path / "**" / "*"), recursive=True):
        if os.path.isfile(path) and path.endswith((".json", ".jsonl", ".html", ".pbtxt")):
            seen += open(path, errors="replace").read()
    assert postgres.password not in seen and "wrong" not in seen.replace("wrong_", "")


def test_a_password_in_a_url_is_masked():
    assert (
        pg.masked("postgresql://u:s3cr%40t@h:5432/db?sslmode=require&password=x")
        == "postgresql://u:***@h:5432/db?sslmode=require&password=***"
    )
    assert pg.masked("postgresql://u@h/db") == "postgresql://u@h/db"


def test_the_config_takes_a_database_input():
    cfg = config_lib.from_dict(
        {"preprocess": {"input": "postgresql://u@h/db", "query": "SELECT 1", "partitions": 8}}
    )
    assert cfg.preprocess.partitions == 8
    with pytest.raises(config_lib.ConfigError, match="partitions"):
        config_lib.from_dict({"preprocess": {"partitions": 0}})
