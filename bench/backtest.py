"""beam_jobs.backtest at scale, and its statistics by simulation.

    python bench/backtest.py --rows 10000000     # the join: N scored x N labelled users
    python bench/backtest.py --simulate           # the score-drift test and expected conversions

The join: a month of N users written by the generator (the labels, the documented CSV), and a run
of scores of the same users less 3% plus 3% others (each id's score, decile and label at scoring
time drawn here), and the run before's; then `python -m beam_jobs.backtest` in a fresh process:
wall seconds and peak RSS. The simulation: the score-drift test's false alarms (two runs of one
score distribution) and power (a shift of the scores' log-odds), PSI alongside, and the coverage of
the expected conversions' interval (a list's realized conversions drawn from known rates). Writes
bench/results/backtest-<rows>.json or backtest-simulation.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
from pyarrow import csv as pacsv

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pipeline import ROOT, run_process  # noqa: E402

from tf_cartola.contract import features as F  # noqa: E402
from tf_cartola.evaluate import backtest, campaign, metrics  # noqa: E402


def _scores_file(path: str, ids: np.ndarray, run_id: str, seed: int) -> None:
    """A run of scores of these ids, as beam_jobs.score writes them."""
    rng = np.random.default_rng(seed)
    micro = campaign.written(rng.beta(2, 3, len(ids)))
    table = pa.table(
        {
            F.ID_KEY: ids,
            "pro_probability": campaign.as_probability(micro),
            "model_name": pa.array(["cartola_pro"] * len(ids)),
            "model_version": np.ones(len(ids), np.int64),
            "run_id": pa.array([run_id] * len(ids)),
            F.DECILE: metrics.deciles(micro, ids).astype(np.int8),
            F.LABEL_KEY: (rng.random(len(ids)) < 0.4).astype(np.int8),
        }
    )
    pacsv.write_csv(table, path)


def join(rows: int, work: str) -> dict:
    labels = os.path.join(work, "next.csv")
    if os.path.exists(labels):
        return _run(rows, work, labels)
    os.makedirs(work, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "tf_cartola.synthetic", "--rows", str(rows), "--seed", "1"]
        + ["--out", labels],
        cwd=ROOT,
        check=True,
    )
    ids = pacsv.read_csv(labels, convert_options=pacsv.ConvertOptions(include_columns=[F.ID_KEY]))[
        F.ID_KEY
    ].to_numpy()
    rng = np.random.default_rng(0)
    kept = ids[rng.random(len(ids)) >= 0.03]
    others = 1 + ids.max() + np.arange(len(ids) - len(kept))
    scored = np.concatenate([kept, others])
    _scores_file(os.path.join(work, "scores.csv"), scored, "2026-11", 1)
    _scores_file(os.path.join(work, "previous.csv"), ids, "2026-10", 2)
    del ids, kept, others, scored
    return _run(rows, work, labels)


def _run(rows: int, work: str, labels: str) -> dict:
    """The backtest of the inputs in `work`, a fresh process: seconds and peak RSS."""
    cmd = [
        sys.executable,
        "-m",
        "beam_jobs.backtest",
        "--scores",
        os.path.join(work, "scores.csv"),
        "--previous_scores",
        os.path.join(work, "previous.csv"),
        "--labels",
        labels,
        "--serving_dir",
        os.path.join(work, "serving"),
        "--output_dir",
        os.path.join(work, "out"),
    ]
    result = run_process(cmd, os.path.join(work, "backtest.log"))
    with open(os.path.join(work, "out", "backtest.json")) as f:
        record = json.load(f)
    return {"rows": rows, "backtest": result, "record_rows": record["rows"]}


def drift_test(previous, current, rate: float) -> tuple:
    found = backtest.score_drift(previous, current, rate)
    return found["drifted"], found["psi"]


def simulate(runs: int, rows: int) -> dict:
    """False alarms and power of the score-drift test, and coverage of expected conversions."""
    rng = np.random.default_rng(0)
    rate = 0.01
    out = {"runs": runs, "rows_per_run": rows, "false_alarm_rate": rate}
    for shift in (0.0, 0.02, 0.05, 0.1):
        alarms, psis = [], []
        for _ in range(runs):
            logit = rng.normal(-0.4, 1.6, (2, rows))
            logit[1] += shift
            p = campaign.written(1 / (1 + np.exp(-logit)))
            alarmed, psi = drift_test(p[0], p[1], rate)
            alarms.append(alarmed)
            psis.append(psi)
        out[f"shift_{shift}"] = {
            "alarm_share": float(np.mean(alarms)),
            "psi_median": float(np.median(psis)),
        }
    # Expected conversions: rates estimated from a backtest of `rows` users, a list of 2000 drawn
    # from the true rates; the share of lists whose realized conversions fall in the interval.
    true_rates = np.linspace(0.3, 0.01, 10)
    inside = 0
    for _ in range(runs):
        per_decile = rng.multinomial(rows, np.full(10, 0.1))
        converted = rng.binomial(per_decile, true_rates)
        record = {
            "deciles": [
                {"decile": d + 1, "rows": int(n), "converted": int(k)}
                for d, (n, k) in enumerate(zip(per_decile, converted))
            ]
        }
        deciles = np.sort(rng.integers(1, 4, 2000))
        expected = campaign.expected_conversions(deciles, record)
        realized = rng.binomial(1, true_rates[deciles - 1]).sum()
        inside += expected["low"] <= realized <= expected["high"]
    out["expected_conversions_coverage"] = inside / runs
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--runs", type=int, default=1000, help="with --simulate")
    parser.add_argument("--sim_rows", type=int, default=20_000, help="rows per simulated run")
    parser.add_argument("--work", help="keep the inputs in this folder and reuse them")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.simulate:
        result, name = simulate(args.runs, args.sim_rows), "backtest-simulation.json"
    else:
        with tempfile.TemporaryDirectory(prefix="bench-backtest-") as work:
            result, name = join(args.rows, args.work or work), f"backtest-{args.rows}.json"
    print(json.dumps(result, indent=2))
    with open(os.path.join(HERE, "results", name), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
