"""The data scientists' scikit-learn procedure (docs/data.md): the oracle our pipeline must match.

scikit-learn is a dev dependency: only tests import this module, so the package does not ship it.
"""

import numpy as np
import pandas as pd

from tf_cartola.contract import features as F
from tf_cartola.contract import split
from tf_cartola.train import metrics


def engineer(frame: pd.DataFrame) -> pd.DataFrame:
    """Applies the feature engineering to raw columns; missing stays NaN (imputation comes
    later)."""
    out = {}
    for column in F.RAW_FEATURES:
        name = F.transformed_name(column)
        if column in F.LONG_TAIL:
            x = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
            out[name] = np.log1p(x.where(x > -1))
        elif column in F.CAPPED:
            out[name] = np.minimum(
                pd.to_numeric(frame[column], errors="coerce").astype(np.float64), 1.0
            )
        elif column == F.PIXELS:
            wh = frame[column].astype("string").str.extract(F.PIXELS_PATTERN).astype(np.float64)
            out[name] = wh[0] * wh[1]
        else:
            out[name] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return pd.DataFrame(out, index=frame.index)


def impute_and_scale(train: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Imputes `other` with the training mean, then z-scores it with the imputed training
    statistics."""
    means = train.mean()
    imputed_train = train.fillna(means)
    std = imputed_train.std(ddof=0).replace(0.0, 1.0)
    return (other.fillna(means) - imputed_train.mean()) / std


def split_frame(frame: pd.DataFrame, ratio=split.DEFAULT_RATIO):
    """Splits a raw frame with the pipeline's own id hash: (train, eval)."""
    is_eval = frame[F.ID_KEY].map(lambda i: split.split_of(i, ratio) == "eval").to_numpy()
    return frame[~is_eval], frame[is_eval]


def run(
    frame: pd.DataFrame,
    feature_names=F.FINAL_FEATURES,
    threshold: float = 0.5,
    seed: int = 0,
    ratio=split.DEFAULT_RATIO,
) -> dict:
    """Runs the reference procedure: engineer, impute, scale, logistic regression, eval metrics, on
    the pipeline's own split (`ratio`: the configured split_ratio).

    Returns:
      {"metrics": eval metrics, "eval_scores": np.ndarray, "model": the fitted LogisticRegression}
    """
    from sklearn.linear_model import LogisticRegression

    train, eval_ = split_frame(frame, ratio)
    x_train_raw = engineer(train)[list(feature_names)]
    x_train = impute_and_scale(x_train_raw, x_train_raw)
    x_eval = impute_and_scale(x_train_raw, engineer(eval_)[list(feature_names)])
    model = LogisticRegression(random_state=seed, max_iter=1000).fit(x_train, train[F.LABEL_KEY])
    scores = model.predict_proba(x_eval)[:, 1]
    return {
        "metrics": metrics.classification_metrics(eval_[F.LABEL_KEY], scores, threshold),
        "eval_scores": scores,
        "model": model,
    }
