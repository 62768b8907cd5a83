"""Drift tests calibrated on the generator: false alarms on pairs of samples of one distribution,
and power.

Statistics are TFDV's own (the generators the Beam job runs, computed in memory on the
reader's record batches), with the job's options. Samples are compared in all pairs: a
sample that looks odd by chance shows up in many pairs, which can only inflate the rate.
"""

import io
import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pytest

from tests.helpers import CONFIG, SCHEMA
from tf_cartola import synthetic
from tf_cartola.contract import features as F
from tf_cartola.read import csv_reader
from tf_cartola.validate import drift

ALPHA = 0.01


def stats_of(frame):
    """TFDV statistics of a generated frame, read back through the CSV reader as the job reads
    it."""
    from tensorflow_data_validation.statistics import stats_impl

    text = io.StringIO()
    synthetic.write_csv(frame, text)
    chunks = csv_reader.read_csv(io.BytesIO(text.getvalue().encode()), "generated.csv")
    table = pa.Table.from_batches([c.batch for c in chunks]).combine_chunks()
    return stats_impl.generate_statistics_in_memory(table.to_batches()[0], drift.stats_options())


def false_alarm_rate(rows, samples, seed):
    stats = [stats_of(synthetic.generate(rows, seed + i)) for i in range(samples)]
    pairs = list(itertools.combinations(stats, 2))
    alarms = [drift.drifted_features(drift.compare(a, b, ALPHA)) for a, b in pairs]
    return sum(bool(a) for a in alarms) / len(pairs), len(pairs), [a for a in alarms if a]


def power(rows, pairs, seed, change):
    """Share of pairs in which the changed feature is flagged, for each feature; and any other
    feature flagged."""
    hits, others = dict.fromkeys(change["columns"], 0), set()
    for column, k in itertools.product(change["columns"], range(pairs)):
        rng = np.random.default_rng(seed + k)
        a = synthetic.generate(rows, seed + 2 * k)
        b = synthetic.generate(rows, seed + 2 * k + 1)
        a, b = change["apply"](a, b, column, rng)
        flagged = drift.drifted_features(drift.compare(stats_of(a), stats_of(b), ALPHA))
        hits[column] += column in flagged
        others |= set(flagged) - {column}
    return {c: n / pairs for c, n in hits.items()}, others


MEAN_SHIFT = {
    "columns": F.NUMERIC_FEATURES,
    "apply": lambda a, b, c, rng: (a, synthetic.shift_mean(b, c, 0.25, rng)),
}
MISSING_5_TO_15 = {
    "columns": F.RAW_FEATURES,
    "apply": lambda a, b, c, rng: (
        synthetic.set_missing(a, c, 0.05, rng),
        synthetic.set_missing(b, c, 0.15, rng),
    ),
}


def test_pairs_of_one_distribution_rarely_alarm():
    rate, pairs, alarms = false_alarm_rate(5000, 16, seed=500)
    assert pairs == 120
    assert rate <= ALPHA, alarms


@pytest.mark.parametrize(
    "change", [MEAN_SHIFT, MISSING_5_TO_15], ids=["mean+0.25sd", "missing 5%->15%"]
)
def test_a_changed_feature_is_flagged_and_named(change):
    # Every feature's tests read its own column only, so changing half the features in one pair
    # judges each as if it alone had changed, and the other half must stay quiet. The slow sweep
    # runs 20 pairs per feature.
    columns = list(change["columns"])
    for changed in (columns[::2], columns[1::2]):
        rng = np.random.default_rng(900)
        a, b = synthetic.generate(20000, 900), synthetic.generate(20000, 901)
        for column in changed:
            a, b = change["apply"](a, b, column, rng)
        assert set(drift.drifted_features(drift.compare(stats_of(a), stats_of(b), ALPHA))) == set(
            changed
        )


def test_a_feature_with_too_few_baseline_rows_is_not_judged():
    base = synthetic.set_missing(
        synthetic.generate(5000, 1), "avg_4", 0.98, np.random.default_rng(0)
    )
    moved = synthetic.shift_mean(
        synthetic.generate(5000, 2), "avg_4", 2.0, np.random.default_rng(1)
    )
    checks = drift.compare(stats_of(base), stats_of(moved), ALPHA)
    avg_4 = {c.test: c for c in checks if c.feature == "avg_4"}
    assert not avg_4[drift.DISTRIBUTION].drifted
    assert avg_4[drift.DISTRIBUTION].note.startswith("too few rows to judge")
    assert avg_4[drift.MISSING].drifted  # 98% missing against ~0% is still a finding.


def test_a_categorical_feature_is_one_test_however_many_values_it_has():
    rng = np.random.default_rng(4)
    a, b, moved = (synthetic.generate(20000, seed) for seed in (41, 42, 43))
    for frame in (a, b, moved):  # 150 screen sizes, a few of them rare.
        sizes = rng.zipf(1.3, len(frame)) % 150
        frame["pixels"] = [f"{100 + s}x{200 + s}" for s in sizes]
    moved.loc[moved.index[:3000], "pixels"] = "1x1"
    same = [c for c in drift.compare(stats_of(a), stats_of(b), ALPHA) if c.feature == "pixels"]
    assert sorted(c.test for c in same) == sorted([drift.CATEGORY, drift.MISSING]) and not any(
        c.drifted for c in same
    )
    [shares] = [
        c for c in drift.compare(stats_of(a), stats_of(moved), ALPHA) if c.test == drift.CATEGORY
    ]
    assert shares.drifted and shares.kind == "DRIFT_CATEGORY_SHARE" and "'1x1'" in shares.current


@pytest.mark.e2e  # Two preprocessing runs; the production test below fails a shift the same way.
def test_a_shifted_csv_fails_the_job_naming_the_feature_and_a_clean_one_passes(
    preprocess_run, tmp_path
):
    from beam_jobs import preprocess

    _, baseline_dir = preprocess_run
    clean, moved = tmp_path / "clean.csv", tmp_path / "moved.csv"
    synthetic.write_csv(synthetic.generate(5000, 77), str(clean))
    synthetic.write_csv(
        synthetic.shift_mean(
            synthetic.generate(5000, 78), "escalacoes", 0.5, np.random.default_rng(0)
        ),
        str(moved),
    )
    common = ["--config", CONFIG, "--baseline", baseline_dir]
    manifest = preprocess.run(
        common + ["--input", str(clean), "--output_dir", str(tmp_path / "clean")]
    )
    assert manifest.valid and manifest.baseline["path"] == baseline_dir
    assert {c["feature"] for c in manifest.drift["train vs baseline"]} == set(F.RAW_FEATURES)

    status = preprocess.main(
        common + ["--input", str(moved), "--output_dir", str(tmp_path / "moved")]
    )
    assert status == 1
    moved_manifest = json.loads((tmp_path / "moved" / "manifest.json").read_text())
    found = {
        (a["split"], a["feature"], a["kind"]): a["description"]
        for a in moved_manifest["anomalies"]
    }
    # Also above the schema's domain now.
    assert {feature for _, feature, _ in found} == {"escalacoes"}
    assert "escalacoes distribution" in found[("train", "escalacoes", "DRIFT_DISTRIBUTION")]


@pytest.mark.slow
@pytest.mark.parametrize("rows,samples", [(5000, 40), (20000, 30), (50000, 20), (200000, 12)])
def test_false_alarm_sweep(rows, samples):
    rate, pairs, alarms = false_alarm_rate(rows, samples, seed=10_000 + rows)
    print(f"\nfalse alarms, {rows} rows a side: {rate:.4f} of {pairs} pairs {alarms}")
    assert rate <= ALPHA, alarms


@pytest.mark.slow
@pytest.mark.parametrize(
    "change", [MEAN_SHIFT, MISSING_5_TO_15], ids=["mean+0.25sd", "missing 5%->15%"]
)
def test_power_sweep(change):
    flagged, others = power(20000, 20, seed=20_000, change=change)
    print(
        "\npower, 20000 rows a side, 20 pairs per feature:",
        json.dumps(flagged),
        "others flagged:",
        others,
    )
    assert min(flagged.values()) >= 0.95


def test_the_served_version_is_the_default_baseline(trained, small_csv, tmp_path):
    from beam_jobs import preprocess

    cfg, result = trained
    config = tmp_path / "config.yaml"
    serving_dir = os.path.dirname(os.path.dirname(result["version_dir"]))
    config.write_text(
        f"serving:\n  serving_dir: {serving_dir}\n  model_name: {cfg.serving.model_name}\n"
    )
    manifest = preprocess.run(
        [
            "--config",
            str(config),
            "--input",
            small_csv,
            "--output_dir",
            str(tmp_path / "out"),
            "--schema",
            SCHEMA,
        ]
    )
    assert (
        manifest.baseline["description"]
        == f"served model {cfg.serving.model_name} version {result['version']} (the newest under "
        f"{serving_dir}/{cfg.serving.model_name})"
    )
    # The same CSV the version was trained on.
    assert manifest.baseline["inputs"] == manifest.inputs
    assert manifest.valid
    assert not any(c["drifted"] for c in manifest.drift["train vs baseline"])


@pytest.mark.production
def test_drift_accepted_on_purpose_is_recorded_everywhere_and_anything_else_still_fails(
    trained, tmp_path, capsys
):
    from beam_jobs import preprocess
    from tf_cartola.inspect import versions
    from tf_cartola.train import __main__ as train_cli
    from tf_cartola.train import training

    _, result = trained
    serving_dir = os.path.dirname(os.path.dirname(result["version_dir"]))
    rng = np.random.default_rng(5)
    shifted, shifted_twice = tmp_path / "shifted.csv", tmp_path / "shifted_twice.csv"
    month = synthetic.shift_mean(synthetic.generate(6000, seed=23), "tempo_desperd", 0.5, rng)
    synthetic.write_csv(month, str(shifted))
    synthetic.write_csv(synthetic.shift_mean(month.copy(), "avg_3", 0.5, rng), str(shifted_twice))
    common = ["--config", CONFIG, "--schema", SCHEMA, "--serving_dir", serving_dir]
    assert (
        preprocess.main(
            [*common, "--input", str(shifted), "--output_dir", str(tmp_path / "refused")]
        )
        == 1
    )
    assert "tempo_desperd" in capsys.readouterr().err
    accept = ["--accept", "tempo_desperd", "--accepted_by", "ana"]
    # avg_3 was not accepted.
    assert (
        preprocess.main(
            [
                *common,
                *accept,
                "--input",
                str(shifted_twice),
                "--output_dir",
                str(tmp_path / "still"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "avg_3" in err.split("Anomalies found")[1]
        and "tempo_desperd" not in err.split("Anomalies found")[1]
    )
    assert (
        preprocess.main(
            [*common, *accept, "--input", str(shifted), "--output_dir", str(tmp_path / "ok")]
        )
        == 0
    )
    assert "Anomalies (the run goes on)" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    assert manifest["valid"] and manifest["accepted"]["by"] == "ana"
    assert {a["feature"] for a in manifest["accepted"]["anomalies"]} == {"tempo_desperd"}
    assert (
        train_cli.main(
            [
                "--config",
                CONFIG,
                "--preprocess_dir",
                str(tmp_path / "ok"),
                "--serving_dir",
                str(tmp_path / "serving"),
                "--run_dir",
                str(tmp_path / "run"),
                "--run_id",
                "2026-02",
                "--force",
            ]
        )
        == 0
    )
    run = json.loads((tmp_path / "run" / "blessing.json").read_text())
    assert run["accepted"]["features"] == ["tempo_desperd"] and run["accepted"]["by"] == "ana"
    assert training.read_provenance(run["version_dir"])["accepted"]["by"] == "ana"
    [decision] = [
        json.loads(line) for line in open(tmp_path / "serving" / "cartola_pro.decisions.jsonl")
    ]
    assert decision["accepted"]["features"] == ["tempo_desperd"]
    assert (
        "Accepted on purpose for this run by ana" in (tmp_path / "run" / "report.html").read_text()
    )
    assert versions.describe(str(tmp_path / "serving" / "cartola_pro"))[0]["version"] == 1
