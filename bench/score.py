"""Batch scoring side by side in one run, on the same CSV and model: rows/s and peak RSS of each
way.

    python bench/score.py --rows 1000000  # generates the CSV and trains a model on 20k of its rows
    python bench/score.py --csv data/cartola.csv --model_dir serving_models/cartola_pro/1

Variants, each a fresh process:
  job      `python -m beam_jobs.score`: RunInference with RawBatchModelHandler (predict_raw on each
           typed
           record batch's columns)
  tfx_bsl  the same reader, then each row as a serialized tf.Example through tfx_bsl's RunInference
           on the
           `serving_default` (Classify) signature, as TFX's BulkInferrer runs it
  client   `python -m serving.client --model_dir`: one process, typed rows as dicts, predict_raw
           per 500 rows
Writes bench/results/score-<rows>.json. These machines are noisy: read the ratios.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pipeline import ROOT, RUN_ID, generated_csv, run_process  # noqa: E402

VARIANTS = ("job", "tfx_bsl", "client")
TRAIN_ROWS = 20_000


def _model(csv: str, work: str) -> str:
    """Preprocesses and trains on the first TRAIN_ROWS rows of the CSV; returns the pushed
    version.
    """
    sample = os.path.join(work, "sample.csv")
    with open(csv) as src, open(sample, "w") as out:
        for i, line in enumerate(src):
            if i > TRAIN_ROWS:
                break
            out.write(line)
    common = ["--config", "configs/default.yaml"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "beam_jobs.preprocess",
            *common,
            "--input",
            sample,
            "--output_dir",
            os.path.join(work, "pre"),
            "--baseline",
            "none",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tf_cartola.train",
            *common,
            "--preprocess_dir",
            os.path.join(work, "pre"),
            "--serving_dir",
            os.path.join(work, "serving"),
            "--run_dir",
            os.path.join(work, "train"),
            "--run_id",
            RUN_ID,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return os.path.join(work, "serving", "cartola_pro", "1")


def tfx_bsl_pipeline(csv: str, model_dir: str, out: str) -> None:
    """The tfx_bsl variant's process: our reader, one serialized tf.Example per row, tfx_bsl's
    RunInference.
    """
    import apache_beam as beam
    from tfx_bsl.public.beam import RunInference
    from tfx_bsl.public.proto import model_spec_pb2

    from beam_jobs.shared import inputs, transforms
    from tf_cartola.read import csv_reader, examples

    spec = model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=model_dir, signature_name=["serving_default"]
        )
    )
    with inputs.open_inputs(csv) as (_, parts), beam.Pipeline() as p:
        rows = p | transforms.ReadRows(parts, transforms.read_csv_range)
        _ = (
            rows["rows"]
            | "ToExamples"
            >> beam.FlatMap(lambda b: [examples.to_example(r) for r in csv_reader.to_records(b)])
            | "RunInference" >> RunInference(spec)
            | "ToLines"
            >> beam.Map(
                lambda log: (
                    "%.6f" % log.classify_log.response.result.classifications[0].classes[1].score
                )
            )
            | "Write" >> beam.io.WriteToText(out)
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--csv")
    parser.add_argument("--model_dir")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    # CSV MODEL OUT: one variant's run
    parser.add_argument("--tfx_bsl_process", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tfx_bsl_process:
        tfx_bsl_pipeline(*args.tfx_bsl_process)
        return 0
    work = tempfile.mkdtemp(prefix="bench-score-")
    csv = args.csv or generated_csv(args.rows, work)
    with open(csv, "rb") as f:
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1
    model_dir = args.model_dir or _model(csv, work)
    commands = {
        "job": [
            sys.executable,
            "-m",
            "beam_jobs.score",
            "--input",
            csv,
            "--model_dir",
            model_dir,
            "--output",
            os.path.join(work, "job", "scores"),
            "--run_id",
            RUN_ID,
        ],
        "tfx_bsl": [
            sys.executable,
            os.path.join(HERE, "score.py"),
            "--tfx_bsl_process",
            csv,
            model_dir,
            os.path.join(work, "tfx_bsl", "scores"),
        ],
        "client": [
            sys.executable,
            "-m",
            "serving.client",
            "--model_dir",
            model_dir,
            "--csv",
            csv,
            "--out",
            os.path.join(work, "client.csv"),
            "--no_progress",
            "--run_id",
            RUN_ID,
        ],
    }
    results = {}
    for variant in args.variants.split(","):
        print(f"{variant} ...", file=sys.stderr, flush=True)
        measured = run_process(commands[variant], os.path.join(work, f"{variant}.log"))
        results[variant] = {**measured, "rows_per_second": round(rows / measured["seconds"])}
    for r in results.values():
        r["speed_vs_client"] = (
            round(r["rows_per_second"] / results["client"]["rows_per_second"], 2)
            if "client" in results
            else None
        )
    print(f"{'variant':<10}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>14}{'x client':>10}")
    for name, r in results.items():
        print(
            f"{name:<10}{r['seconds']:>10.1f}{r['rows_per_second']:>12,}{r['peak_rss_mb']:>14,}"
            f"{r['speed_vs_client'] or '':>10}"
        )
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"score-{rows}.json"), "w") as f:
        json.dump(
            {"rows": rows, "csv": csv, "model_dir": model_dir, "results": results}, f, indent=2
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
