"""The data scientists' feature selection, on the transformed train split of a preprocessing
output.

    python -m tf_cartola.inspect.analysis --preprocess_dir runs/preprocess [--vif_threshold 3]
    [--ks_tolerance 0.01]

First, while any feature's variance inflation factor (the textbook one: 1 / (1 - R^2) of
the feature regressed on all the others with an intercept) is above `vif_threshold`,
drop the feature with the largest. Then, while the eval KS stays within `ks_tolerance`
of its value after the VIF step, drop the feature with the smallest |coefficient| of the
standardised logistic regression. Every step is printed with KS, precision and recall
after it; the table is written as JSON (default `<preprocess_dir>/analysis.json`, which
the run report shows) and the kept features are printed as `train.features` takes them.
Exit status: 0 done, 2 not a preprocessing output.
"""

import sys
import typing

import numpy as np

from tf_cartola.common import cli, files
from tf_cartola.contract import features as F
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.train import metrics as metrics_lib


def vif(x: np.ndarray) -> np.ndarray:
    """Variance inflation factor of each column: 1 / (1 - R^2) of its regression on the others with
    an intercept.
    """
    out = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        others = np.column_stack([np.ones(len(x)), np.delete(x, j, axis=1)])
        coef, *_ = np.linalg.lstsq(others, x[:, j], rcond=None)
        residual = x[:, j] - others @ coef
        total = np.sum((x[:, j] - x[:, j].mean()) ** 2)
        r2 = 1.0 - residual @ residual / total if total else 0.0
        out[j] = np.inf if r2 >= 1.0 else 1.0 / (1.0 - r2)
    return out


def logistic_regression(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Unpenalised logistic regression by Newton's method: [intercept, coefficients...].

    Args:
      x: features [n, k].
      y: labels [n], 0 or 1.
      iterations: Newton steps.
    """
    design = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        gradient = design.T @ (y - p)
        hessian = (design * (p * (1 - p))[:, None]).T @ design
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(w)), gradient)
        w += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def _evaluate(w: np.ndarray, x: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    scores = 1.0 / (1.0 + np.exp(-(w[0] + x @ w[1:])))
    m = metrics_lib.classification_metrics(y, scores, threshold)
    return {k: round(m[k], 6) for k in ("ks", "precision", "recall")}


def select(
    train: typing.Tuple[np.ndarray, np.ndarray],
    eval_: typing.Tuple[np.ndarray, np.ndarray],
    names: typing.Sequence[str],
    vif_threshold: float = 3.0,
    ks_tolerance: float = 0.01,
    threshold: float = 0.5,
) -> dict:
    """Runs the selection.

    Args:
      train: (features [n, k], labels [n]) of the train split, columns in `names` order.
      eval_: the same of the eval split.
      names: the feature names.
      vif_threshold: drop while a VIF is above this.
      ks_tolerance: how far below the post-VIF eval KS the coefficient step may go.
      threshold: the decision threshold for precision and recall.

    Returns:
      {"steps": [{"stage", "feature", "value", "ks", "precision", "recall"}...], "kept": [...],
       "vif": {feature: VIF of all features}}
    """
    data = _Data(train, eval_, names, threshold)
    kept, steps = list(names), []
    while len(kept) > 1:  # Drop the most collinear feature while its VIF is above the threshold.
        values = vif(data.train_columns(kept))
        worst = int(np.argmax(values))
        if values[worst] <= vif_threshold:
            break
        dropped, value = kept.pop(worst), round(float(values[worst]), 6)
        steps.append({"stage": "vif", "feature": dropped, "value": value, **data.fit(kept)[1]})
    kept, weak_steps = _drop_weak(data, kept, ks_tolerance)
    initial = dict(zip(names, vif(train[0]).round(6).tolist()))
    return {"steps": steps + weak_steps, "kept": kept, "vif": initial}


class _Data:
    """The splits' features and labels, and the decision threshold the metrics use."""

    def __init__(self, train, eval_, names: typing.Sequence[str], threshold: float):
        (self._x_train, self._y_train), (self._x_eval, self._y_eval) = train, eval_
        self._names, self._threshold = list(names), threshold

    def train_columns(self, features: typing.Sequence[str]) -> np.ndarray:
        """The train split's columns of `features`."""
        return self._x_train[:, [self._names.index(f) for f in features]]

    def fit(self, features: typing.Sequence[str]) -> typing.Tuple[np.ndarray, dict]:
        """(a logistic regression's weights on `features`, fitted on train; its eval metrics)."""
        idx = [self._names.index(f) for f in features]
        w = logistic_regression(self._x_train[:, idx], self._y_train)
        return w, _evaluate(w, self._x_eval[:, idx], self._y_eval, self._threshold)


def _drop_weak(data: _Data, kept: typing.List[str], ks_tolerance: float):
    """Drops the feature with the smallest coefficient while the eval KS stays within
    `ks_tolerance` of the KS with all of `kept`: returns (the features kept, the steps).
    """
    w, evaluated = data.fit(kept)
    reference, steps = evaluated["ks"], []
    while len(kept) > 1:
        weakest = int(np.argmin(np.abs(w[1:])))
        candidate = kept[:weakest] + kept[weakest + 1 :]
        w_candidate, after = data.fit(candidate)
        if after["ks"] < reference - ks_tolerance:
            break
        value = round(float(w[1 + weakest]), 6)
        steps.append({"stage": "coefficient", "feature": kept[weakest], "value": value, **after})
        kept, w = candidate, w_candidate
    return kept, steps


def load_transformed(preprocess_dir: str) -> typing.Tuple[tuple, tuple]:
    """(features, labels) of the transformed train and eval splits, every transformed feature.

    Raises:
      PreprocessOutputError: not a preprocessing output whose data passed validation.
    """
    from tf_cartola.train import training

    manifest = manifest_lib.load(preprocess_dir, trainable=True)
    out = []
    for which in ("train", "eval"):
        x, y = training.load_transformed(
            manifest.artifact(f"transformed_{which}"), F.TRANSFORMED_FEATURES
        )
        out.append(
            (np.column_stack([x[n][:, 0] for n in F.TRANSFORMED_FEATURES]).astype(np.float64), y)
        )
    return out[0], out[1]


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    parser = cli.parser(
        "tf_cartola.inspect.analysis", __doc__, "0 done, 2 not a preprocessing output"
    )
    parser.add_argument("--preprocess_dir", required=True, help="a beam_jobs.preprocess output")
    parser.add_argument("--vif_threshold", type=float, default=3.0, help="default: %(default)s")
    parser.add_argument("--ks_tolerance", type=float, default=0.01, help="default: %(default)s")
    parser.add_argument(
        "--out", help="the JSON table (default: analysis.json in the preprocessing output)"
    )
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    try:
        train, eval_ = load_transformed(args.preprocess_dir)
    except manifest_lib.PreprocessOutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = select(train, eval_, F.TRANSFORMED_FEATURES, args.vif_threshold, args.ks_tolerance)
    print(f"{'stage':<12}{'dropped':<24}{'VIF / coef':>12}{'KS':>9}{'precision':>11}{'recall':>9}")
    for s in result["steps"]:
        print(
            f"{s['stage']:<12}{s['feature']:<24}{s['value']:>12.4f}{s['ks']:>9.4f}{s['precision']:>11.4f}"
            f"{s['recall']:>9.4f}"
        )
    out = args.out or files.join(args.preprocess_dir, "analysis.json")
    files.write_json(out, result)
    print(
        f"kept {len(result['kept'])} features; for the config:\n  features: "
        f"[{', '.join(result['kept'])}]"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    cli.leave(cli.run(main))
