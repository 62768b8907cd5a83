"""beam_jobs.score: every user scored by RunInference as the served model scores them, nothing
lost."""

import csv
import glob
import json
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import psycopg
import pytest
import tensorflow as tf

from beam_jobs import score
from tests.helpers import CONFIG, eventually
from tf_cartola import synthetic
from tf_cartola.contract import features as F
from tf_cartola.contract import rows, signatures
from tf_cartola.export import store
from tf_cartola.read import csv_reader, examples


def _scores(prefix) -> dict:
    """{GLOBO_ID: (probability, model_name, model_version, run_id, decile, pro_target)} of the
    job's CSV shards (each has the header)."""
    out = {}
    for path in sorted(glob.glob(f"{prefix}-*-of-*.csv")):
        with open(path, newline="") as f:
            reader = csv.reader(f)
            assert next(reader) == [
                "GLOBO_ID",
                "pro_probability",
                "model_name",
                "model_version",
                "run_id",
                "decile",
                "pro_target",
            ]
            for gid, p, *made_by in reader:
                assert int(gid) not in out
                out[int(gid)] = (float(p), *made_by)
    return out


def _in_process(model_dir, csv_path) -> dict:
    """{GLOBO_ID: probability} of the export's serving_default signature on the CSV's rows."""
    with open(csv_path, "rb") as f:
        records = [
            r
            for chunk in csv_reader.read_csv(f, csv_path)
            for r in csv_reader.to_records(chunk.batch)
        ]
    fn = tf.saved_model.load(model_dir).signatures[signatures.DEFAULT_SIGNATURE]
    serialized = tf.constant([examples.to_example(r) for r in records])
    probabilities = fn(inputs=serialized)["scores"][:, 1].numpy()
    return {r[F.ID_KEY]: p for r, p in zip(records, probabilities)}


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """A serving folder with versions 1 and 2 of the trained export."""
    _, result = trained
    serving_dir = tmp_path_factory.mktemp("serving")
    for _ in range(2):
        store.push(result["export_dir"], str(serving_dir / "cartola_pro"))
    return str(serving_dir), result["export_dir"]


def test_every_row_is_scored_as_the_served_model_scores_it(served, small_csv, tmp_path):
    serving_dir, export_dir = served
    manifest = score.run(
        [
            "--config",
            CONFIG,
            "--input",
            small_csv,
            "--serving_dir",
            serving_dir,
            "--output",
            str(tmp_path / "scores"),
            "--run_id",
            "2026-12",
        ]
    )
    got = _scores(tmp_path / "scores")
    want = _in_process(export_dir, small_csv)
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[i][0] for i in want], list(want.values()), atol=1e-6)
    # The latest.
    assert {tuple(row[1:4]) for row in got.values()} == {("cartola_pro", "2", "2026-12")}
    assert manifest["model"] == {
        "name": "cartola_pro",
        "version": 2,
        "path": f"{serving_dir}/cartola_pro/2",
    }
    assert manifest["rows"] == {"read": len(want), "scored": len(want), "bad": 0, "set_aside": 0}
    assert manifest["invalid"] == {} and manifest["duplicate_ids"] == {"ids": 0, "rows": 0}
    assert manifest["inputs"][0]["fingerprint"]
    assert manifest["outputs"]["scores"] == sorted(glob.glob(f"{tmp_path}/scores-*-of-*.csv"))
    assert manifest["outputs"]["quarantine"] == []  # An empty shard is no finding.
    assert json.loads((tmp_path / "scores.manifest.json").read_text()) == manifest


def test_the_portable_runner_scores_what_the_direct_runner_scores(served, small_csv, tmp_path):
    serving_dir, _ = served
    common = ["--input", small_csv, "--serving_dir", serving_dir]
    direct = score.run([*common, "--output", str(tmp_path / "direct")])
    portable = score.run(
        [
            *common,
            "--output",
            str(tmp_path / "portable"),
            "--runner=PortableRunner",
            "--job_endpoint=embed",
            "--environment_type=LOOPBACK",
        ]
    )
    assert portable["rows"] == direct["rows"] and portable["runner"]["name"] == "PortableRunner"
    assert _scores(tmp_path / "portable") == _scores(tmp_path / "direct")


def test_a_version_is_scored_when_asked_and_no_version_is_one_line_and_status_2(
    served, small_csv, tmp_path, capsys
):
    serving_dir, _ = served
    score.run(
        [
            "--input",
            small_csv,
            "--serving_dir",
            serving_dir,
            "--version",
            "1",
            "--output",
            str(tmp_path / "v1"),
        ]
    )
    assert {row[2] for row in _scores(tmp_path / "v1").values()} == {"1"}
    capsys.readouterr()
    assert (
        score.main(
            [
                "--input",
                small_csv,
                "--serving_dir",
                str(tmp_path / "empty"),
                "--output",
                str(tmp_path / "none"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: no version of cartola_pro is served (the newest under "
        f"{tmp_path / 'empty' / 'cartola_pro'})"
    ]
    assert (
        score.main(
            [
                "--input",
                small_csv,
                "--serving_dir",
                serving_dir,
                "--version",
                "9",
                "--output",
                str(tmp_path / "none"),
            ]
        )
        == 2
    )
    assert "no version 9 of cartola_pro" in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "none*"))


def test_bad_lines_are_set_aside_with_their_reasons_and_the_rest_is_scored(
    served, small_csv, tmp_path
):
    serving_dir, _ = served
    lines = open(small_csv).read().splitlines()
    corrupt = tmp_path / "corrupt-2026-01.csv"
    header = lines[0].split(",")
    broken = lines[5].split(",")
    broken[header.index("avg_3")] = "not-a-number"
    short = lines[9].rsplit(",", 3)[0]
    corrupt.write_text(
        "\n".join([*lines[:5], ",".join(broken), *lines[6:9], short, *lines[10:]]) + "\n"
    )
    manifest = score.run(
        ["--input", str(corrupt), "--serving_dir", serving_dir, "--output", str(tmp_path / "s")]
    )
    bad = [
        json.loads(line)
        for path in glob.glob(str(tmp_path / "s.bad-*.jsonl"))
        for line in open(path)
    ]
    assert sorted((b["line_number"], b["kind"]) for b in bad) == [
        (6, rows.NOT_A_NUMBER),
        (10, rows.WRONG_FIELD_COUNT),
    ]
    assert manifest["rows"] == {
        "read": len(lines) - 1,
        "scored": len(lines) - 3,
        "bad": 2,
        "set_aside": 0,
    }
    assert len(_scores(tmp_path / "s")) == len(lines) - 3


def test_rows_outside_the_models_schema_are_counted_and_set_aside_when_asked(
    served, small_csv, tmp_path, capsys
):
    serving_dir, _ = served
    frame = pd.read_csv(small_csv)
    frame.loc[:4, "anos_como_pro"] = 42  # The schema's domain is 0-3.
    frame.loc[5:7, "avg_3"] = None  # Required: never empty in training.
    frame = pd.concat([frame, frame.iloc[[20, 21]]])  # Two users twice.
    month = tmp_path / "month-2026-01.csv"
    synthetic.write_csv(frame, str(month))
    args = ["--input", str(month), "--serving_dir", serving_dir]
    assert score.main([*args, "--output", str(tmp_path / "all")]) == 0
    err = capsys.readouterr().err
    assert (
        f"5 of {len(frame)} rows have anos_como_pro above the schema's maximum "
        "(INT_TYPE_BIG_INT): scored anyway"
        in err
        and "2 GLOBO_ID values appear more than once, in 4 rows" in err
    ), err
    manifest = json.loads((tmp_path / "all.manifest.json").read_text())
    assert manifest["invalid"] == {
        "INT_TYPE_BIG_INT:anos_como_pro": 5,
        f"{rows.MISSING_REQUIRED}:avg_3": 3,
    }
    assert manifest["rows"]["scored"] == len(frame) and manifest["duplicate_ids"] == {
        "ids": 2,
        "rows": 4,
    }

    manifest = score.run([*args, "--output", str(tmp_path / "strict"), "--set_aside_invalid"])
    assert manifest["rows"] == {
        "read": len(frame),
        "scored": len(frame) - 8,
        "bad": 0,
        "set_aside": 8,
    }
    aside = [
        json.loads(line)
        for path in glob.glob(str(tmp_path / "strict.bad-*.jsonl"))
        for line in open(path)
    ]
    assert sorted(r[F.ID_KEY] for r in aside) == sorted(frame[F.ID_KEY].iloc[:8])
    assert {r["kind"] for r in aside} == {"INT_TYPE_BIG_INT", rows.MISSING_REQUIRED}
    scored = pd.concat(pd.read_csv(path) for path in glob.glob(str(tmp_path / "strict-*.csv")))
    assert len(scored) == len(frame) - 8 and not set(scored[F.ID_KEY]) & set(
        frame[F.ID_KEY].iloc[:8]
    )


@pytest.mark.production
def test_database_scores_are_one_row_per_user_and_model_and_a_killed_run_reruns_cleanly(
    served, pg_env, small_csv, tmp_path
):
    from tf_cartola.write import postgres as write_postgres

    serving_dir, _ = served
    write_postgres.load_csv(pg_env.url, pg_env.password, "score_users", small_csv)
    command = [
        sys.executable,
        "-m",
        "beam_jobs.score",
        "--config",
        CONFIG,
        "--input",
        pg_env.url,
        "--table",
        "score_users",
        "--partitions",
        "30",
        "--serving_dir",
        serving_dir,
        "--db",
        pg_env.url,
        "--scores_table",
        "monthly",
        "--run_id",
        "2026-11",
    ]
    job = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with psycopg.connect(pg_env.url, autocommit=True) as conn:

        def writing() -> bool:
            assert job.poll() is None, "the job ended before it was killed"
            exists = conn.execute("SELECT to_regclass('monthly')").fetchone()[0]
            return bool(exists) and conn.execute("SELECT count(*) FROM monthly").fetchone()[0] > 0

        eventually(writing, "the job's first rows in the table", timeout=180)
        job.send_signal(signal.SIGKILL)
        job.wait()
        total = conn.execute("SELECT count(*) FROM score_users").fetchone()[0]
        killed_at = conn.execute("SELECT count(*) FROM monthly").fetchone()[0]
        # Killed midway, after some partitions (each one transaction).
        assert 0 < killed_at < total
        for _ in range(2):  # The rerun, then the same run again.
            assert (
                subprocess.run(command, cwd=tmp_path, capture_output=True, check=False).returncode
                == 0
            )
        rows, users, models = conn.execute(
            'SELECT count(*), count(DISTINCT "GLOBO_ID"), count(DISTINCT model_name) FROM monthly'
        ).fetchone()
        assert rows == users == total and models == 1
        assert conn.execute("SELECT DISTINCT model_version, run_id FROM monthly").fetchall() == [
            (2, "2026-11")
        ]
        # The next month's run keeps its own rows beside the last month's.
        next_month = [*command[:-2], "--run_id", "2026-12", "--version", "1"]
        assert (
            subprocess.run(next_month, cwd=tmp_path, capture_output=True, check=False).returncode
            == 0
        )
        assert conn.execute(
            "SELECT run_id, model_version, count(*) FROM monthly GROUP BY 1, 2 ORDER BY 1"
        ).fetchall() == [("2026-11", 2, total), ("2026-12", 1, total)]
    manifest = json.loads((tmp_path / "monthly.manifest.json").read_text())
    assert manifest["rows"]["scored"] == total and manifest["outputs"]["table"].endswith(
        " monthly"
    )


@pytest.mark.production
def test_a_windows_1252_byte_in_a_column_no_job_reads_sets_no_row_aside(
    served, small_csv, tmp_path
):
    from serving import client

    serving_dir, export_dir = served
    lines = open(small_csv).read().splitlines()
    pixels = lines[0].split(",").index("pixels")  # Not among the model's columns.
    row = lines[11].split(",")
    row[pixels] = "1920\u00d71080"  # Line 12: a DBMS export's "×", one byte in Windows-1252.
    lines[11] = ",".join(row)
    path = tmp_path / "cp1252-2026-01.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("windows-1252"))
    common = ["--input", str(path), "--serving_dir", serving_dir]
    everything = {"read": len(lines) - 1, "scored": len(lines) - 1, "bad": 0, "set_aside": 0}
    for name, flags in (("plain", []), ("decoded", ["--encoding", "windows-1252"])):
        manifest = score.run([*common, *flags, "--output", str(tmp_path / name)])
        assert manifest["rows"] == everything, name
    out = tmp_path / "client.csv"
    assert (
        client.main(
            ["--model_dir", export_dir, "--csv", str(path), "--out", str(out), "--no_progress"]
        )
        == 0
    )
    assert len(pd.read_csv(out)) == len(lines) - 1 and not glob.glob(f"{out}.bad.jsonl")


def test_a_run_that_sets_aside_most_rows_fails_naming_every_reason_and_the_encoding(
    served, small_csv, tmp_path, capsys
):
    from serving import client

    serving_dir, export_dir = served
    lines = open(small_csv).read().splitlines()[:301]
    column = lines[0].split(",").index("escalacoes")  # A column the model reads.
    body = []
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        cells[column] = "\u00d7" if i % 3 else cells[column]  # Two rows in three.
        body.append(",".join(cells))
    path = tmp_path / "cp1252-2026-01.csv"
    path.write_bytes(("\n".join([lines[0], *body]) + "\n").encode("windows-1252"))
    assert (
        score.main(
            ["--input", str(path), "--serving_dir", serving_dir, "--output", str(tmp_path / "s")]
        )
        == score.EXIT_SET_ASIDE
    )
    [error] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert error.startswith("error: 200 of 300 rows (66.7%) were set aside, more than")
    assert f"200 {rows.UNDECODABLE}:escalacoes" in error and "--encoding" in error
    out = tmp_path / "client.csv"
    code = client.main(
        ["--model_dir", export_dir, "--csv", str(path), "--out", str(out), "--no_progress"]
    )
    captured = capsys.readouterr()
    assert code == client.EXIT_INPUT and "--encoding" in captured.err
    assert f"set aside: 200 {rows.UNDECODABLE}:escalacoes" in captured.out
