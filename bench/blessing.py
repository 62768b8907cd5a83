"""The blessing rule and the intervals, measured by simulation: false refusals, power, coverage.

    python bench/blessing.py --sims 200 --rows 128000

Every simulated month is drawn from the generator (`tf_cartola.synthetic`, a new seed each
time), split by the pipeline's id hash, engineered and z-scored as the data scientists' procedure
does (tests/reference.py), and a logistic regression is fitted on its train split: a retrain.
The served model is one such retrain of another month. On each month's eval split:

- false refusal: the candidate (a clean retrain, no real change) against the served model, by
  the significance rule (tf_cartola/evaluate/evaluation.py, `compare`, the config's defaults) and
  by the rule it replaces (refused when KS is more than 0.01 below the served model's);
- power: a worse candidate against the served model: the clean retrain's scores with Gaussian
  noise on the logit, its scale chosen so that the true KS (on --truth_rows rows) is 0.03 below
  the clean retrain's;
- coverage: how often the 95% interval of each metric of the served model holds its true value,
  on samples of one large month's eval rows (--truth_rows rows generated), whose value on all of
  them is the truth. Not across months: the generator's months differ from one another by more
  than sampling does (its label model is standardized on each month's own rows; KS 0.606 to
  0.609 on three months of 2M rows), which no interval of one month's rows can cover.

Writes bench/results/blessing-<rows>.json and prints the rates with their binomial standard
errors.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from tests import reference  # noqa: E402
from tf_cartola import synthetic  # noqa: E402
from tf_cartola.contract import config as config_lib  # noqa: E402
from tf_cartola.contract import features as F  # noqa: E402
from tf_cartola.evaluate import evaluation, metrics  # noqa: E402

OLD_TOLERANCE = 0.01
WORSE_BY = 0.03


def _month(rows: int, seed: int):
    """(train rows, train labels, eval rows, eval labels) of one generated month: the final
    features engineered, not yet imputed or scaled.
    """
    frame = synthetic.generate(rows, seed)
    train, held = reference.split_frame(frame)
    x = [reference.engineer(f)[list(F.FINAL_FEATURES)] for f in (train, held)]
    return x[0], train[F.LABEL_KEY].to_numpy(), x[1], held[F.LABEL_KEY].to_numpy()


class _Model:
    """A retrain: imputation and scaling fitted on its train rows (as tf.Transform's are, and
    carried with it), then a logistic regression.
    """

    def __init__(self, x, y):
        self._train = x
        self._fit = LogisticRegression(max_iter=500).fit(self._scaled(x), y)

    def _scaled(self, x):
        return reference.impute_and_scale(self._train, x).to_numpy()

    def logit(self, x):
        return self._fit.decision_function(self._scaled(x))

    def score(self, x):
        return 1 / (1 + np.exp(-self.logit(x)))


def _noisy(model, x, sigma, rng):
    return 1 / (1 + np.exp(-(model.logit(x) + rng.normal(0, sigma, len(x)))))


def _calibrate(model, x, y, rng) -> float:
    """The logit noise that lowers the model's KS by WORSE_BY on these (many) rows."""
    clean = metrics.ks(y, model.score(x))
    low, high = 0.0, 3.0
    for _ in range(20):
        mid = (low + high) / 2
        drop = clean - metrics.ks(y, _noisy(model, x, mid, rng))
        low, high = (mid, high) if drop < WORSE_BY else (low, mid)
    return (low + high) / 2


def _rate(flags) -> dict:
    p = float(np.mean(flags))
    return {"rate": p, "se": float(np.sqrt(p * (1 - p) / len(flags))), "n": len(flags)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--rows", type=int, default=128_000)
    parser.add_argument("--truth_rows", type=int, default=2_000_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cfg, blessing = config_lib.EvaluateConfig(slices=()), config_lib.BlessingConfig()
    rng = np.random.default_rng(12345)

    served = _Model(*_month(args.rows, 1_000_000)[:2])
    truth_x, truth_y = _month(args.truth_rows, 2_000_000)[2:]  # Its eval third: held out.
    truth_scores = served.score(truth_x)
    truth = metrics.on_rows(truth_y, truth_scores, 0.5)
    sigma = _calibrate(served, truth_x, truth_y, rng)
    print(f"truth on {len(truth_y)} rows: {truth}; noise {sigma:.3f} lowers KS by {WORSE_BY}")

    refused, refused_old, refused_worse, covered = [], [], [], {m: [] for m in metrics.NAMES}
    refused_worse_old = []
    true_differences = []  # Two retrains' true KS differ too: the reason for a margin.
    for i in range(args.sims):
        x_train, y_train, x_eval, y_eval = _month(args.rows, i)
        candidate = _Model(x_train, y_train)
        true_differences.append(metrics.ks(truth_y, candidate.score(truth_x)) - truth["ks"])
        served_scores = served.score(x_eval)
        clean = candidate.score(x_eval)
        same = evaluation.compare(y_eval, clean, served_scores, cfg, blessing)
        refused.append(same["significantly_worse"])
        old = metrics.ks(y_eval, clean) < metrics.ks(y_eval, served_scores) - OLD_TOLERANCE
        refused_old.append(bool(old))
        worse = _noisy(candidate, x_eval, sigma, rng)
        refused_worse.append(
            evaluation.compare(y_eval, worse, served_scores, cfg, blessing)["significantly_worse"]
        )
        refused_worse_old.append(
            bool(metrics.ks(y_eval, worse) < metrics.ks(y_eval, served_scores) - OLD_TOLERANCE)
        )
        rows = rng.choice(len(truth_y), len(y_eval), replace=False)
        overall = evaluation.model_evaluation(truth_y[rows], truth_scores[rows], {}, 0.5, cfg, {})[
            "overall"
        ]
        for name, interval in overall.items():
            covered[name].append(interval["low"] <= truth[name] <= interval["high"])
        if (i + 1) % 20 == 0:
            print(
                f"{i + 1}/{args.sims}: false refusals {np.mean(refused):.3f} (old rule "
                f"{np.mean(refused_old):.3f}), power {np.mean(refused_worse):.3f}, KS coverage "
                f"{np.mean(covered['ks']):.3f}, {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    result = {
        "sims": args.sims,
        "rows": args.rows,
        "eval_rows": int(len(y_eval)),
        "replicates": cfg.replicates,
        "rule": {
            "ks_margin": blessing.ks_margin,
            "false_refusal_rate": blessing.false_refusal_rate,
        },
        "false_refusal": _rate(refused),
        "false_refusal_old_rule": {**_rate(refused_old), "tolerance": OLD_TOLERANCE},
        "power": {**_rate(refused_worse), "worse_by_ks": WORSE_BY, "logit_noise": sigma},
        "power_old_rule": _rate(refused_worse_old),
        "coverage_95": {name: _rate(flags) for name, flags in covered.items()},
        "true_ks_difference_of_clean_retrains": {
            "mean": float(np.mean(true_differences)),
            "sd": float(np.std(true_differences)),
            "min": float(np.min(true_differences)),
            "max": float(np.max(true_differences)),
        },
        "truth": truth,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = args.out or os.path.join(HERE, "results", f"blessing-{args.rows}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    shown = ("false_refusal", "false_refusal_old_rule", "power", "power_old_rule")
    print(json.dumps({k: result[k] for k in shown}))
    print("coverage:", {k: round(v["rate"], 3) for k, v in result["coverage_95"].items()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
