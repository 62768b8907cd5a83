"""The counters the jobs' transforms keep, read back from a finished pipeline.

Beam names counters by strings: a bad-row counter's name carries its kind and column
('bad_rows:KIND:COLUMN'), written by `bad_counter_name` and read back by `bad_row_counts`.
"""

import typing

from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "cartola.preprocess"
_BAD_PREFIX = "bad_rows:"


def bad_counter_name(kind: str, column: typing.Optional[str]) -> str:
    """The counter that counts bad rows of one kind and column: 'bad_rows:KIND:COLUMN'."""
    return f"{_BAD_PREFIX}{kind}:{column or ''}"


def bad_row_counts(counters: typing.Mapping[str, int]) -> typing.Dict[typing.Tuple[str, str], int]:
    """{(kind, column or ""): rows} from the job's counters (Beam counters are named by
    strings).
    """
    return {
        tuple(name[len(_BAD_PREFIX) :].split(":", 1)): n
        for name, n in counters.items()
        if name.startswith(_BAD_PREFIX) and n
    }


def bad_row_reasons(counters: typing.Mapping[str, int]) -> typing.Dict[str, int]:
    """Bad rows per "KIND:column", as manifests record them."""
    return {f"{kind}:{column}": n for (kind, column), n in bad_row_counts(counters).items()}


def duplicate_ids(counters: typing.Mapping[str, int]) -> typing.Dict[str, int]:
    """{"ids": ids in more than one row, "rows": the rows they are in}, as manifests record them
    (transforms.CountDuplicateIds' counters).
    """
    return {"ids": counters.get("duplicate_ids", 0), "rows": counters.get("duplicate_id_rows", 0)}


def runner_counters(result) -> list:
    """Every counter a finished pipeline reports: the runner's own (per-step execution times) as
    well as the user counters where the runner offers them (the direct runner's
    `monitoring_metrics()`), else the runner-independent `metrics()`, which is all a portable or
    Dataflow result has.
    """
    metrics = getattr(result, "monitoring_metrics", result.metrics)()
    return metrics.query()["counters"]


def of(result) -> dict:
    """The counters (namespace NAMESPACE) of a finished pipeline, by name."""
    out = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + (c.committed or 0)
    return out


def input_anomalies(counters: dict, quarantine: str, max_bad_row_fraction: float):
    """The quarantine's anomalies (none while the bad rows' share is tolerated), and an empty
    input's.

    Args:
      counters: the pipeline's counters.
      quarantine: the quarantine's folder, named in the anomaly.
      max_bad_row_fraction: the share of bad rows tolerated.
    """
    from tf_cartola.validate import validation

    bad = bad_row_counts(counters)
    rows_read = counters.get("rows_read", 0)
    out = validation.bad_row_anomalies(bad, rows_read, quarantine)
    if rows_read and counters.get("bad_rows", 0) / rows_read <= max_bad_row_fraction:
        out.Clear()  # Tolerated: the quarantine still holds every bad row.
    return out
