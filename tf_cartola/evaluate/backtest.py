"""Last month's scores against what happened: the served model's out-of-time performance, the
conversion of each scoring decile, and how the score distribution moved.

The join. A month's scores (campaign.Scored: id, written score, decile, label at scoring time) meet
the next month's input (id, label) by GLOBO_ID. An id that appears more than once on either side
cannot be joined with certainty: all its rows, on both sides, are counted as ambiguous and left
out. So scored = joined + scored_only + ambiguous_scored, and labelled = joined + labelled_only +
ambiguous_labelled.

Realized performance: KS and AUC of the month-N score against the month N+1 label over the joined
users, with the evaluation's bootstrap intervals (evaluation.with_intervals). Conversion by decile:
among the joined users who were not PRO at scoring time (label 0 then), the share that is PRO a
month later, per scoring decile, and its lift over all of them.

Score drift: this run's scores against the run before's. PSI over 10 bins cut at the earlier run's
score deciles (each bin's share floored at PSI_FLOOR), read by the usual rule of thumb (under 0.1
stable, to 0.25 moderate, above major); and the two-sample Kolmogorov-Smirnov test at the project's
drift false-alarm rate, the calibrated test (a score rounded to 6 places ties; ties make the test
conservative, bench/backtest.py measures its false alarms and power).
"""

import typing

import numpy as np
from scipy import stats

from tf_cartola.evaluate import campaign, evaluation

PSI_BINS = 10
PSI_FLOOR = 1e-4
COUNTS = (
    "scored",
    "labelled",
    "joined",
    "scored_only",
    "labelled_only",
    "ambiguous_scored",
    "ambiguous_labelled",
)


class Joined(typing.NamedTuple):
    """The joined users, column by column."""

    micro: np.ndarray  # int32 written scores (millionths).
    decile: np.ndarray  # int8 scoring decile.
    pro_before: np.ndarray  # int8 label at scoring time, -1 where unknown.
    pro_after: np.ndarray  # int8 label a month later.


def join(scores: campaign.Scored, ids: np.ndarray, pro_after: np.ndarray) -> tuple:
    """(counts of COUNTS, Joined) of some scored rows and some labelled rows (ids and labels).

    The same ids must be on hand on both sides (a bucket of ids, or everything).
    """
    ids = np.asarray(ids, np.int64)
    s_unique, s_counts = np.unique(scores.ids, return_counts=True)
    l_unique, l_counts = np.unique(ids, return_counts=True)
    ambiguous = np.union1d(s_unique[s_counts > 1], l_unique[l_counts > 1])
    s_ok = ~np.isin(scores.ids, ambiguous)
    l_ok = ~np.isin(ids, ambiguous)
    _, si, li = np.intersect1d(
        scores.ids[s_ok], ids[l_ok], assume_unique=True, return_indices=True
    )
    s_index, l_index = np.flatnonzero(s_ok)[si], np.flatnonzero(l_ok)[li]
    before = np.nan_to_num(scores.pro_target[s_index], nan=-1)
    counts = {
        "scored": len(scores.ids),
        "labelled": len(ids),
        "joined": len(s_index),
        "scored_only": int(s_ok.sum()) - len(s_index),
        "labelled_only": int(l_ok.sum()) - len(l_index),
        "ambiguous_scored": int((~s_ok).sum()),
        "ambiguous_labelled": int((~l_ok).sum()),
    }
    return counts, Joined(
        scores.micro[s_index].astype(np.int32),
        scores.decile[s_index].astype(np.int8),
        before.astype(np.int8),
        np.asarray(pro_after)[l_index].astype(np.int8),
    )


def concatenate(parts: typing.Sequence[Joined]) -> Joined:
    """Joined users of several buckets as one."""
    if not parts:
        return Joined(*(np.zeros(0, t) for t in (np.int32, np.int8, np.int8, np.int8)))
    return Joined(*(np.concatenate(column) for column in zip(*parts)))


def realized(joined: Joined, threshold: float, cfg) -> typing.Optional[dict]:
    """{"ks", "auc" (each value, low, high), "rows", "rows_pro"}, or None without both classes."""
    y = joined.pro_after == 1
    if y.all() or not y.any():
        return None
    scores = campaign.as_probability(joined.micro)
    found = evaluation.with_intervals(y, scores, threshold, np.random.default_rng(cfg.seed), cfg)
    return {"ks": found["ks"], "auc": found["auc"], "rows": len(y), "rows_pro": int(y.sum())}


def conversion_by_decile(joined: Joined) -> typing.List[dict]:
    """Per scoring decile, among the joined users not PRO at scoring time: rows, converted (PRO a
    month later), conversion_rate and lift (the rate over theirs all together).
    """
    eligible = joined.pro_before == 0
    decile = joined.decile[eligible].astype(np.int64)
    converted = joined.pro_after[eligible] == 1
    rows = np.bincount(decile, minlength=campaign.DECILES + 1)[1:]
    hits = np.bincount(decile[converted], minlength=campaign.DECILES + 1)[1:]
    overall = converted.mean() if len(converted) else np.nan
    out = []
    for d in range(campaign.DECILES):
        rate = hits[d] / rows[d] if rows[d] else None
        out.append(
            {
                "decile": d + 1,
                "rows": int(rows[d]),
                "converted": int(hits[d]),
                "conversion_rate": rate,
                "lift": rate / overall if rate is not None and overall > 0 else None,
            }
        )
    return out


def psi(previous: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """The population stability index of `current` against `previous` (module docstring)."""
    edges = np.unique(np.quantile(previous, np.arange(1, bins) / bins))

    def shares(values):
        counts = np.bincount(
            np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1
        )
        return np.maximum(counts / len(values), PSI_FLOOR)

    p, c = shares(previous), shares(current)
    return float(np.sum((c - p) * np.log(c / p)))


def score_drift(previous: np.ndarray, current: np.ndarray, false_alarm_rate: float) -> dict:
    """PSI and the calibrated KS test of this run's written scores against the run before's."""
    value = psi(previous, current)
    test = stats.ks_2samp(previous, current, method="asymp")
    return {
        "psi": value,
        "psi_reading": "stable" if value < 0.1 else "moderate" if value < 0.25 else "major",
        "ks": float(test.statistic),
        "p_value": float(test.pvalue),
        "false_alarm_rate": false_alarm_rate,
        "drifted": bool(test.pvalue < false_alarm_rate),
        "rows": {"previous": len(previous), "current": len(current)},
    }


def summarize(
    counts: dict,
    joined: Joined,
    current: np.ndarray,
    previous: typing.Optional[np.ndarray],
    cfg,
) -> dict:
    """The backtest's findings (README, "Closing the loop"): rows, realized, non_pro_at_scoring,
    converted, deciles and score_drift.

    Args:
      counts: the join's COUNTS, summed over buckets.
      joined: every joined user.
      current: the backtested run's written scores, every row.
      previous: the run before's written scores, or None (no score_drift).
      cfg: the whole config (blessing: threshold and min_ks; evaluate: intervals; preprocess: the
        drift false-alarm rate).
    """
    found = realized(joined, cfg.blessing.decision_threshold, cfg.evaluate)
    if found is not None:
        found["below_min_ks"] = found["ks"]["value"] < cfg.blessing.min_ks
        found["min_ks"] = cfg.blessing.min_ks
    known = joined.pro_before >= 0
    eligible = joined.pro_before == 0
    return {
        "rows": {name: int(counts.get(name, 0)) for name in COUNTS},
        "realized": found,
        "non_pro_at_scoring": int(eligible.sum()) if known.any() else None,
        "converted": int((joined.pro_after[eligible] == 1).sum()) if known.any() else None,
        "deciles": conversion_by_decile(joined) if known.any() else [],
        "score_drift": None
        if previous is None or not len(previous) or not len(current)
        else score_drift(previous, current, cfg.preprocess.drift_false_alarm_rate),
    }
