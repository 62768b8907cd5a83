"""Closing the loop: deciles over the whole run and the label at scoring time in every score, the
target list and its expected conversions, and beam_jobs.backtest's join and findings."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk_metrics

from beam_jobs import backtest, score
from beam_jobs.shared import inputs as inputs_lib
from serving import client
from tests.helpers import CONFIG
from tf_cartola import synthetic
from tf_cartola.contract import features as F
from tf_cartola.evaluate import campaign
from tf_cartola.evaluate import metrics as metrics_lib
from tf_cartola.export import store


@pytest.fixture(scope="module")
def serving_dir(trained, tmp_path_factory):
    """A serving folder with version 1: the trained export."""
    _, result = trained
    folder = tmp_path_factory.mktemp("serving")
    store.push(result["export_dir"], str(folder / "cartola_pro"))
    return str(folder)


def _read(pattern) -> pd.DataFrame:
    import glob

    return pd.concat(pd.read_csv(p) for p in sorted(glob.glob(pattern))).set_index(F.ID_KEY)


def _score(serving_dir, csv, prefix, *extra) -> dict:
    return score.run(
        [
            "--config",
            CONFIG,
            "--input",
            str(csv),
            "--serving_dir",
            serving_dir,
            "--output",
            str(prefix),
            "--run_id",
            "2026-11",
            *extra,
        ]
    )


def test_deciles_are_over_the_whole_run_and_the_client_gives_the_same_ones(
    serving_dir, small_csv, tmp_path, monkeypatch
):
    monkeypatch.setattr(inputs_lib, "RANGE_BYTES", 64 << 10)  # Many parts, read apart.
    manifest = _score(serving_dir, small_csv, tmp_path / "s")
    assert len(manifest["inputs"]) == 1
    job = _read(f"{tmp_path}/s-*-of-*.csv")
    written = np.rint(job["pro_probability"].to_numpy() * 1e6).astype(np.int64)
    # Ranked by the written score descending, ties by GLOBO_ID, cut as pandas.qcut cuts the ranks.
    ranks = pd.DataFrame({"s": -written, "id": job.index}).sort_values(["s", "id"])
    want = pd.Series(
        pd.qcut(np.arange(1, len(job) + 1), 10, labels=False) + 1, index=ranks["id"].to_numpy()
    )
    assert (job["decile"] == want.loc[job.index]).all()
    assert [d["rows"] for d in manifest["deciles"]] == list(
        job["decile"].value_counts().sort_index()
    )
    users = pd.read_csv(small_csv).set_index(F.ID_KEY)
    assert (job["pro_target"] == users.loc[job.index, F.LABEL_KEY]).all()

    client_out = tmp_path / "client.csv"
    export = f"{serving_dir}/cartola_pro/{manifest['model']['version']}"
    status = client.main(
        ["--model_dir", export, "--csv", small_csv, "--out", str(client_out), "--no_progress"]
        + ["--batch_size", "333"]
    )
    assert status == 0
    by_client = pd.read_csv(client_out).set_index(F.ID_KEY).loc[job.index]
    assert (by_client["decile"] == job["decile"]).all()
    assert (by_client["pro_target"] == job["pro_target"]).all()
    assert np.allclose(by_client["pro_probability"], job["pro_probability"], atol=1e-6)


def test_without_a_label_pro_target_is_empty_and_under_ten_rows_leave_deciles_empty(
    serving_dir, small_csv, tmp_path
):
    users = pd.read_csv(small_csv).head(5).drop(columns=[F.LABEL_KEY])
    users.to_csv(tmp_path / "five.csv", index=False)
    manifest = _score(serving_dir, tmp_path / "five.csv", tmp_path / "s", "--targets", "3")
    job = _read(f"{tmp_path}/s-*-of-*.csv")
    assert job["pro_target"].isna().all()
    assert sorted(job["decile"]) == [1, 3, 5, 8, 10]
    # Unknown labels are targetable; without a backtest no conversions are expected.
    targets = pd.read_csv(tmp_path / "s.targets.csv")
    assert list(targets["decile"]) == [1, 3, 5] and targets["conversion_rate"].isna().all()
    assert manifest["targets"]["expected_conversions"] is None
    assert "no backtest" in manifest["targets"]["why_not"]


def _hand_built_months(folder, n: int) -> np.ndarray:
    """scores.csv, a run of n users (ids[5] scored twice), and next.csv, the next month: users
    0..99 gone, ids[200] twice, 50 new users, and 4 rows set aside (a missing label, a line that is
    no row, an id that is no number, an extra field). Returns the ids.
    """
    rng = np.random.default_rng(0)
    ids = np.arange(1, n + 1) * 7
    scores = np.round(rng.random(n), 6)
    deciles = metrics_lib.deciles(campaign.written(scores), ids)
    before = (rng.random(n) < 0.3).astype(int)
    rows = [
        (i, s, "cartola_pro", 1, "2026-11", d, b)
        for i, s, d, b in zip(ids, scores, deciles, before)
    ]
    rows.append((ids[5], scores[5], "cartola_pro", 1, "2026-11", deciles[5], before[5]))
    pd.DataFrame(rows, columns=F.SCORE_COLUMNS).to_csv(folder / "scores.csv", index=False)
    after = np.where(before == 1, rng.random(n) < 0.9, rng.random(n) < scores * 0.5).astype(int)
    month = synthetic.generate(n - 100 + 1 + 50, seed=3)
    month[F.ID_KEY] = np.concatenate([ids[100:], [ids[200]], 10**9 + np.arange(50)])
    month[F.LABEL_KEY] = np.concatenate([after[100:], [after[200]], np.zeros(50, int)])
    month.to_csv(folder / "next.csv", index=False)
    with open(folder / "next.csv", "a") as f:
        f.write(f"{ids[20]},{','.join([''] * (len(month.columns) - 1))}\n")  # No label.
        f.write("not a row\n\n")
        f.write(",".join(["x"] * len(month.columns)) + "\n")
        f.write(f"{10**9 + 999}," + ",".join(["1"] * (len(month.columns) - 1)) + ",extra\n")
    return ids


def test_join_counts_are_exact_and_the_findings_match_pandas_and_scikit_learn(
    serving_dir, tmp_path
):
    n = 3000
    ids = _hand_built_months(tmp_path, n)
    record = backtest.run(
        [
            "--config",
            CONFIG,
            "--serving_dir",
            serving_dir,
            "--scores",
            str(tmp_path / "scores.csv"),
            "--labels",
            str(tmp_path / "next.csv"),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    # ids[5] is scored twice and ids[200] labelled twice: all their rows are ambiguous.
    ambiguous = {ids[5], ids[200]}
    assert record["rows"] == {
        "scored": n + 1,
        "labelled": n - 100 + 1 + 50,
        "joined": n - 100 - 1,
        "scored_only": 100 - 1,
        "labelled_only": 50,
        "ambiguous_scored": 3,
        "ambiguous_labelled": 2,
    }
    s = pd.read_csv(tmp_path / "scores.csv")
    s = s[~s[F.ID_KEY].isin(ambiguous)].set_index(F.ID_KEY)
    labels = pd.read_csv(tmp_path / "next.csv", on_bad_lines="skip")
    labels = labels[pd.to_numeric(labels[F.ID_KEY], errors="coerce").notna()]
    labels = labels.dropna(subset=[F.LABEL_KEY]).astype({F.ID_KEY: np.int64, F.LABEL_KEY: int})
    labels = labels[~labels[F.ID_KEY].isin(ambiguous)].set_index(F.ID_KEY)
    joined = s.join(labels[[F.LABEL_KEY]].rename(columns={F.LABEL_KEY: "after"}), how="inner")
    assert record["rows"]["joined"] == len(joined)
    assert record["rows"]["scored_only"] == len(s) - len(joined)
    assert record["rows"]["labelled_only"] == len(labels) - len(joined)
    assert record["labels"]["set_aside"] == 4
    y, p = joined["after"].astype(int), joined["pro_probability"]
    fpr, tpr, _ = sk_metrics.roc_curve(y, p)
    assert abs(record["realized"]["ks"]["value"] - np.max(tpr - fpr)) < 1e-9
    assert abs(record["realized"]["auc"]["value"] - sk_metrics.roc_auc_score(y, p)) < 1e-9
    ks = record["realized"]["ks"]
    assert ks["low"] <= ks["value"] <= ks["high"]
    eligible = joined[joined[F.LABEL_KEY] == 0]
    by_decile = eligible.groupby("decile")["after"].agg(["size", "sum"])
    overall = eligible["after"].mean()
    for d in record["deciles"]:
        assert d["rows"] == by_decile.loc[d["decile"], "size"]
        assert d["converted"] == by_decile.loc[d["decile"], "sum"]
        assert d["lift"] == pytest.approx(d["conversion_rate"] / overall)
    assert record["non_pro_at_scoring"] == len(eligible)
    assert record["converted"] == eligible["after"].sum()
    assert record["model"] == {"name": "cartola_pro", "version": 1}
    assert record["run_id"] == "2026-11" and record["score_drift"] is None
    assert json.loads((tmp_path / "out" / "backtest.json").read_text()) == record
    page = (tmp_path / "out" / "backtest.html").read_text()
    assert "Conversion by scoring decile" in page and "realized KS" in page


def _columns(frame: pd.DataFrame) -> dict:
    """A generated month as the raw columns the model's predict_raw takes."""
    out = {c: frame[c].to_numpy(np.float64) for c in frame.columns if c != F.PIXELS}
    out[F.PIXELS] = frame[F.PIXELS].fillna("").astype(str).to_numpy(object)
    return out


def _ranked(frames: list, export_dir: str) -> list:
    """Each generated month scored by the export (in one call: the model loads once) and ranked
    into its own deciles."""
    from tf_cartola.export import scoring

    micro = campaign.written(
        scoring.score_columns(export_dir, _columns(pd.concat(frames, ignore_index=True)))
    )
    out, start = [], 0
    for frame in frames:
        scored = campaign.Scored(
            frame[F.ID_KEY].to_numpy(np.int64),
            micro[start : start + len(frame)],
            frame[F.LABEL_KEY].to_numpy(np.float32),
        )
        start += len(frame)
        out.append(scored.ranked(campaign.decile_cuts(scored.micro, scored.ids)))
    return out


def test_a_target_lists_expected_conversions_hold_against_the_generators_next_month(trained):
    from tf_cartola.evaluate import backtest as backtest_lib

    _, result = trained
    runs = []
    for seed in range(5):
        months = [synthetic.generate(10_000, seed=100 + seed)]
        for step in (1, 2):
            months.append(synthetic.next_month(months[-1], seed=200 + 10 * seed + step))
        runs.append(months)
    ranked = _ranked([m for months in runs for m in months[:2]], result["export_dir"])
    inside, errors = 0, []
    for k, months in enumerate(runs):
        first, second = ranked[2 * k], ranked[2 * k + 1]
        _, joined = backtest_lib.join(first, months[1][F.ID_KEY], months[1][F.LABEL_KEY])
        rates = {"deciles": backtest_lib.conversion_by_decile(joined)}
        pick = campaign.targetable(second.pro_target)
        top = np.flatnonzero(pick)[campaign.top(second.micro[pick], second.ids[pick], 1000)]
        # What the third month says of the targets still there (the backtest's rates are theirs).
        third = months[2].set_index(F.ID_KEY)[F.LABEL_KEY]
        there = top[np.isin(second.ids[top], third.index)]
        expected = campaign.expected_conversions(second.decile[there], rates)
        realized = int(third.loc[second.ids[there]].sum())
        inside += expected["low"] <= realized <= expected["high"]
        errors.append((realized - expected["value"]) / (expected["high"] - expected["low"]) * 3.92)
    assert inside >= 4, errors  # A 95% interval: 5 seeds all but one inside, at least.
    assert abs(np.mean(errors)) < 1.5, errors  # Unbiased: standardized errors centre on 0.


@pytest.mark.e2e  # The table paths against the CSV paths, end to end (a score run, 2 backtests).
def test_a_run_in_a_scores_table_backtests_against_a_table_as_its_csv_shards_do(
    serving_dir, small_csv, pg_env, tmp_path
):
    from tf_cartola.write import postgres as write_postgres

    month = synthetic.next_month(pd.read_csv(small_csv), seed=5)
    month.to_csv(tmp_path / "next.csv", index=False)
    write_postgres.load_csv(pg_env.url, pg_env.password, "next_month", str(tmp_path / "next.csv"))
    _score(serving_dir, small_csv, tmp_path / "s", "--db", pg_env.url, "--scores_table", "camp")
    common = ["--config", CONFIG, "--serving_dir", serving_dir]
    from_files = backtest.run(
        [*common, "--scores", str(tmp_path / "s"), "--labels", str(tmp_path / "next.csv")]
        + ["--output_dir", str(tmp_path / "files")]
    )
    from_tables = backtest.run(
        [*common, "--db", pg_env.url, "--scores_table", "camp", "--run_id", "2026-11"]
        + ["--labels", pg_env.url, "--table", "next_month", "--output_dir", str(tmp_path / "db")]
    )
    for key in ("model", "run_id", "rows", "realized", "deciles", "converted"):
        assert from_tables[key] == from_files[key], key
    assert from_files["rows"]["joined"] > 0.9 * len(month)
    # A run the table does not hold: nothing to backtest (exit status 3).
    done = subprocess.run(
        [sys.executable, "-m", "beam_jobs.backtest", *common, "--db", pg_env.url]
        + ["--scores_table", "camp", "--run_id", "1999-01", "--labels", str(tmp_path / "next.csv")]
        + ["--output_dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3 and "nothing to backtest" in done.stderr, done.stderr
