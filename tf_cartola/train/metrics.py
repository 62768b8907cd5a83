"""Binary-classification metrics used to judge and bless models (KS first)."""

import numpy as np

# What `classification_metrics` returns, in the order runs show it: KS first.
REPORTED = (
    "ks",
    "auc",
    "precision",
    "recall",
    "mean_score_pro",
    "mean_score_non_pro",
    "rows",
    "rows_pro",
)


def ks_statistic(labels, scores) -> float:
    """Two-sample Kolmogorov-Smirnov statistic between PRO and non-PRO score distributions."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("KS needs scores of both classes")
    grid = np.concatenate([pos, neg])
    cdf_pos = np.searchsorted(pos, grid, side="right") / len(pos)
    cdf_neg = np.searchsorted(neg, grid, side="right") / len(neg)
    return float(np.max(np.abs(cdf_pos - cdf_neg)))


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Mid-ranks: every member of a tie group gets the group's average rank.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """Precision, recall, KS, AUC, mean score per class and row counts.

    Args:
      labels: 0/1 array, 1 = PRO.
      scores: predicted PRO probabilities.
      threshold: a score >= threshold predicts PRO.

    Returns:
      A dict of plain floats and ints, ready for JSON.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & labels))
    return {
        "ks": ks_statistic(labels, scores),
        "auc": roc_auc(labels, scores),
        "precision": tp / max(int(predicted.sum()), 1),
        "recall": tp / max(int(labels.sum()), 1),
        "threshold": float(threshold),
        "mean_score_pro": float(scores[labels].mean()),
        "mean_score_non_pro": float(scores[~labels].mean()),
        "rows": int(len(labels)),
        "rows_pro": int(labels.sum()),
    }
