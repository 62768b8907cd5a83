"""End to end, side by side in one run: our CLIs against the textbook pipeline, on the same CSV.

    python bench/pipeline.py --rows 128000                 # generates the CSV
    python bench/pipeline.py --csv data/cartola.csv --variants ours,ours_mp,textbook

Variants, each a fresh process (or two) on the same CSV, in this order:
  ours      `python -m beam_jobs.preprocess`, `python -m tf_cartola.train`, then `python -m
            beam_jobs.score`
            of every row with the pushed version (DirectRunner, one process each)
  ours_mp   the same with `--direct_running_mode=multi_processing --direct_num_workers=2`
  ours_mt   the same with `--direct_running_mode=multi_threading --direct_num_workers=2`
  textbook  bench/textbook_pipeline.py: TFDV, TFT over CsvTFXIO, Keras fit and save, for as many
            epochs as our training ran
Prints wall seconds per stage, per process and for preprocess + train, rows/s, the peak RSS of each
process (with its worker subprocesses), each of our processes' fixed seconds (outside its recorded
stages, plus building its pipeline) beside the import floor under them (a bare interpreter that
imports the libraries the process cannot do without, measured in the same run) and the ratio to
the textbook; writes the same as JSON to bench/results/pipeline-<rows>.json. These machines are
noisy: read the ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUN_ID = "2026-01"  # The generated data is of no month: every run is given this one.
BEAM_ARGS = {
    "ours": [],
    "ours_mp": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    "ours_mt": ["--direct_running_mode=multi_threading", "--direct_num_workers=2"],
}

# The libraries each of our processes cannot run without: on the direct runner the Beam jobs
# import Beam and TensorFlow (preprocess also TFDV and tf.Transform) in one process.
NEEDS = {
    "preprocess": (
        "apache_beam",
        "tensorflow",
        "tensorflow_transform.beam",
        "tensorflow_data_validation",
    ),
    "train": ("tensorflow", "tensorflow_transform"),
    "score": ("apache_beam", "tensorflow"),
}
FLOOR_REPEATS = 3


def run_process(cmd, log_path: str) -> dict:
    """Runs a command to completion, its output to `log_path`: wall seconds and peak RSS in MB.

    The peak RSS comes from wait4, so it covers the process and the worker subprocesses it reaped.
    """
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        with open(log_path) as log:
            sys.stderr.write(log.read()[-4000:])
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def ours(csv: str, work: str, beam_args) -> dict:
    """Our preprocessing job and training process, through their CLIs."""
    preprocess_dir = os.path.join(work, "preprocess")
    os.makedirs(work)
    pre = run_process(
        [
            sys.executable,
            "-m",
            "beam_jobs.preprocess",
            "--config",
            "configs/default.yaml",
            "--input",
            csv,
            "--output_dir",
            preprocess_dir,
            *beam_args,
        ],
        os.path.join(work, "preprocess.log"),
    )
    run_dir = os.path.join(work, "run")
    train = run_process(
        [
            sys.executable,
            "-m",
            "tf_cartola.train",
            "--config",
            "configs/default.yaml",
            "--preprocess_dir",
            preprocess_dir,
            "--serving_dir",
            os.path.join(work, "serving"),
            "--run_dir",
            run_dir,
            "--run_id",
            RUN_ID,
        ],
        os.path.join(work, "train.log"),
    )
    scores = os.path.join(work, "scores", "scores")
    score = run_process(
        [
            sys.executable,
            "-m",
            "beam_jobs.score",
            "--input",
            csv,
            "--serving_dir",
            os.path.join(work, "serving"),
            "--output",
            scores,
            "--run_id",
            RUN_ID,
            *beam_args,
        ],
        os.path.join(work, "score.log"),
    )
    with open(os.path.join(preprocess_dir, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(run_dir, "blessing.json")) as f:
        blessing = json.load(f)
    with open(f"{scores}.manifest.json") as f:
        scored = json.load(f)
    assert (
        scored["rows"]["scored"] + scored["rows"]["bad"] + scored["rows"]["set_aside"]
        == scored["rows"]["read"]
    )
    for process, seconds, stages in (
        (pre, manifest["seconds"], ("hash_inputs", "pipeline", "validate")),
        (score, scored["seconds"], ("prepare", "pipeline")),
    ):
        staged = sum(seconds[k] for k in stages)
        process["fixed_seconds"] = fixed_seconds(process, staged, seconds["construct"])
    train["fixed_seconds"] = fixed_seconds(train, sum(blessing["seconds"].values()), 0.0)
    for name, process in (("preprocess", pre), ("train", train), ("score", score)):
        process["import_floor_seconds"] = import_floor(NEEDS[name])
        process["fixed_over_floor_seconds"] = round(
            process["fixed_seconds"] - process["import_floor_seconds"], 2
        )
    return {
        "processes": {"preprocess": pre, "train": train, "score": score},
        "stages": {
            **{f"preprocess.{k}": v for k, v in manifest["seconds"].items()},
            **{f"train.{k}": v for k, v in blessing["seconds"].items()},
            **{f"score.{k}": v for k, v in scored["seconds"].items()},
        },
        "rows": manifest["rows"]["read"],
        "epochs": blessing["epochs_run"],
        "ks": round(blessing["metrics"]["ks"], 4),
    }


def fixed_seconds(process: dict, staged: float, construct: float) -> float:
    """A process's fixed cost: its seconds outside its top-level recorded stages (imports,
    start-up, exit, and whatever runs between stages) and building its Beam pipeline (its
    libraries' imports included).
    """
    return round(process["seconds"] - staged + construct, 2)


def import_floor(modules) -> float:
    """The median wall seconds (of FLOOR_REPEATS) of a bare interpreter that imports `modules`
    and exits as our CLIs do (`os._exit`): what any process needing them pays here before its
    first line of work.
    """
    code = f"import os, {', '.join(modules)}; os._exit(0)"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}  # As tf_cartola sets it.
    seconds = []
    for _ in range(FLOOR_REPEATS):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True
        )
        seconds.append(time.perf_counter() - start)
    return round(statistics.median(seconds), 2)


def textbook(csv: str, work: str, epochs: int) -> dict:
    """bench/textbook_pipeline.py in its own process."""
    os.makedirs(work)
    out = os.path.join(work, "stages.json")
    proc = run_process(
        [
            sys.executable,
            os.path.join(HERE, "textbook_pipeline.py"),
            "--csv",
            csv,
            "--work_dir",
            work,
            "--epochs",
            str(epochs),
            "--out",
            out,
        ],
        os.path.join(work, "textbook.log"),
    )
    with open(out) as f:
        stages = json.load(f)
    return {"processes": {"textbook": proc}, "stages": stages, "epochs": epochs}


def generated_csv(rows: int, folder: str) -> str:
    """Writes `rows` synthetic users (seed 0) to `folder`/cartola.csv with the project's generator,
    in a process of its own; returns the path.
    """
    path = os.path.join(folder, "cartola.csv")
    command = [sys.executable, "-m", "tf_cartola.synthetic", "--rows", str(rows)]
    subprocess.run([*command, "--seed", "0", "--out", path], cwd=ROOT, check=True)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=128_000, help="rows to generate when --csv is not given"
    )
    parser.add_argument("--csv", help="an existing CSV of the documented format")
    parser.add_argument(
        "--variants",
        default="ours,textbook",
        help="comma-separated, run in this order: ours, ours_mp, ours_mt, textbook",
    )
    parser.add_argument("--out", help="results JSON (default bench/results/pipeline-<rows>.json)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        csv = os.path.abspath(args.csv or generated_csv(args.rows, tmp))
        results, epochs = {}, 6
        for variant in args.variants.split(","):
            work = os.path.join(tmp, variant)
            print(f"running {variant} ...", flush=True)
            if variant == "textbook":
                results[variant] = textbook(csv, work, epochs)
            else:
                results[variant] = ours(csv, work, BEAM_ARGS[variant])
                epochs = results[variant]["epochs"]
        rows = next((r["rows"] for r in results.values() if "rows" in r), args.rows)
    for r in results.values():
        for p in r["processes"].values():
            p["rows_per_second"] = round(rows / p["seconds"])
        # Preprocess and train, the retraining path the textbook variant also runs; scoring is
        # reported apart.
        fit = [p for name, p in r["processes"].items() if name != "score"]
        r["seconds"] = round(sum(p["seconds"] for p in fit), 2)
        r["rows_per_second"] = round(rows / r["seconds"])
        r["peak_rss_mb"] = max(p["peak_rss_mb"] for p in r["processes"].values())
    if "textbook" in results:
        for r in results.values():
            r["ratio_to_textbook"] = round(r["seconds"] / results["textbook"]["seconds"], 3)
    report = {
        "csv": csv if args.csv else f"generated, {rows} rows",
        "rows": rows,
        "cores": os.cpu_count(),
        "variants": results,
    }
    print(json.dumps(report, indent=2))
    out = args.out or os.path.join(HERE, "results", f"pipeline-{rows}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
