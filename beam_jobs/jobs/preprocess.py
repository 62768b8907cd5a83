"""The preprocessing job as a library: `preprocess(config, options) -> Manifest` (CLI:
beam_jobs.preprocess).

Stages: (1) check and hash the inputs; (2) one Beam pipeline, one read of the input: type and
split the rows as Arrow record batches (bad rows quarantined), write the raw splits (Parquet),
TFDV statistics per split, tf.Transform analyze (train) and transform (the raw splits read back);
(3) validation against the curated schema, and drift of eval from train and of train from the
baseline (tf_cartola.validate.drift); (4) the manifest, and the transform outputs published only
if validation passed.
"""

import contextlib
import dataclasses
import logging
import time
import typing

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs.jobs.preprocess_checks import validate_splits
from beam_jobs.jobs.preprocess_pipeline import run_pipeline
from beam_jobs.shared import counters as counters_lib
from beam_jobs.shared import inputs as inputs_lib
from beam_jobs.shared import workers
from beam_jobs.shared.outputs import AnomaliesFound, Layout
from tf_cartola.common import files, timing
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import features as F
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.contract import split
from tf_cartola.read import splits
from tf_cartola.validate import baseline as baseline_lib
from tf_cartola.validate import validation

log = logging.getLogger(__name__)


def _versions() -> dict:
    from importlib import metadata

    names = (
        "tensorflow",
        "tensorflow-transform",
        "tensorflow-data-validation",
        "tfx-bsl",
        "apache-beam",
    )
    return {n: metadata.version(n) for n in names}


_STAGES = 4


def _timed(seconds: dict, number: int, stage: str, description: str, fn, *args):
    log.info("stage %d/%d %s: %s", number, _STAGES, stage, description)
    with timing.stage(seconds, stage):
        out = fn(*args)
    log.info("stage %d/%d %s: done in %.1f s", number, _STAGES, stage, seconds[stage])
    return out


def _served(serving):
    from tf_cartola.export import served as served_lib

    return served_lib.served(serving.serving_dir, serving.model_name, serving.model_config_file)


def preprocess(
    cfg: config_lib.PreprocessConfig,
    options: PipelineOptions,
    infer_schema: bool = False,
    config: typing.Optional[config_lib.Config] = None,
) -> manifest_lib.Manifest:
    """Runs every stage and writes `manifest.json`.

    One Beam pipeline reads the input once: it types, splits, writes, computes statistics and
    fits and applies the transform, whose outputs are kept only when validation passes.

    Args:
      cfg: the preprocess section of the config (input, output_dir, schema, ...).
      options: Beam pipeline options shared by every stage.
      infer_schema: also write a schema inferred from the train statistics, for review.
      config: the whole config, recorded; its serving section locates the served baseline.

    Returns:
      The run's `Manifest`, also written as `manifest.json` in the output directory.

    Raises:
      AnomaliesFound: validation failed and `cfg.fail_on_anomalies`; statistics, anomalies and
        the manifest are written, the transform outputs removed; it carries the anomaly table
        and the `Manifest`.
      FileNotFoundError: the schema or an input does not exist (before any work).
    """
    if not infer_schema and not FileSystems.exists(cfg.schema):  # Fail before any work is done.
        raise FileNotFoundError(f"no schema {cfg.schema!r} (use --infer_schema to make one)")
    started, seconds = time.perf_counter(), {}
    baseline, missing = _baseline(cfg, (config or config_lib.Config()).serving)
    layout = Layout(cfg.output_dir)
    runner = workers.runner(options, [cfg.input, layout.root])  # Before anything is deleted.
    if layout.clear():
        log.info("cleared the earlier run's outputs in %s", layout.root)
    inputs, counters, reported = _read_and_transform(cfg, layout, options, seconds)
    log.info("rows: %s", {k: v for k, v in counters.items() if ":" not in k})
    found, failing = _validated(cfg, layout, counters, infer_schema, baseline, seconds)
    published = not (failing and cfg.fail_on_anomalies)
    if not published:  # Nothing trains on data that failed validation.
        files.rmtree(layout.path("transform"))
        files.rmtree(layout.path("transformed"))
    log.info("stage 4/%d publish: writing the manifest", _STAGES)
    seconds["total"] = round(time.perf_counter() - started, 2)
    manifest = manifest_lib.Manifest(
        config=_shown_config(config, cfg),
        inputs=inputs,
        **_counted(counters),
        **found,
        baseline=baseline.summary() if baseline else None,
        baseline_missing=missing,
        seconds=seconds,
        runner={**runner, "not_reported": [] if reported else ["stage seconds"]},
        versions=_versions(),
        artifacts=_artifacts(layout, counters, infer_schema, published),
        dir=cfg.output_dir,
    )
    files.write_json(layout.path(manifest_lib.FILE), manifest.to_json())
    if not published:
        raise AnomaliesFound(validation.format_table(failing), manifest)
    return manifest


def _validated(cfg, layout: Layout, counters: dict, infer_schema: bool, baseline, seconds: dict):
    """Stage 3: the splits validated (validate_splits). Returns (the manifest's anomalies, valid,
    accepted and drift; the failing anomaly rows).
    """
    against = cfg.schema + (f" and {baseline.description}" if baseline else "")
    checks = (cfg, layout, counters, infer_schema, baseline)
    anomaly_rows, drifts = _timed(
        seconds, 3, "validate", f"against {against}", validate_splits, *checks
    )
    failing, accepted = validation.split_accepted(anomaly_rows, cfg.accept, cfg.accepted_by)
    # Every anomaly is listed, the accepted ones too; only the others fail the run.
    found = validation.verdict_record(anomaly_rows, failing, accepted)
    return {**found, "drift": drifts}, failing


def _baseline(cfg: config_lib.PreprocessConfig, serving):
    """(the baseline the train split is compared with or None, and why it is missing when the
    config asked for the served one and none carries it, else None).
    """
    baseline = baseline_lib.resolve(cfg.baseline, serving)
    if baseline is not None or cfg.baseline != "served":
        return baseline, None
    missing = (  # Said, not skipped silently: the monthly drift check.
        f"no served version of {serving.model_name} carries a baseline "
        f"({_served(serving).describe()}): the train split is not compared with one (give "
        "--serving_dir or --model_config_file, or --baseline none on a first run)"
    )
    log.warning(missing)
    return None, missing


def _read_and_transform(cfg, layout: Layout, options: PipelineOptions, seconds: dict):
    """Stages 1 and 2: the inputs checked and fingerprinted, then the one pipeline. Returns (the
    inputs, the counters, whether the runner reported its stages' seconds); `seconds` gets every
    stage's.
    """
    temp_dir = layout.path("tmp")
    with contextlib.ExitStack() as held:  # A database snapshot stays open while it is read.
        inputs, parts = _timed(
            seconds,
            1,
            "hash_inputs",
            f"checking and fingerprinting {inputs_lib.shown(cfg.input)}",
            held.enter_context,
            inputs_lib.open_inputs(
                cfg.input,
                inputs_lib.CSV,
                F.CSV_COLUMNS,
                inputs_lib.DatabaseInput(cfg.table, cfg.query, cfg.partitions),
            ),
        )
        counters, stages, reported = _timed(
            seconds,
            2,
            "pipeline",
            f"read, type and split {len(inputs)} input(s) in {len(parts)} part(s); statistics; "
            "tf.Transform",
            run_pipeline,
            cfg,
            layout,
            parts,
            options,
            temp_dir,
        )
    files.rmtree(temp_dir)  # tf.Transform's scratch space; the outputs are elsewhere.
    seconds.update(stages)
    return inputs, counters, reported


def _counted(counters: dict) -> dict:
    """The manifest's counts: rows per split, bad rows per "KIND:column", duplicate ids."""
    return {
        "rows": {
            "read": counters.get("rows_read", 0),
            **{w: counters.get(f"rows_{w}", 0) for w in split.SPLITS},
            "bad": counters.get("bad_rows", 0),
        },
        "bad_rows": counters_lib.bad_row_reasons(counters),
        "duplicate_ids": counters_lib.duplicate_ids(counters),
    }


def _artifacts(layout: Layout, counters: dict, infer_schema: bool, published: bool) -> dict:
    """The run's outputs by name; the transform's only when they are published."""
    artifacts = {
        "schema": layout.path("schema.pbtxt"),
        **{f"raw_{w}": splits.pattern(layout.raw(w)) for w in split.SPLITS},
        **{f"stats_{w}": layout.stats(w) for w in split.SPLITS},
        **{f"anomalies_{w}": layout.anomalies(w) for w in (*split.SPLITS, "input")},
    }
    if counters.get("bad_rows", 0):  # No bad rows, no quarantine file (WriteQuarantine).
        artifacts["bad_rows"] = layout.path("bad_rows", "bad_rows") + "*"
    if infer_schema:
        artifacts["schema_inferred"] = layout.path("schema_inferred.pbtxt")
    if published:
        artifacts["transform"] = layout.path("transform")
        artifacts.update(
            {f"transformed_{w}": splits.pattern(layout.transformed(w)) for w in split.SPLITS}
        )
    return artifacts


def _shown_config(
    config: typing.Optional[config_lib.Config], cfg: config_lib.PreprocessConfig
) -> dict:
    out = dataclasses.asdict(config) if config else {"preprocess": dataclasses.asdict(cfg)}
    # Never a password in a manifest.
    out["preprocess"]["input"] = inputs_lib.shown(out["preprocess"]["input"])
    return out
