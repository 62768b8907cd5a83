"""The feature analysis' own solver against scikit-learn's."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tf_cartola.inspect import analysis


def test_the_newton_fit_equals_scikit_learns_unpenalised_logistic_regression():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4000, 5))
    x[:, 4] = 0.8 * x[:, 0] + 0.6 * x[:, 4]  # Correlated, as the features are.
    truth = np.array([-0.7, 1.2, -0.5, 0.0, 0.9, 0.3])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(truth[0] + x @ truth[1:])))).astype(float)
    reference = LogisticRegression(penalty=None, solver="newton-cg", tol=1e-12, max_iter=1000)
    reference.fit(x, y)
    expected = np.concatenate([reference.intercept_, reference.coef_[0]])
    assert analysis.logistic_regression(x, y) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(truth, abs=0.15)  # A fit that means something.
