"""The evaluation side by side with TensorFlow Model Analysis, on the same rows and slices.

    make tfma-env   # .venv-tfma: TFMA 0.47.1 against the project's pins, never in .venv
    python bench/evaluate.py --rows 1000000 --tfma_rows 100000

Rows come from the generator (their raw slice columns) with the scores of two logistic
regressions fitted on two other generated months, the candidate and the served model. Each way
runs in a fresh process that first loads the rows, then evaluates; it reports seconds and peak
RSS over what it held after loading:

  ours   tf_cartola.evaluate: both models' metrics with 1,000 Poisson-bootstrap replicates,
         overall and on the default slices, deciles, and the paired comparison (what training's
         evaluate stage computes once the eval split is scored)
  tfma   tfma.analyze_raw_data on the candidate's scores: the same slices, AUC, precision and
         recall at 0.5, with its confidence intervals (TFMA's Poisson bootstrap)

--rows sizes ours (the 60 s target is at 1M); --tfma_rows sizes the side-by-side pair, both ways on
the same rows. The two must agree on every shared metric within their intervals; the bench checks
it. Writes bench/results/evaluate-<rows>.json.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TFMA_PYTHON = os.path.join(ROOT, ".venv-tfma", "bin", "python")
SLICE_COLUMNS = ("anos_como_pro", "gplay_free", "pixels", "escalacoes")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def write_rows(rows: int, path: str) -> None:
    """The eval rows: labels, the two models' scores and the raw slice columns, as .npz."""
    sys.path.insert(0, ROOT)
    from sklearn.linear_model import LogisticRegression

    from tests import reference
    from tf_cartola import synthetic
    from tf_cartola.contract import features as F

    def features(frame, train):
        engineered = reference.engineer(frame)[list(F.FINAL_FEATURES)]
        return reference.impute_and_scale(
            reference.engineer(train)[list(F.FINAL_FEATURES)], engineered
        ).to_numpy()

    frame = synthetic.generate(rows, 7)
    scores = []
    for seed in (1, 2):  # The candidate's month and the served model's.
        month = synthetic.generate(100_000, seed)
        fit = LogisticRegression(max_iter=500).fit(features(month, month), month[F.LABEL_KEY])
        scores.append(fit.predict_proba(features(frame, month))[:, 1])
    np.savez(
        path,
        labels=frame[F.LABEL_KEY].to_numpy(),
        ids=frame[F.ID_KEY].to_numpy(),
        candidate=scores[0],
        served=scores[1],
        **{c: frame[c].to_numpy(dtype=object if c == "pixels" else float) for c in SLICE_COLUMNS},
    )


def _load(path: str, rows: int) -> dict:
    data = np.load(path, allow_pickle=True)
    return {k: data[k][:rows] for k in data.files}


def ours(path: str, rows: int) -> dict:
    """Times tf_cartola.evaluate on the rows (both models, slices, comparison)."""
    sys.path.insert(0, ROOT)
    from tf_cartola.contract import config as config_lib
    from tf_cartola.evaluate import evaluation

    data = _load(path, rows)
    held = _rss_mb()
    cfg, blessing = config_lib.EvaluateConfig(), config_lib.BlessingConfig()
    columns = {c: data[c] for c in SLICE_COLUMNS}
    edges = {"escalacoes": tuple(np.quantile(data["escalacoes"], [0.25, 0.5, 0.75]))}
    started = time.perf_counter()
    out = {
        name: evaluation.model_evaluation(
            data["labels"], data[name], columns, 0.5, cfg, edges, data["ids"]
        )
        for name in ("candidate", "served")
    }
    out["comparison"] = evaluation.compare(
        data["labels"], data["candidate"], data["served"], cfg, blessing
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shared = {
        ("overall", ""): out["candidate"]["overall"],
        **{
            (r["slice"].split(":")[0], r["value"]): r["metrics"]
            for r in out["candidate"]["slices"]
            if r["metrics"] and ":" not in r["slice"]
        },
    }
    return {
        "seconds": round(seconds, 2),
        "peak_over_held_mb": round(peak - held, 1),
        "metrics": {
            f"{k[0]}={k[1]}": {m: v[m] for m in ("auc", "precision", "recall")}
            for k, v in shared.items()
        },
    }


def tfma(path: str, rows: int) -> dict:
    """Times TFMA's analyze_raw_data on the candidate's scores, the by-value slices."""
    import pandas as pd
    import tensorflow_model_analysis as tfma_lib

    data = _load(path, rows)
    frame = pd.DataFrame(
        {
            "label": data["labels"].astype(float),
            "prediction": data["candidate"],
            "anos_como_pro": data["anos_como_pro"].astype(str),
            "gplay_free": data["gplay_free"].astype(str),
        }
    )
    held = _rss_mb()
    config = tfma_lib.EvalConfig(
        model_specs=[tfma_lib.ModelSpec(label_key="label", prediction_key="prediction")],
        metrics_specs=[
            tfma_lib.MetricsSpec(
                metrics=[
                    tfma_lib.MetricConfig(class_name="AUC", config='{"num_thresholds": 10000}'),
                    tfma_lib.MetricConfig(class_name="Precision"),
                    tfma_lib.MetricConfig(class_name="Recall"),
                ]
            )
        ],
        slicing_specs=[
            tfma_lib.SlicingSpec(),
            tfma_lib.SlicingSpec(feature_keys=["anos_como_pro"]),
            tfma_lib.SlicingSpec(feature_keys=["gplay_free"]),
        ],
        options=tfma_lib.Options(compute_confidence_intervals={"value": True}),
    )
    started = time.perf_counter()
    result = tfma_lib.analyze_raw_data(frame, config)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = {}
    for key, metrics in result.slicing_metrics:
        name = "overall=" if not key else f"{key[0][0]}={float(key[0][1]):g}"
        values = {k.lower(): v for k, v in metrics[""][""].items()}
        found[name] = {
            m: {
                "value": values[m]["boundedValue"]["value"],
                "low": values[m]["boundedValue"]["lowerBound"],
                "high": values[m]["boundedValue"]["upperBound"],
            }
            for m in ("auc", "precision", "recall")
        }
    return {
        "seconds": round(seconds, 2),
        "peak_over_held_mb": round(peak - held, 1),
        "metrics": found,
    }


def _run(python: str, way: str, path: str, rows: int) -> dict:
    done = subprocess.run(
        [python, __file__, "--way", way, "--data", path, "--rows", str(rows)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"},
    )
    if done.returncode:
        raise RuntimeError(f"{way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agree(a: dict, b: dict) -> dict:
    """Per shared slice and metric: do the two values lie within each other's intervals?"""
    out = {}
    for name in sorted(set(a) & set(b)):
        for metric in ("auc", "precision", "recall"):
            x, y = a[name][metric], b[name][metric]
            out[f"{name} {metric}"] = bool(
                x["low"] - 1e-4 <= y["value"] <= x["high"] + 1e-4
                or y["low"] - 1e-4 <= x["value"] <= y["high"] + 1e-4
            )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tfma_rows", type=int, default=100_000)
    parser.add_argument("--way", choices=("ours", "tfma"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.way:
        print(json.dumps((ours if args.way == "ours" else tfma)(args.data, args.rows)))
        return
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "rows.npz")
        write_rows(max(args.rows, args.tfma_rows), data)
        big = _run(sys.executable, "ours", data, args.rows)
        print(f"ours at {args.rows} rows: {big['seconds']} s, +{big['peak_over_held_mb']} MB")
        pair = {
            "ours": _run(sys.executable, "ours", data, args.tfma_rows),
            "tfma": _run(TFMA_PYTHON, "tfma", data, args.tfma_rows),
        }
    agree = _agree(pair["ours"]["metrics"], pair["tfma"]["metrics"])
    result = {
        "rows": args.rows,
        "ours": {k: big[k] for k in ("seconds", "peak_over_held_mb")},
        "side_by_side": {
            "rows": args.tfma_rows,
            **{w: {k: r[k] for k in ("seconds", "peak_over_held_mb")} for w, r in pair.items()},
            "ratio": round(pair["tfma"]["seconds"] / pair["ours"]["seconds"], 1),
            "agree": agree,
        },
    }
    print(json.dumps(result["side_by_side"], indent=2))
    out = os.path.join(HERE, "results", f"evaluate-{args.rows}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
