"""End to end: `beam_jobs.preprocess` on a few thousand generated rows, and on bad input."""

import glob
import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft

from beam_jobs import preprocess
from tests.helpers import CONFIG, DATA, SMALL_ROWS, probe_batch, split_ids
from tf_cartola import synthetic
from tf_cartola.contract import features as F
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.contract import split
from tf_cartola.train import training

# Whatever a demo left in ./serving_models is not these tests' baseline.
NO_BASELINE = [
    "--baseline",
    "none",
]


def test_every_artifact_in_the_manifest_exists_and_loads(preprocess_run):
    manifest, out = preprocess_run
    written = json.load(open(os.path.join(out, "manifest.json")))
    assert json.loads(json.dumps(manifest.to_json())) == written
    # The one loader reads back what the job returned.
    assert manifest_lib.load(out).to_json() == written
    assert manifest.valid and manifest.anomalies == []
    assert manifest.rows["read"] == SMALL_ROWS and manifest.rows["bad"] == 0
    assert manifest.rows["train"] + manifest.rows["eval"] == SMALL_ROWS
    assert set(manifest.seconds) >= {"read_split", "statistics", "validate", "transform", "total"}
    assert (
        manifest.inputs[0]["fingerprint"].startswith("sha256:")
        and manifest.versions["tensorflow-transform"] == "1.16.0"
    )
    assert manifest.config["preprocess"]["fail_on_anomalies"] is True
    a = manifest.artifacts
    for name, path in a.items():
        # Every listed artifact exists (patterns match files).
        assert glob.glob(path), (
            name,
            path,
        )
    assert tfdv.load_schema_text(a["schema"]).feature
    for which in split.SPLITS:
        stats = tfdv.load_stats_text(a[f"stats_{which}"])
        assert stats.datasets[0].num_examples == manifest.rows[which]
        tfdv.load_anomalies_text(a[f"anomalies_{which}"])
        assert len(split_ids(a[f"raw_{which}"])) == manifest.rows[which]
    tfdv.load_anomalies_text(a["anomalies_input"])
    assert ("bad_rows" in a) == (manifest.rows["bad"] > 0)  # No bad rows, no quarantine file.
    # The transform output is usable without this repo's code: raw and transformed specs both load.
    output = tft.TFTransformOutput(a["transform"])
    assert set(output.raw_feature_spec()) == set(F.CSV_COLUMNS)
    spec = output.transformed_feature_spec()
    assert set(spec) == set(F.TRANSFORMED_FEATURES) | {F.LABEL_KEY, F.ID_KEY}
    for which in split.SPLITS:
        assert split_ids(a[f"transformed_{which}"]) == split_ids(a[f"raw_{which}"])


def test_glob_input_gives_the_same_id_hash_split_and_infer_schema_only_writes_a_draft(
    preprocess_run, small_csv, tmp_path
):
    manifest, _ = preprocess_run
    frame = pd.read_csv(small_csv)
    parts = tmp_path / "parts"
    parts.mkdir()
    synthetic.write_csv(frame.iloc[:2500], str(parts / "a.csv"))
    synthetic.write_csv(frame.iloc[2500:], str(parts / "b.csv"))
    again = preprocess.run(
        NO_BASELINE
        + [
            "--input",
            str(parts / "*.csv"),
            "--output_dir",
            str(tmp_path / "out"),
            "--infer_schema",
        ]
    )
    assert [i["path"].rsplit("/", 1)[1] for i in again.inputs] == ["a.csv", "b.csv"]
    assert tfdv.load_schema_text(again.artifacts["schema_inferred"]).feature
    # Validation still used the curated schema, not the draft inferred from the same data.
    assert open(again.artifacts["schema"]).read() == open(manifest.artifacts["schema"]).read()
    # (A rerun into a used folder: test_bad_csv_exits_nonzero_...)
    assert again.rows == manifest.rows
    for which in split.SPLITS:
        ids = split_ids(manifest.artifacts[f"raw_{which}"])
        assert ids == split_ids(again.artifacts[f"raw_{which}"])
        assert ids == split_ids(again.artifacts[f"transformed_{which}"])
        assert ids == sorted(i for i in frame[F.ID_KEY] if split.split_of(i) == which)


def test_bad_csv_exits_nonzero_with_anomaly_table_and_writes_stats(tmp_path, capsys):
    frame = synthetic.generate(600, seed=2).astype(object)
    frame.loc[3, "escalacoes"] = "many"  # A string in a numeric column.
    frame.loc[4, "anos_como_pro"] = "x"
    frame.loc[5:40, "norm_escalacao"] = 7.5  # Out of the [0, 1] range.
    frame.loc[6:30, "anos_como_pro"] = 9  # Out of [0, 3].
    path = tmp_path / "bad.csv"
    synthetic.write_csv(frame, str(path))
    out = tmp_path / "out"
    status = preprocess.main(NO_BASELINE + ["--input", str(path), "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert "feature" in err and "anomaly kind" in err
    for feature, kind in [
        ("escalacoes", "FLOAT_TYPE_STRING_NOT_FLOAT"),
        ("anos_como_pro", "FLOAT_TYPE_STRING_NOT_FLOAT"),
        ("norm_escalacao", "FLOAT_TYPE_BIG_FLOAT"),
        ("anos_como_pro", "INT_TYPE_BIG_INT"),
    ]:
        assert any(feature in line and kind in line for line in err.splitlines()), (feature, kind)
    for which in split.SPLITS:
        assert tfdv.load_stats_text(str(out / "stats" / f"{which}.pbtxt")).datasets
        assert tfdv.load_anomalies_text(str(out / "anomalies" / f"{which}.pbtxt")).anomaly_info
    assert (
        "escalacoes"
        in tfdv.load_anomalies_text(str(out / "anomalies" / "input.pbtxt")).anomaly_info
    )
    quarantined = [
        json.loads(line) for f in glob.glob(str(out / "bad_rows" / "*.jsonl")) for line in open(f)
    ]
    assert sorted(r["column"] for r in quarantined) == ["anos_como_pro", "escalacoes"]
    manifest = json.load(open(out / "manifest.json"))
    assert not manifest["valid"] and manifest["rows"]["bad"] == 2
    assert "transform" not in manifest["artifacts"]
    assert not (out / "transform").exists() and not (out / "transformed").exists()
    page = (out / "report.html").read_text()  # Something to open and share, without a model.
    assert (
        '<section id="anomalies">' in page
        and '<section id="model">' not in page
        and "norm_escalacao" in page
    )

    (out / "mine.txt").write_text("not the job's")
    # The same folder, clean data this time.
    synthetic.write_csv(synthetic.generate(600, seed=2), str(path))
    assert preprocess.main(NO_BASELINE + ["--input", str(path), "--output_dir", str(out)]) == 0
    assert json.load(open(out / "manifest.json"))["valid"]
    assert not (out / "report.html").exists()  # Nothing stale.
    assert not [line for f in glob.glob(str(out / "bad_rows" / "*")) for line in open(f)]
    assert (out / "mine.txt").exists()


def test_missing_input_bad_header_and_missing_schema_are_clear_errors(tmp_path, capsys):
    assert (
        preprocess.main(["--input", str(tmp_path / "nope*.csv"), "--output_dir", str(tmp_path)])
        == 2
    )
    assert "no input file matches" in capsys.readouterr().err
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    assert (
        preprocess.main(["--input", str(tmp_path / "h.csv"), "--output_dir", str(tmp_path)]) == 2
    )
    assert "lacks column" in capsys.readouterr().err
    assert (
        preprocess.main(
            ["--input", str(tmp_path / "h.csv"), "--schema", str(tmp_path / "none.pbtxt")]
        )
        == 2
    )
    assert "use --infer_schema" in capsys.readouterr().err


@pytest.mark.e2e
def test_multi_process_runner_gives_the_same_splits_transform_and_model(
    preprocess_run, trained, small_csv, tmp_path
):
    manifest, _ = preprocess_run
    multi = preprocess.run(
        NO_BASELINE
        + [
            "--input",
            small_csv,
            "--output_dir",
            str(tmp_path),
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ]
    )
    for which in split.SPLITS:
        assert split_ids(multi.artifacts[f"raw_{which}"]) == split_ids(
            manifest.artifacts[f"raw_{which}"]
        )
    ref = tft.TFTransformOutput(manifest.artifacts["transform"])
    got = tft.TFTransformOutput(multi.artifacts["transform"])
    probe = {k: v for k, v in probe_batch().items()}
    # The transform graph is TF1 (preprocess_pipeline.transform_context): its Keras layer runs it.
    a, b = ref.transform_features_layer()(probe), got.transform_features_layer()(probe)
    for name in F.TRANSFORMED_FEATURES:
        tf.debugging.assert_near(a[name], b[name], atol=1e-6, message=name)
    # The model trained on it: the same epochs and weights as on the direct runner's output.
    cfg, direct = trained
    again = training.train(
        cfg, str(tmp_path), serving_dir=str(tmp_path / "serving"), run_dir=str(tmp_path / "run")
    )
    assert again["epochs_run"] == direct["epochs_run"]
    np.testing.assert_allclose(again["weights"], direct["weights"], rtol=0, atol=1e-5)


EDGE_CSV = os.path.join(DATA, "edge_csv")


def test_columnar_read_path_types_splits_quarantines_and_transforms_as_before(tmp_path):
    """The golden is the row-at-a-time job's output on the same edge-case files
    (tests/data/edge_csv)."""
    from tf_cartola.read import csv_reader, splits

    golden = json.load(open(os.path.join(EDGE_CSV, "golden.json")))
    manifest = preprocess.run(
        NO_BASELINE
        + [
            "--input",
            os.path.join(EDGE_CSV, "*.csv"),
            "--output_dir",
            str(tmp_path),
            "--no_fail_on_anomalies",
        ]
    )
    assert manifest.rows == golden["rows"] and manifest.bad_rows == golden["bad_rows"]
    quarantined = [
        json.loads(line) for f in glob.glob(manifest.artifacts["bad_rows"]) for line in open(f)
    ]
    assert sorted(
        (os.path.basename(r["source"]), r["line"], r["kind"], r["column"], r["reason"])
        for r in quarantined
    ) == sorted(
        (r["source"], r["line"], r["kind"], r["column"], r["reason"]) for r in golden["quarantine"]
    )
    spec = tft.TFTransformOutput(manifest.artifacts["transform"]).transformed_feature_spec()
    for which in split.SPLITS:
        raw = sorted(
            csv_reader.to_records(splits.read(manifest.artifacts[f"raw_{which}"])),
            key=lambda r: r[F.ID_KEY],
        )
        assert raw == golden["raw"][which]
        table = splits.read(manifest.artifacts[f"transformed_{which}"], list(spec))
        got = pd.DataFrame(
            {n: table.column(n).combine_chunks().flatten().to_numpy() for n in spec}
        ).sort_values(F.ID_KEY)
        expected = pd.DataFrame(golden["transformed"][which])
        assert got[F.ID_KEY].tolist() == expected[F.ID_KEY].tolist()
        assert got[F.LABEL_KEY].tolist() == expected[F.LABEL_KEY].tolist()
        for name in F.TRANSFORMED_FEATURES:
            np.testing.assert_allclose(
                got[name].to_numpy(), expected[name].to_numpy(), rtol=0, atol=1e-6, err_msg=name
            )


def test_the_cli_prints_its_progress_and_no_library_noise(preprocess_cli):
    done, _ = preprocess_cli
    lines = done.stderr.splitlines()
    noise = [line for line in lines if " INFO beam_jobs." not in line]
    assert not noise, noise[:5]
    text = done.stderr
    assert (
        "stage 2/4 pipeline" in text
        and f"read {SMALL_ROWS} rows" in text
        and "stage 4/4 publish" in text
    )
    assert json.loads(done.stdout)["rows"]["read"] == SMALL_ROWS


def test_an_unknown_flag_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert preprocess.main(["--input", "nothing.csv", "--ouput_dir", str(out)]) == 2
    assert "unknown flag --ouput_dir (did you mean --output_dir?)" in capsys.readouterr().err
    assert not out.exists()
    assert (
        preprocess.main(["--input", "nothing.csv", "--config", CONFIG, "--no_such_beam_flag=1"])
        == 2
    )
    assert "unknown flag --no_such_beam_flag" in capsys.readouterr().err


def test_data_problems_the_schema_does_not_see_are_anomalies(tmp_path, capsys):
    frame = synthetic.generate(600, seed=8)
    frame["gplay_free"] = 1  # A constant column.
    frame.loc[10, F.LABEL_KEY] = 2  # Labels outside {0, 1}.
    frame.loc[11, F.LABEL_KEY] = -1
    path = tmp_path / "joined.csv"
    synthetic.write_csv(pd.concat([frame, frame.iloc[20:25]]), str(path))  # Five users twice.
    more = tmp_path / "more.csv"
    synthetic.write_csv(
        synthetic.generate(30, seed=9).assign(GLOBO_ID=range(1, 31), gplay_free=1), str(more)
    )
    with open(path, "a") as f:
        f.write(open(more).read())  # Two files joined, headers and all.
    out = tmp_path / "out"
    assert preprocess.main(NO_BASELINE + ["--input", str(path), "--output_dir", str(out)]) == 1
    table = [line.split() for line in capsys.readouterr().err.splitlines()]
    found = {(row[0], row[1], row[2]) for row in table if len(row) > 2}
    assert {
        ("input", F.ID_KEY, "DUPLICATE_ID"),
        ("input", "gplay_free", "FEATURE_TYPE_LOW_UNIQUE"),
        ("input", F.LABEL_KEY, "BOOL_TYPE_BIG_INT"),
        ("input", F.LABEL_KEY, "BOOL_TYPE_SMALL_INT"),
        ("input", "(dataset)", "REPEATED_HEADER"),
    } <= found, found
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["duplicate_ids"] == {"ids": 5, "rows": 10}
    assert manifest["rows"]["bad"] == 3 and manifest["rows"]["read"] == 600 + 5 + 1 + 30
    raw = {w: split_ids(manifest["artifacts"][f"raw_{w}"]) for w in split.SPLITS}
    twice = set(frame[F.ID_KEY].iloc[20:25])
    for which in split.SPLITS:  # Both copies of a user land in the same split.
        assert all(raw[which].count(i) in (0, 2) for i in twice)


def test_an_input_without_rows_is_an_anomaly(tmp_path, capsys):
    path = tmp_path / "header_only.csv"
    path.write_text(",".join(F.CSV_COLUMNS) + "\n")
    assert (
        preprocess.main(
            NO_BASELINE + ["--input", str(path), "--output_dir", str(tmp_path / "out")]
        )
        == 1
    )
    assert "DATASET_LOW_NUM_EXAMPLES" in capsys.readouterr().err


@pytest.mark.production
def test_the_served_baseline_is_found_through_serving_dir_or_its_absence_is_said(
    trained, small_csv, tmp_path, capsys
):
    cfg, result = trained
    serving_dir = os.path.dirname(os.path.dirname(result["version_dir"]))
    common = ["--config", CONFIG, "--input", small_csv, "--no_fail_on_anomalies"]
    manifest = preprocess.run(
        [*common, "--output_dir", str(tmp_path / "found"), "--serving_dir", serving_dir]
    )
    assert (
        manifest.baseline["description"]
        == f"served model {cfg.serving.model_name} version {result['version']} (the newest under "
        f"{serving_dir}/{cfg.serving.model_name})"
    )
    assert manifest.baseline_missing is None
    empty = tmp_path / "nothing_served"
    assert (
        preprocess.main(
            [*common, "--output_dir", str(tmp_path / "missing"), "--serving_dir", str(empty)]
        )
        == 0
    )
    said = [line for line in capsys.readouterr().err.splitlines() if "no served version" in line]
    assert len(said) == 1 and str(empty) in said[0]
    manifest = json.loads((tmp_path / "missing" / "manifest.json").read_text())
    assert manifest["baseline"] is None and str(empty) in manifest["baseline_missing"]
