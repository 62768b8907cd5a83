"""The campaign's arithmetic: deciles from the run's cuts, expected conversions, the best list
size, PSI."""

import numpy as np
import pandas as pd
import pytest

from tf_cartola.evaluate import backtest, campaign, metrics


@pytest.mark.parametrize("n", [*range(1, 30), 101, 1000, 54321])
def test_deciles_from_the_cuts_are_the_ranks_deciles_ties_and_all(n):
    rng = np.random.default_rng(n)
    micro = campaign.written(rng.integers(0, 7, n) / 10)  # Many ties of the score.
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    cuts = campaign.decile_cuts(micro, ids)
    assert (campaign.deciles_at(micro, ids, cuts) == metrics.deciles(micro, ids)).all()
    if n >= 10:  # Ranked by score descending, ties by id, cut as pandas.qcut cuts ranks 1..n.
        order = np.lexsort((ids, -micro.astype(np.int64)))
        want = np.empty(n, np.int64)
        want[order] = pd.qcut(np.arange(1, n + 1), 10, labels=False) + 1
        assert (campaign.deciles_at(micro, ids, cuts) == want).all()


def test_expected_conversions_and_their_interval_follow_the_formula():
    record = {
        "deciles": [
            {"decile": d, "rows": 1000, "converted": 300 - 30 * (d - 1)} for d in range(1, 11)
        ]
    }
    found = campaign.expected_conversions(np.array([1] * 100 + [2] * 50), record)
    r1, r2 = 0.3, 0.27
    variance = sum(t * r * (1 - r) + t * t * r * (1 - r) / 1000 for t, r in ((100, r1), (50, r2)))
    assert found["value"] == pytest.approx(100 * r1 + 50 * r2)
    assert found["high"] - found["value"] == pytest.approx(1.959964 * variance**0.5, rel=1e-5)
    assert found["deciles_without_rates"] == []


def test_the_best_list_size_is_the_best_of_every_size():
    record = {
        "deciles": [
            {"decile": d, "rows": 100, "converted": k}
            for d, k in zip(range(1, 11), (40, 30, 12, 9, 6, 5, 3, 2, 1, 0))
        ]
    }
    counts = np.array([90, 95, 97, 98, 99, 99, 100, 100, 100, 100])
    best = campaign.best_list_size(counts, record, value=50.0, cost=4.0)
    rates = np.repeat([0.4, 0.3, 0.12, 0.09, 0.06, 0.05, 0.03, 0.02, 0.01, 0.0], counts)
    profit = np.concatenate([[0], np.cumsum(50.0 * rates - 4.0)])
    assert best["rows"] == int(np.argmax(profit))
    assert best["expected_profit"] == pytest.approx(profit.max())


def test_psi_is_zero_for_the_same_scores_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    scores = campaign.written(rng.beta(2, 3, 50_000))
    assert backtest.psi(scores, scores) == pytest.approx(0.0)
    shifted = campaign.written(np.clip(rng.beta(2, 3, 50_000) + 0.1, 0, 1))
    assert backtest.psi(scores, shifted) > 0.1
    drift = backtest.score_drift(scores, shifted, 0.01)
    assert drift["drifted"] and drift["psi_reading"] in ("moderate", "major")
