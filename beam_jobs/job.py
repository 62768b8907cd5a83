"""The preprocessing job as a library: `preprocess(config, options) -> manifest` (CLI: beam_jobs.preprocess).

Stages: (1) check and hash the inputs; (2) one Beam pipeline, one read of the
input: type and split the rows as Arrow record batches (bad rows quarantined),
write the raw splits, TFDV statistics per split, tf.Transform analyze (train) and
transform (train, eval); (3) validation against the curated schema, and drift
of eval from train and of train from the baseline (tf_cartola.drift); (4) the
manifest, and the transform outputs published only if validation passed.
"""

import contextlib
import dataclasses
import hashlib
import logging
import time
import typing

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import transforms
from tf_cartola import config as config_lib
from tf_cartola import features as F
from tf_cartola import files, split, timing
from tf_cartola.data import csv_reader, postgres

log = logging.getLogger(__name__)


class AnomaliesFound(RuntimeError):
    """The data did not pass validation; the message is the anomaly table, `manifest` the run's manifest."""

    def __init__(self, message: str, manifest: typing.Optional[dict] = None):
        super().__init__(message)
        self.manifest = manifest


@dataclasses.dataclass
class Layout:
    """Where every artifact of one run lives under the output directory."""

    root: str

    def path(self, *parts: str) -> str:
        return FileSystems.join(self.root, *parts)

    def raw(self, which: str) -> str:
        return self.path("raw", which, "data")

    def transformed(self, which: str) -> str:
        return self.path("transformed", which, "data")

    def stats(self, which: str, ext: str = "pbtxt") -> str:
        return self.path("stats", f"{which}.{ext}")

    def anomalies(self, which: str) -> str:
        return self.path("anomalies", f"{which}.pbtxt")


def _versions() -> dict:
    from importlib import metadata

    names = ("tensorflow", "tensorflow-transform", "tensorflow-data-validation", "tfx-bsl", "apache-beam")
    return {n: metadata.version(n) for n in names}


# Lines of one file are read in ranges of about this size, so that workers share a big file.
RANGE_BYTES = 16 << 20


CSV, PREDICTION_LOG = "csv", "prediction_log"


def shown(location: str) -> str:
    """An input as logs and manifests show it: a database URL without its password."""
    return postgres.masked(location) if postgres.is_database(location) else location


@dataclasses.dataclass(frozen=True)
class DatabaseInput:
    """What to read from a PostgreSQL input: a table or a query, in how many id ranges."""

    table: str = ""
    query: str = ""
    partitions: int = 1


@contextlib.contextmanager
def open_inputs(location: str, fmt: str = CSV, required: typing.Sequence[str] = F.CSV_COLUMNS,
                database: typing.Optional[DatabaseInput] = None):
    """(inputs as the manifest records them, the parts the pipeline reads), valid inside the block.

    Files: `describe_inputs`. A database: one snapshot exported for the whole block, its
    partitions, and the query, row count and fingerprint the database computed.
    """
    if not postgres.is_database(location):
        yield describe_inputs(location, fmt, required)
        return
    database = database or DatabaseInput()
    with postgres.snapshot(location, database.table or None, database.query or None, database.partitions,
                           required) as (parts, description):
        yield [description], parts


def describe_inputs(pattern: str, fmt: str = CSV, required: typing.Sequence[str] = F.CSV_COLUMNS
                    ) -> typing.Tuple[typing.List[dict], typing.List[csv_reader.Range]]:
    """Path, size and content fingerprint of every file matching `pattern`, and the ranges the pipeline
    reads. A CSV's header is checked to hold the `required` columns.

    A local file is read once here: its sha256, and for an uncompressed CSV the line ranges
    that let workers share it. A file on an object store (gs://, s3://, ...) is not
    downloaded: its fingerprint is the store's checksum (`FileSystems.checksum`: CRC32C on
    GCS, the ETag on S3) and it is one range. A compressed file cannot be entered mid-way,
    nor a file of records: each is one range too.

    Raises:
      FileNotFoundError: nothing matches.
      rows.InputError: a CSV is empty or its header lacks required columns.
    """
    matched = FileSystems.match([pattern])[0].metadata_list
    if not matched:
        raise FileNotFoundError(f"no input file matches {pattern!r}")
    inputs, ranges = [], []
    for meta in sorted(matched, key=lambda m: m.path):
        if fmt == CSV:
            with FileSystems.open(meta.path) as f:
                csv_reader.read_header(f, meta.path, required)
        if FileSystems.get_scheme(meta.path):  # An object store (gs://, s3://, ...); local paths have none.
            checksum = FileSystems.checksum(meta.path)
            inputs.append({"path": meta.path, "bytes": meta.size_in_bytes, "fingerprint": f"checksum:{checksum}"})
            ranges.append(csv_reader.Range(meta.path))
            continue
        digest = hashlib.sha256()
        with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            if fmt == CSV and CompressionTypes.detect_compression_type(meta.path) == CompressionTypes.UNCOMPRESSED:
                ranges += csv_reader.plan_ranges(f, meta.path, RANGE_BYTES, digest)
            else:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
                ranges.append(csv_reader.Range(meta.path))
        inputs.append({"path": meta.path, "bytes": meta.size_in_bytes, "fingerprint": f"sha256:{digest.hexdigest()}"})
    return inputs, ranges


def counters(result) -> dict:
    """The job's counters (namespace transforms.NAMESPACE) of a finished pipeline, by name."""
    out = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + (c.committed or 0)
    return out


def _raw_schema():
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_from_feature_spec(F.raw_feature_spec())


# Which stage each top-level step of the pipeline belongs to, for the manifest's seconds.
_STAGE_OF_STEP = {
    "ReadAndSplitCsv": "read_split", "WriteRawData": "read_split", "WriteQuarantine": "read_split",
    "CountDuplicateIds": "read_split",
    "GenerateStatistics": "statistics", "WriteStatistics": "statistics",
    "AnalyzeAndTransformDataset": "transform", "TransformDataset": "transform",
    "WriteTransformedData": "transform", "WriteTransformFn": "transform", "WriteRawMetadata": "transform",
}


def _stage_seconds(result) -> dict:
    """Busy seconds per stage inside the pipeline, from the runner's per-step execution times."""
    seconds = {}
    for counter in result.monitoring_metrics().query()["counters"]:
        if not counter.key.metric.name.endswith("ptransform_execution_time:total_msecs:v1") or not counter.key.step:
            continue
        stage = _STAGE_OF_STEP.get(counter.key.step.split("/")[0].split("[")[0])
        if stage:
            seconds[stage] = seconds.get(stage, 0.0) + (counter.committed or 0) / 1000
    return {k: round(v, 2) for k, v in seconds.items()}


def build_pipeline(p: beam.Pipeline, cfg, layout: Layout, parts: typing.Sequence) -> None:
    """Adds the job's steps to `p` (inside a `tft_beam.Context`): one read of the input types and splits
    the rows, writes the raw splits and the quarantine, computes TFDV statistics per split, analyzes train
    and transforms both. Nothing is read or written until the pipeline runs."""
    import tensorflow_data_validation as tfdv
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata
    from tfx_bsl.public import tfxio
    from tfx_bsl.tfxio import tensor_representation_util

    from tf_cartola import drift
    from tf_cartola.preprocessing import preprocessing_fn

    raw_schema = _raw_schema()
    adapter = tfxio.TensorAdapterConfig(
        csv_reader.arrow_schema(), tensor_representation_util.InferTensorRepresentationsFromSchema(raw_schema)
    )
    if postgres.is_database(cfg.input):
        read = postgres.read_partition
    else:
        read = transforms.read_csv_range
    parsed = p | "ReadAndSplitCsv" >> transforms.ReadAndSplitCsv(parts, cfg.split_ratio, read)
    _ = parsed[transforms.BAD] | "WriteQuarantine" >> transforms.WriteQuarantine(layout.path("bad_rows", "bad_rows"))
    _ = parsed[transforms.IDS] | "CountDuplicateIds" >> transforms.CountDuplicateIds()
    for which in split.SPLITS:
        _ = parsed[which] | f"WriteRawData[{which}]" >> transforms.WriteExamples(layout.raw(which), raw_schema)
        _ = (
            parsed[which]
            | f"GenerateStatistics[{which}]" >> tfdv.GenerateStatistics(drift.stats_options())
            | f"WriteStatistics[{which}]" >> tfdv.WriteStatisticsToBinaryFile(layout.stats(which, "binpb"))
        )
    (train_out, out_metadata), transform_fn = (
        parsed["train"],
        adapter,
    ) | "AnalyzeAndTransformDataset" >> tft_beam.AnalyzeAndTransformDataset(preprocessing_fn,
                                                                            output_record_batches=True)
    eval_out, _ = ((parsed["eval"], adapter), transform_fn) | "TransformDataset[eval]" >> tft_beam.TransformDataset(
        output_record_batches=True
    )
    for which, data in (("train", train_out), ("eval", eval_out)):
        _ = data | f"WriteTransformedData[{which}]" >> transforms.WriteExamples(
            layout.transformed(which), out_metadata.schema
        )
    transform_dir = layout.path("transform")
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_dir)
    # Without TFX nothing else writes the raw metadata that TFTransformOutput.raw_feature_spec() reads.
    _ = dataset_metadata.DatasetMetadata(raw_schema) | "WriteRawMetadata" >> tft_beam.WriteMetadata(
        FileSystems.join(transform_dir, tft.TFTransformOutput.RAW_METADATA_DIR), p
    )


def run_pipeline(cfg, layout: Layout, parts: typing.Sequence, options: PipelineOptions,
                 temp_dir: str) -> typing.Tuple[dict, dict]:
    """Runs `build_pipeline` (after clearing a previous run's transform outputs).

    Returns:
      (counters, busy seconds per stage).
    """
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam

    for stale in (layout.path("transform"), layout.path("transformed")):  # A rerun into the same output_dir.
        if tf.io.gfile.exists(stale):
            tf.io.gfile.rmtree(stale)
    with beam.Pipeline(options=options) as p, tft_beam.Context(temp_dir=temp_dir):
        build_pipeline(p, cfg, layout, parts)
    return counters(p.result), _stage_seconds(p.result)


def input_anomalies(counters: dict, layout: Layout, max_bad_row_fraction: float):
    """The quarantine's anomalies (none while the bad rows' share is tolerated), and an empty input's."""
    from tf_cartola import validation

    bad = transforms.bad_row_counts(counters)
    rows_read = counters.get("rows_read", 0)
    out = validation.bad_row_anomalies(bad, rows_read, layout.path("bad_rows"))
    if rows_read and counters.get("bad_rows", 0) / rows_read <= max_bad_row_fraction:
        out.Clear()  # Tolerated: the quarantine still holds every bad row.
    return out


def stage_validate(cfg, layout: Layout, counters: dict, infer: bool,
                   baseline=None) -> typing.Tuple[typing.List[tuple], dict]:
    """Validates each split against the schema, and compares eval with train and train with the baseline.

    Args:
      baseline: a tf_cartola.baseline.Baseline, or None.

    Returns:
      (anomaly rows, {comparison: drift checks as JSON}).
    """
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    from tf_cartola import drift, validation

    stats = {w: tfdv.load_stats_binary(layout.stats(w, "binpb")) for w in split.SPLITS}
    for which, s in stats.items():
        tfdv.write_stats_text(s, layout.stats(which))
    if infer:
        inferred = validation.infer_schema(stats["train"])
        tfdv.write_schema_text(inferred, layout.path("schema_inferred.pbtxt"))
        log.info("wrote an inferred schema for review to %s", layout.path("schema_inferred.pbtxt"))
    if FileSystems.exists(cfg.schema):
        schema = tfdv.load_schema_text(cfg.schema)
    else:  # Only with --infer_schema (checked before the job started).
        log.warning("no schema at %s: validating against the inferred one, which cannot find anomalies", cfg.schema)
        schema = inferred
    tfdv.write_schema_text(schema, layout.path("schema.pbtxt"))
    anomalies = {w: validation.validate(s, schema) for w, s in stats.items()}
    # The run's false-alarm budget is shared by its comparisons.
    comparisons = {"eval vs train": ("eval", stats["train"], "the train split")}
    if baseline is not None:
        comparisons["train vs baseline"] = ("train", baseline.stats, baseline.description)
    alpha = cfg.drift_false_alarm_rate / len(comparisons)
    drifts = {}
    for name, (which, reference, reference_name) in comparisons.items():
        checks = drift.compare(reference, stats[which], alpha)
        validation.merge(anomalies[which], validation.drift_anomalies(checks, reference_name))
        drifts[name] = drift.to_json(checks)
    rows_read = counters.get("rows_read", 0)
    anomalies["input"] = input_anomalies(counters, layout, cfg.max_bad_row_fraction)
    validation.merge(anomalies["input"], validation.data_anomalies(
        stats["train"], rows_read, counters.get("duplicate_ids", 0), counters.get("duplicate_id_rows", 0)))
    tf.io.gfile.makedirs(layout.path("anomalies"))
    for which, a in anomalies.items():
        tfdv.write_anomalies_text(a, layout.anomalies(which))
    return validation.anomaly_rows(anomalies), drifts


_STAGES = 4


def _timed(seconds: dict, number: int, stage: str, description: str, fn, *args):
    log.info("stage %d/%d %s: %s", number, _STAGES, stage, description)
    with timing.stage(seconds, stage):
        out = fn(*args)
    log.info("stage %d/%d %s: done in %.1f s", number, _STAGES, stage, seconds[stage])
    return out


def resolve_baseline(cfg: config_lib.PreprocessConfig, serving: config_lib.ServingConfig):
    """The baseline `cfg.baseline` names: a directory, the latest served version ("served"; None when
    nothing is served yet) or None ("none").

    Raises:
      baseline.BaselineError: a directory that holds no baseline.
    """
    from tf_cartola import baseline

    if cfg.baseline == "none":
        return None
    if cfg.baseline == "served":
        return baseline.latest_served(serving.serving_dir, serving.model_name)
    return baseline.load(cfg.baseline)


def preprocess(cfg: config_lib.PreprocessConfig, options: PipelineOptions, infer_schema: bool = False,
               config: typing.Optional[config_lib.Config] = None) -> dict:
    """Runs every stage and writes `manifest.json`.

    The input is read once: one Beam pipeline types, splits, writes, computes statistics
    and fits and applies the transform. The transform outputs are published (listed in
    the manifest and kept) only when validation passes.

    Args:
      cfg: the preprocess section of the config (input, output_dir, schema, ...).
      options: Beam pipeline options shared by every stage.
      infer_schema: also write a schema inferred from the train statistics, for review.
      config: the whole resolved config, recorded in the manifest; its serving section
        locates the served baseline.

    Returns:
      The manifest.

    Raises:
      AnomaliesFound: validation failed and `cfg.fail_on_anomalies`; statistics,
        anomalies and the manifest are written and the transform outputs removed.
    """
    import tensorflow as tf

    if not infer_schema and not FileSystems.exists(cfg.schema):  # Fail before any work is done.
        raise FileNotFoundError(f"schema {cfg.schema!r} not found (use --infer_schema to bootstrap one)")
    started = time.perf_counter()
    baseline = resolve_baseline(cfg, (config or config_lib.Config()).serving)
    layout = Layout(cfg.output_dir)
    seconds = {}
    temp_dir = layout.path("tmp")
    with contextlib.ExitStack() as held:  # A database snapshot stays open while the pipeline reads it.
        inputs, parts = _timed(seconds, 1, "hash_inputs", f"checking and fingerprinting {shown(cfg.input)}",
                               held.enter_context, open_inputs(cfg.input, CSV, F.CSV_COLUMNS,
                                                               DatabaseInput(cfg.table, cfg.query, cfg.partitions)))
        counters, busy = _timed(
            seconds, 2, "pipeline",
            f"read, type and split {len(inputs)} input(s) in {len(parts)} part(s); statistics; tf.Transform",
            run_pipeline, cfg, layout, parts, options, temp_dir,
        )
    tf.io.gfile.rmtree(temp_dir)  # tf.Transform's scratch space; the outputs are elsewhere.
    seconds.update(busy)
    bad = transforms.bad_row_counts(counters)
    log.info("rows: %s", {k: v for k, v in counters.items() if ":" not in k})
    against = cfg.schema + (f" and {baseline.description}" if baseline else "")
    anomaly_rows, drifts = _timed(seconds, 3, "validate", f"against {against}", stage_validate, cfg, layout,
                                  counters, infer_schema, baseline)
    manifest = {
        "config": _shown_config(config, cfg),
        "inputs": inputs,
        "rows": {
            "read": counters.get("rows_read", 0),
            **{w: counters.get(f"rows_{w}", 0) for w in split.SPLITS},
            "bad": counters.get("bad_rows", 0),
        },
        "bad_rows": {f"{kind}:{column}": n for (kind, column), n in bad.items()},
        "duplicate_ids": {"ids": counters.get("duplicate_ids", 0), "rows": counters.get("duplicate_id_rows", 0)},
        "anomalies": [dict(zip(("split", "feature", "kind", "description"), r)) for r in anomaly_rows],
        "valid": not anomaly_rows,
        "baseline": baseline.summary() if baseline else None,
        "drift": drifts,
        "seconds": seconds,
        "versions": _versions(),
        "artifacts": {
            "schema": layout.path("schema.pbtxt"),
            **{f"raw_{w}": layout.raw(w) + "*" for w in split.SPLITS},
            **{f"stats_{w}": layout.stats(w) for w in split.SPLITS},
            **{f"anomalies_{w}": layout.anomalies(w) for w in (*split.SPLITS, "input")},
            "bad_rows": layout.path("bad_rows", "bad_rows") + "*",
        },
    }
    if infer_schema:
        manifest["artifacts"]["schema_inferred"] = layout.path("schema_inferred.pbtxt")
    log.info("stage 4/%d publish: writing the manifest", _STAGES)
    if anomaly_rows and cfg.fail_on_anomalies:
        for unpublished in (layout.path("transform"), layout.path("transformed")):
            tf.io.gfile.rmtree(unpublished)  # Nothing trains on data that failed validation.
        manifest["artifacts"]["report"] = layout.path("report.html")
        _write_manifest(layout, manifest, started)
        from tf_cartola import report
        from tf_cartola.validation import format_table

        report.write_report(layout.path("report.html"), cfg.output_dir)  # Something to open and share.
        raise AnomaliesFound(format_table(anomaly_rows) + f"\nreport: {layout.path('report.html')}", manifest)
    manifest["artifacts"].update(
        {
            "transform": layout.path("transform"),
            **{f"transformed_{w}": layout.transformed(w) + "*" for w in split.SPLITS},
        }
    )
    _write_manifest(layout, manifest, started)
    return manifest


def _shown_config(config: typing.Optional[config_lib.Config], cfg: config_lib.PreprocessConfig) -> dict:
    out = dataclasses.asdict(config) if config else {"preprocess": dataclasses.asdict(cfg)}
    out["preprocess"]["input"] = shown(out["preprocess"]["input"])  # Never a password in a manifest.
    return out


def _write_manifest(layout: Layout, manifest: dict, started: float) -> None:
    manifest["seconds"]["total"] = round(time.perf_counter() - started, 2)
    files.write_json(layout.path("manifest.json"), manifest)
