"""The evaluation's metrics, each defined once, on rows (the point values) and on the counts of
score bins (the bootstrap replicates).

On rows, exactly: KS (the largest distance between the PRO and non-PRO score CDFs), AUC (the
Mann-Whitney statistic, ties counted half), precision and recall at the decision threshold (a
score >= it predicts PRO), Brier (the mean squared error of the score as a probability), ECE (the
expected calibration error: the rows in 10 equal-count bins by score, the row-weighted mean of
|mean score - PRO rate| over the bins) and lift at 10% (the PRO rate of the top-decile rows,
`deciles`, over the overall PRO rate).

On bins: the same definitions with every row of a bin given the bin's place. The scores are cut at
their own quantiles (and at the threshold, so precision and recall are exact); a bin holds PRO and
non-PRO counts and their mean score and squared error. A replicate redraws those counts.
"""

import typing

import numpy as np
from scipy import stats

NAMES = ("ks", "auc", "precision", "recall", "brier", "ece", "lift_at_10")
# What each metric can take: lift is a ratio of rates, every other one a share.
RANGES = {name: (0.0, np.inf if name == "lift_at_10" else 1.0) for name in NAMES}
ECE_BINS = 10


def deciles(scores: np.ndarray, ids: typing.Optional[np.ndarray] = None) -> np.ndarray:
    """Each row's decile, 1 to 10, 1 = the highest 10% of scores: rows ranked by score descending,
    ties by id ascending (else by their order), cut as `pandas.qcut` cuts the ranks 1..n into 10.
    A run under 10 rows leaves some deciles empty.
    """
    n = len(scores)
    keys = (np.arange(n) if ids is None else ids, -np.asarray(scores, np.float64))
    rank = np.empty(n, np.int64)
    rank[np.lexsort(keys)] = np.arange(1, n + 1)
    edges = np.quantile(np.arange(1, n + 1), np.linspace(0, 1, 11)) if n else np.zeros(11)
    return np.maximum(np.searchsorted(edges, rank, side="left"), 1)


def _classes(labels, scores) -> typing.Tuple[np.ndarray, np.ndarray]:
    """(PRO scores, non-PRO scores).

    Raises:
      ValueError: a class without rows.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    if y.all() or not y.any():
        raise ValueError("KS and AUC need scores of both classes")
    return s[y], s[~y]


def ks(labels, scores) -> float:
    """KS on rows: the largest distance between the PRO and non-PRO score CDFs, taken at every
    score (the two-sample KS statistic, without the p-value scipy's `ks_2samp` would also compute:
    its cost, and a warning for two rows).
    """
    pro, non_pro = (np.sort(c) for c in _classes(labels, scores))
    at = np.concatenate([pro, non_pro])
    cdf_pro = np.searchsorted(pro, at, "right") / len(pro)
    cdf_non_pro = np.searchsorted(non_pro, at, "right") / len(non_pro)
    return float(np.max(np.abs(cdf_pro - cdf_non_pro)))


def auc(labels, scores) -> float:
    """AUC on rows: the Mann-Whitney statistic over the pairs, ties counted half."""
    pro, non_pro = _classes(labels, scores)
    return float(stats.mannwhitneyu(pro, non_pro).statistic / (len(pro) * len(non_pro)))


def on_rows(labels: np.ndarray, scores: np.ndarray, threshold: float, ids=None) -> dict:
    """Every metric of NAMES on rows, exactly (see the module docstring).

    Args:
      labels: 0/1, 1 = PRO; both classes present.
      scores: PRO probabilities.
      threshold: the decision threshold.
      ids: the rows' ids, to break ties in the top decile (default: their order).
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    predicted = s >= threshold
    tp = int(np.sum(predicted & y))
    order = np.argsort(s, kind="stable")
    ece = sum(
        abs(s[part].sum() - y[part].sum()) for part in np.array_split(order, ECE_BINS)
    ) / len(s)
    top = deciles(s, ids) == 1
    return {
        "ks": ks(y, s),
        "auc": auc(y, s),
        "precision": tp / max(int(predicted.sum()), 1),
        "recall": tp / max(int(y.sum()), 1),
        "brier": float(np.mean((s - y) ** 2)),
        "ece": float(ece),
        "lift_at_10": float(y[top].mean() / y.mean()),
    }


class Bins(typing.NamedTuple):
    """One group's rows as score bins, in ascending score: counts and means per class."""

    pos: np.ndarray  # [C] PRO rows per bin.
    neg: np.ndarray  # [C] non-PRO rows per bin.
    score_pos: np.ndarray  # [C] mean score of the PRO rows (0 where none).
    score_neg: np.ndarray
    predicted: np.ndarray  # [C] bool: the bin lies at or above the threshold.
    ece_bin: np.ndarray  # [C] the bin's equal-count calibration bin, 0..9.
    top: np.ndarray  # [C] bool: the bin lies in the top 10% of rows.


def binned(labels: np.ndarray, scores: np.ndarray, threshold: float, bins: int) -> Bins:
    """A group's rows cut into at most `bins` score bins at their quantiles (and the threshold),
    keeping the bins that hold rows.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    edges = np.unique(np.append(np.quantile(s, np.arange(1, bins) / bins), threshold))
    index = np.searchsorted(edges, s, side="right")
    size = len(edges) + 1
    pos = np.bincount(index[y], minlength=size).astype(np.float64)
    neg = np.bincount(index[~y], minlength=size).astype(np.float64)
    sum_pos = np.bincount(index[y], s[y], minlength=size)
    sum_neg = np.bincount(index[~y], s[~y], minlength=size)
    kept = (pos + neg) > 0
    pos, neg, sum_pos, sum_neg = pos[kept], neg[kept], sum_pos[kept], sum_neg[kept]
    lower = np.concatenate([[-np.inf], edges])[kept]  # Each bin's lower edge.
    before = np.cumsum(pos + neg) - (pos + neg)  # Rows below each bin.
    return Bins(
        pos,
        neg,
        np.divide(sum_pos, pos, out=np.zeros_like(pos), where=pos > 0),
        np.divide(sum_neg, neg, out=np.zeros_like(neg), where=neg > 0),
        lower >= threshold,
        np.minimum((before * ECE_BINS // len(s)).astype(int), ECE_BINS - 1),
        before >= 0.9 * len(s),
    )


def on_bins(b: Bins, pos: np.ndarray, neg: np.ndarray) -> dict:
    """Every metric of NAMES on bin counts: `pos` and `neg` are [R, C] counts (R replicates, or
    one row of the bins' own counts); returns metric -> [R]. KS, AUC and lift are NaN in a
    replicate that drew no PRO or no non-PRO row: they are not defined there.
    """
    total_pos, total_neg = pos.sum(1), neg.sum(1)
    total = total_pos + total_neg
    cum_pos, cum_neg = np.cumsum(pos, 1), np.cumsum(neg, 1)
    top_pos, top_all = pos[:, b.top].sum(1), (pos + neg)[:, b.top].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 where a class drew no row.
        ks = np.max(np.abs(cum_pos / total_pos[:, None] - cum_neg / total_neg[:, None]), 1)
        auc = np.sum(pos * (cum_neg - 0.5 * neg), 1) / (total_pos * total_neg)
        lift = (top_pos / np.maximum(top_all, 1)) / (total_pos / total)
    tp, fp = pos[:, b.predicted].sum(1), neg[:, b.predicted].sum(1)
    # Brier: a PRO row's error is (1 - s)^2, a non-PRO row's s^2, each taken at its bin's mean.
    squared = pos * (1 - b.score_pos) ** 2 + neg * b.score_neg**2
    gap = pos * b.score_pos + neg * b.score_neg - pos
    ece = np.abs(np.stack([gap[:, b.ece_bin == k].sum(1) for k in range(ECE_BINS)], 1)).sum(1)
    return {
        "ks": ks,
        "auc": auc,
        "precision": tp / np.maximum(tp + fp, 1),
        "recall": tp / np.maximum(total_pos, 1),
        "brier": squared.sum(1) / total,
        "ece": ece / total,
        "lift_at_10": lift,
    }
