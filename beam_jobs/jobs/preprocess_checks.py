"""Stage 3 of preprocessing: each split's statistics against the schema, eval against train and
train against the baseline (tf_cartola.validate.drift), and the input's own findings (quarantine,
duplicate ids).
"""

import logging
import typing

from apache_beam.io.filesystems import FileSystems

from beam_jobs.shared import counters as counters_lib
from beam_jobs.shared.outputs import Layout
from tf_cartola.common import files
from tf_cartola.contract import split

log = logging.getLogger(__name__)


def validate_splits(
    cfg, layout: Layout, counters: dict, infer: bool, baseline=None
) -> typing.Tuple[typing.List[tuple], dict]:
    """Validates each split against the schema, and compares eval with train and train with the
    baseline.

    Args:
      cfg: the preprocess section of the config (schema, drift settings, accepted features).
      layout: where the run's statistics and anomalies are.
      counters: the pipeline's counters (bad rows, duplicate ids).
      infer: also infer a schema from the train statistics, written for review.
      baseline: a tf_cartola.validate.baseline.Baseline, or None.

    Returns:
      (anomaly rows, {comparison: drift checks as JSON}).
    """
    import tensorflow_data_validation as tfdv

    from tf_cartola.validate import validation

    stats = {w: tfdv.load_stats_binary(layout.stats(w, "binpb")) for w in split.SPLITS}
    for which, s in stats.items():
        tfdv.write_stats_text(s, layout.stats(which))
    schema = _schema(cfg, layout, stats["train"], infer)
    anomalies = {w: validation.validate(s, schema) for w, s in stats.items()}
    drifts = _drift(stats, baseline, cfg.drift_false_alarm_rate, anomalies)
    anomalies["input"] = counters_lib.input_anomalies(
        counters, layout.path("bad_rows"), cfg.max_bad_row_fraction
    )
    duplicates = counters_lib.duplicate_ids(counters)
    validation.merge(
        anomalies["input"],
        validation.data_anomalies(
            stats["train"], counters.get("rows_read", 0), duplicates["ids"], duplicates["rows"]
        ),
    )
    files.makedirs(layout.path("anomalies"))
    for which, a in anomalies.items():
        tfdv.write_anomalies_text(a, layout.anomalies(which))
    return validation.anomaly_rows(anomalies), drifts


def _schema(cfg, layout: Layout, train_stats, infer: bool):
    """The schema the splits are validated against (cfg.schema; the inferred one only when there
    is none, with --infer_schema), written into the run. With `infer`, the schema inferred from
    the train statistics is written too, for review.
    """
    import tensorflow_data_validation as tfdv

    from tf_cartola.validate import validation

    inferred = validation.infer_schema(train_stats) if infer else None
    if infer:
        tfdv.write_schema_text(inferred, layout.path("schema_inferred.pbtxt"))
        log.info("wrote an inferred schema for review to %s", layout.path("schema_inferred.pbtxt"))
    if FileSystems.exists(cfg.schema):
        schema = tfdv.load_schema_text(cfg.schema)
    else:  # Only with --infer_schema (checked before the job started).
        log.warning(
            "no schema at %s: validating against the inferred one, which cannot find anomalies",
            cfg.schema,
        )
        schema = inferred
    tfdv.write_schema_text(schema, layout.path("schema.pbtxt"))
    return schema


def _drift(stats: dict, baseline, false_alarm_rate: float, anomalies: dict) -> dict:
    """Eval compared with train, and train with the baseline (if any), sharing the run's
    false-alarm budget; drift is merged into the split's anomalies. Returns {comparison: drift
    checks as JSON}.
    """
    from tf_cartola.validate import drift, validation

    comparisons = {"eval vs train": ("eval", stats["train"], "the train split")}
    if baseline is not None:
        comparisons["train vs baseline"] = ("train", baseline.stats, baseline.description)
    alpha = false_alarm_rate / len(comparisons)
    drifts = {}
    for name, (which, reference, reference_name) in comparisons.items():
        checks = drift.compare(reference, stats[which], alpha)
        validation.merge(anomalies[which], validation.drift_anomalies(checks, reference_name))
        drifts[name] = drift.to_json(checks)
    return drifts
