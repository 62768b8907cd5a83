"""Validating a batch of data against a model's baseline, as a library (CLI: beam_jobs.validate).

The batch (users to score as CSV, with or without the label, or TF Serving
PredictionLog records) is read by one Beam pipeline into typed record batches (bad
rows quarantined, as in preprocessing), and TFDV computes its statistics; then the
statistics are checked against the baseline's schema in the SERVING environment and
compared with the baseline's train statistics (tf_cartola.validate.drift).
"""

import logging
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.shared import counters as counters_lib
from beam_jobs.shared import inputs as inputs_lib
from beam_jobs.shared import transforms, workers
from beam_jobs.shared.outputs import AnomaliesFound, Layout
from tf_cartola.common import files
from tf_cartola.contract import config as config_lib
from tf_cartola.read import postgres

log = logging.getLogger(__name__)

FORMATS = (inputs_lib.CSV, inputs_lib.PREDICTION_LOG)


def _reader(fmt: str, database: bool, encoding: str):
    if fmt == inputs_lib.PREDICTION_LOG:
        return transforms.read_prediction_log_file
    # Any column may be missing: that is the schema's finding.
    return transforms.part_reader(database, (), encoding)


def build_pipeline(
    p: beam.Pipeline,
    parts,
    fmt: str,
    layout: Layout,
    database: bool = False,
    encoding: str = "utf-8",
) -> None:
    """Adds the steps that read the batch (file ranges, or table partitions) and write its
    statistics and quarantine to `p`.

    Args:
      p: the pipeline.
      parts: the batch's parts (file ranges or table partitions).
      fmt: "csv" or "prediction_log".
      layout: where the outputs go.
      database: whether the parts are table partitions.
      encoding: a CSV input's text encoding.
    """
    import tensorflow_data_validation as tfdv

    from tf_cartola.validate import drift

    parsed = p | "ReadRows" >> transforms.ReadRows(parts, _reader(fmt, database, encoding))
    _ = parsed[transforms.BAD] | "WriteQuarantine" >> transforms.WriteQuarantine(
        layout.path("bad_rows", "bad_rows")
    )
    _ = (
        parsed["rows"]
        | "GenerateStatistics" >> tfdv.GenerateStatistics(drift.stats_options())
        | "WriteStatistics" >> tfdv.WriteStatisticsToBinaryFile(layout.stats("data", "binpb"))
    )


def run_pipeline(
    parts,
    fmt: str,
    layout: Layout,
    options: PipelineOptions,
    database: bool,
    encoding: str = "utf-8",
) -> dict:
    """Runs `build_pipeline`. Returns the counters.

    Args:
      parts: the input's parts (file ranges or table partitions).
      fmt: "csv" or "prediction_log".
      layout: where the outputs go.
      options: Beam pipeline options.
      database: whether the parts are table partitions.
      encoding: a CSV input's text encoding.
    """
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, parts, fmt, layout, database, encoding)
    return counters_lib.of(p.result)


def validate(
    input_pattern: str,
    baseline,
    output_dir: str,
    options: PipelineOptions,
    fmt: str = inputs_lib.CSV,
    cfg: config_lib.PreprocessConfig = config_lib.PreprocessConfig(),
) -> dict:
    """Validates a batch against a baseline; writes `manifest.json` and report-ready artifacts.

    Args:
      input_pattern: files of the batch (any Beam filesystem), or a postgresql:// URL.
      baseline: a tf_cartola.validate.baseline.Baseline (its schema and train statistics).
      output_dir: where statistics, anomalies, the quarantine and the manifest go.
      options: Beam pipeline options.
      fmt: "csv" or "prediction_log".
      cfg: the preprocess section of the config: the drift comparison's false-alarm budget, the
        share of rows that may be set aside, the features whose anomalies are accepted (and by
        whom), a CSV's encoding, a database's table or query and partitions.

    Returns:
      The manifest.

    Raises:
      AnomaliesFound: anomalies, drift or bad rows (everything is written first).
    """
    from tf_cartola.validate import validation

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {list(FORMATS)}")
    started = time.perf_counter()
    layout = Layout(output_dir)
    runner = workers.runner(options, [input_pattern, layout.root])  # Before anything is deleted.
    if layout.clear():
        log.info("cleared the earlier run's outputs in %s", layout.root)
    log.info("step 1/3: fingerprinting %s", inputs_lib.shown(input_pattern))
    database = inputs_lib.DatabaseInput(cfg.table, cfg.query, cfg.partitions)
    with inputs_lib.open_inputs(input_pattern, fmt, (), database) as (inputs, parts):
        log.info("step 2/3: reading %d part(s) (%s) and computing statistics", len(parts), fmt)
        database_rows = fmt == inputs_lib.CSV and postgres.is_database(input_pattern)
        counters = run_pipeline(parts, fmt, layout, options, database_rows, cfg.encoding)
    log.info("step 3/3: validating against %s", baseline.description)
    rows, accepted, checks = _judged(layout, baseline, counters, cfg)
    manifest = {
        "input": inputs_lib.shown(input_pattern),
        "format": fmt,
        "inputs": inputs,
        **_counts(counters),
        "baseline": baseline.summary(),
        **validation.verdict_record(rows, rows, accepted),
        "drift": {"data vs baseline": checks},
        "seconds": {"total": round(time.perf_counter() - started, 2)},
        "runner": {**runner, "not_reported": []},
        "artifacts": _artifacts(layout, counters),
    }
    written = layout.path("manifest.json")
    files.write_json(written, manifest)
    if rows:
        raise AnomaliesFound(f"{validation.format_table(rows)}\nmanifest: {written}", manifest)
    return manifest


def _judged(layout: Layout, baseline, counters: dict, cfg: config_lib.PreprocessConfig):
    """The data's anomalies (the baseline's schema in SERVING, drift, no readable row) and the
    input's (bad rows), each written as text beside the statistics. Returns (the anomaly rows that
    fail the run, the record of those accepted, the drift checks as JSON).
    """
    import tensorflow_data_validation as tfdv

    from tf_cartola.validate import drift, validation

    stats = tfdv.load_stats_binary(layout.stats("data", "binpb"))
    tfdv.write_stats_text(stats, layout.stats("data"))
    schema = validation.only_features(baseline.schema, baseline.features, validation.SERVING)
    anomalies = validation.validate(
        validation.in_environment(stats, schema, validation.SERVING), schema, validation.SERVING
    )
    checks = drift.compare(baseline.stats, stats, cfg.drift_false_alarm_rate, baseline.features)
    validation.merge(anomalies, validation.drift_anomalies(checks, baseline.description))
    if not counters.get(f"rows_{transforms.GOOD}", 0):
        validation.add_anomaly(
            anomalies, None, "DATASET_LOW_NUM_EXAMPLES", "The input holds no readable row."
        )
    by_name = {
        "data": anomalies,
        "input": counters_lib.input_anomalies(
            counters, layout.path("bad_rows"), cfg.max_bad_row_fraction
        ),
    }
    files.makedirs(layout.path("anomalies"))
    for which, found in by_name.items():
        tfdv.write_anomalies_text(found, layout.anomalies(which))
    rows = validation.anomaly_rows(by_name)
    return (*validation.split_accepted(rows, cfg.accept, cfg.accepted_by), drift.to_json(checks))


def _counts(counters: dict) -> dict:
    """The manifest's rows read, good and set aside, and the bad rows by kind and column."""
    return {
        "rows": {
            "read": counters.get("rows_read", 0),
            "good": counters.get(f"rows_{transforms.GOOD}", 0),
            "bad": counters.get("bad_rows", 0),
        },
        "bad_rows": counters_lib.bad_row_reasons(counters),
    }


def _artifacts(layout: Layout, counters: dict) -> dict:
    """What the run wrote: statistics, anomalies and, when rows were set aside, the quarantine."""
    artifacts = {"stats": layout.stats("data"), "anomalies": layout.anomalies("data")}
    if counters.get("bad_rows", 0):  # No bad rows, no quarantine file (WriteQuarantine).
        artifacts["bad_rows"] = layout.path("bad_rows", "bad_rows") + "*"
    return artifacts
