import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from tf_cartola.train import metrics


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.4
    scores = np.round(np.clip(rng.normal(0.3 + 0.3 * labels, 0.2), 0, 1), 2)  # Rounded: many ties.
    return labels.astype(int), scores


def test_ks_equals_scipy_two_sample(scored):
    labels, scores = scored
    expected = stats.ks_2samp(scores[labels == 1], scores[labels == 0]).statistic
    assert metrics.ks_statistic(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_auc_precision_recall_equal_sklearn(scored):
    labels, scores = scored
    m = metrics.classification_metrics(labels, scores, threshold=0.5)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m["precision"] == pytest.approx(precision_score(labels, scores >= 0.5))
    assert m["recall"] == pytest.approx(recall_score(labels, scores >= 0.5))
    assert m["rows"] == 2000 and m["rows_pro"] == labels.sum()


def test_ks_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        metrics.ks_statistic([1, 1], [0.2, 0.3])
