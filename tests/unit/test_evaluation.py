"""The evaluation library against independent implementations: scikit-learn, scipy and pandas."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as sk

from tf_cartola.contract import config as config_lib
from tf_cartola.evaluate import evaluation, metrics, slices

ROWS = 6000


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(7)
    labels = rng.random(ROWS) < 0.3
    scores = np.round(1 / (1 + np.exp(-(1.5 * labels - 0.9 + rng.normal(0, 1, ROWS)))), 3)
    columns = {
        "anos_como_pro": rng.integers(0, 4, ROWS).astype(float),
        "gplay_free": np.where(rng.random(ROWS) < 0.05, np.nan, rng.integers(0, 2, ROWS)),
        "pixels": rng.choice(["1920x1080", "360x640", "768x1024", "", "bad"], ROWS).astype(object),
        "escalacoes": rng.integers(0, 39, ROWS).astype(float),
    }
    return labels, scores, columns, rng.permutation(ROWS) + 1000


def _sklearn(labels, scores, threshold=0.5) -> dict:
    fpr, tpr, _ = sk.roc_curve(labels, scores)
    predicted = scores >= threshold
    return {
        "ks": np.max(tpr - fpr),
        "auc": sk.roc_auc_score(labels, scores),
        "precision": sk.precision_score(labels, predicted, zero_division=0),
        "recall": sk.recall_score(labels, predicted),
        "brier": sk.brier_score_loss(labels, scores),
    }


def test_every_slice_has_the_metrics_scikit_learn_computes_on_its_rows(rows):
    labels, scores, columns, ids = rows
    cfg = config_lib.EvaluateConfig(replicates=100, min_slice_rows=200)
    edges = {"escalacoes": (9.5, 19.0, 28.5)}
    out = evaluation.model_evaluation(labels, scores, columns, 0.5, cfg, edges, ids)
    groups = [("overall", np.ones(ROWS, bool), out["overall"])]
    for record in out["slices"]:
        values = slices.values(record["slice"], columns, edges)
        chosen = values == record["value"]
        assert record["rows"] == chosen.sum() and record["rows_pro"] == labels[chosen].sum()
        if record["metrics"] is not None:
            groups.append((record["value"], chosen, record["metrics"]))
    assert len(groups) >= 14
    for name, chosen, found in groups:
        expected = _sklearn(labels[chosen], scores[chosen])
        for metric, value in expected.items():
            assert found[metric]["value"] == pytest.approx(value, abs=1e-9), (name, metric)
            assert found[metric]["low"] <= found[metric]["value"] <= found[metric]["high"]
    by_slice = {(r["slice"], r["value"]): r["rows"] for r in out["slices"]}
    assert {k[1] for k in by_slice if k[0] == "pixels:screen"} == {
        "mobile",
        "tablet",
        "desktop",
        "unknown",
    }
    assert [v for s, v in by_slice if s == "escalacoes:quartiles"] == [
        "< 9.5",
        "9.5 to < 19",
        "19 to < 28.5",
        ">= 28.5",
    ]
    assert ("gplay_free", "missing") in by_slice


def test_a_small_slice_is_listed_with_its_size_and_no_metrics(rows):
    labels, scores, columns, _ = rows
    cfg = config_lib.EvaluateConfig(slices=("anos_como_pro",), replicates=100, min_slice_rows=2000)
    out = evaluation.model_evaluation(labels, scores, columns, 0.5, cfg, {})
    assert all(r["metrics"] is None and r["rows"] < 2000 for r in out["slices"])


def test_deciles_ece_and_lift_match_a_pandas_computation(rows):
    labels, scores, _, ids = rows
    frame = pd.DataFrame({"y": labels, "s": scores, "id": ids})
    frame = frame.sort_values(["s", "id"], ascending=[False, True])
    frame["decile"] = pd.qcut(np.arange(1, ROWS + 1), 10, labels=False) + 1
    grouped = frame.groupby("decile")
    table = evaluation.decile_table(labels, scores, ids)
    assert [d["rows"] for d in table] == grouped.size().tolist()
    assert [d["pro"] for d in table] == grouped["y"].sum().tolist()
    assert [d["score_max"] for d in table] == grouped["s"].max().tolist()
    assert [d["lift"] for d in table] == pytest.approx(
        (grouped["y"].mean() / labels.mean()).tolist(), abs=1e-12
    )
    gains = grouped["y"].sum().cumsum() / labels.sum()
    assert [d["cum_pro_share"] for d in table] == pytest.approx(gains.tolist(), abs=1e-12)
    found = metrics.on_rows(labels, scores, 0.5, ids)
    assert found["lift_at_10"] == pytest.approx(table[0]["lift"], abs=1e-12)
    by_score = frame.sort_values("s", kind="stable")
    ece = sum(
        abs(part["s"].sum() - part["y"].sum()) for part in np.array_split(by_score, 10)
    ) / len(frame)
    assert found["ece"] == pytest.approx(ece, abs=1e-12)


def test_the_ks_interval_agrees_with_scipys_bootstrap(rows):
    labels, scores = rows[0][:2000], rows[1][:2000]
    cfg = config_lib.EvaluateConfig(slices=(), replicates=2000)
    ours = evaluation.model_evaluation(labels, scores, {}, 0.5, cfg, {})["overall"]["ks"]
    theirs = stats.bootstrap(
        (labels, scores),
        lambda y, s: stats.ks_2samp(s[y.astype(bool)], s[~y.astype(bool)]).statistic,
        paired=True,
        vectorized=False,
        n_resamples=400,
        method="basic",
        random_state=np.random.default_rng(1),
    ).confidence_interval
    assert ours["low"] <= (theirs.low + theirs.high) / 2 <= ours["high"]
    assert ours["low"] == pytest.approx(theirs.low, abs=0.015)
    assert ours["high"] == pytest.approx(theirs.high, abs=0.015)


def test_a_group_with_few_pro_rows_gets_finite_intervals_within_each_metrics_range():
    rng = np.random.default_rng(11)
    labels = np.arange(300) < 2  # One replicate in e^2 (7.4) draws no PRO row: no KS there.
    scores, served = rng.random(300), rng.random(300)
    cfg = config_lib.EvaluateConfig(slices=(), replicates=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = evaluation.model_evaluation(labels, scores, {}, 0.5, cfg, {})["overall"]
        compared = evaluation.compare(labels, scores, served, cfg, config_lib.BlessingConfig())
    for name, interval in found.items():
        low, high = metrics.RANGES[name]
        assert low <= interval["low"] <= interval["high"] <= high, (name, interval)
    assert np.isfinite([compared["upper_bound"], compared["p_value"]]).all()
    assert np.isfinite([compared["difference"]["low"], compared["difference"]["high"]]).all()


def test_intervals_cover_the_true_ks_about_as_often_as_they_claim():
    rng = np.random.default_rng(3)

    def sample(n):
        labels = rng.random(n) < 0.3
        return labels, 1 / (1 + np.exp(-(1.5 * labels + rng.normal(0, 1, n))))

    truth = metrics.on_rows(*sample(2_000_000), 0.5)["ks"]
    cfg = config_lib.EvaluateConfig(slices=(), replicates=200)
    intervals = [
        evaluation.model_evaluation(*sample(3000), {}, 0.5, cfg, {})["overall"]["ks"]
        for _ in range(60)
    ]
    covered = np.mean([ks["low"] <= truth <= ks["high"] for ks in intervals])
    assert 0.85 <= covered <= 1.0, covered


def test_the_comparison_is_paired_and_refuses_only_a_clearly_worse_candidate():
    rng = np.random.default_rng(5)
    labels = rng.random(20000) < 0.3
    signal = 1.6 * labels - 0.8 + rng.normal(0, 1, len(labels))
    served = 1 / (1 + np.exp(-signal))
    blessing = config_lib.BlessingConfig()
    cfg = config_lib.EvaluateConfig(slices=(), replicates=500)
    # The same model plus a little noise: KS a hair lower, yet not significantly worse.
    near = 1 / (1 + np.exp(-(signal + rng.normal(0, 0.05, len(labels)))))
    same = evaluation.compare(labels, near, served, cfg, blessing)
    assert not same["significantly_worse"] and same["p_value"] > 0.01
    # Paired: the interval of the difference is far narrower than either model's own.
    alone = evaluation.model_evaluation(labels, served, {}, 0.5, cfg, {})["overall"]["ks"]
    width = same["difference"]["high"] - same["difference"]["low"]
    assert width < (alone["high"] - alone["low"]) / 2
    worse = 1 / (1 + np.exp(-(signal + rng.normal(0, 0.8, len(labels)))))
    refused = evaluation.compare(labels, worse, served, cfg, blessing)
    assert refused["significantly_worse"] and refused["difference"]["high"] < 0
