"""Binary-classification metrics used to judge and bless models (KS first)."""

import numpy as np

# KS and AUC are defined once, with the evaluation's other metrics.
from tf_cartola.evaluate.metrics import auc as roc_auc
from tf_cartola.evaluate.metrics import ks as ks_statistic

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
