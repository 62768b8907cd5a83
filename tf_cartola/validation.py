"""Schema, statistics and anomalies: TFDV validation plus the quarantine's findings, as a table."""

import typing

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from tf_cartola import features as F

TRAINING, SERVING = "TRAINING", "SERVING"


def infer_schema(stats: statistics_pb2.DatasetFeatureStatisticsList) -> schema_pb2.Schema:
    """A fresh schema from statistics, for review; label and id are left out of SERVING."""
    schema = tfdv.infer_schema(stats)
    schema.default_environment[:] = [TRAINING, SERVING]
    for name in (F.LABEL_KEY, F.ID_KEY):
        feature = tfdv.get_feature(schema, name)
        feature.not_in_environment[:] = [SERVING]
    return schema


def _bounded(feature: schema_pb2.Feature) -> bool:
    domain = feature.WhichOneof("domain_info")
    if domain in ("int_domain", "float_domain"):
        d = getattr(feature, domain)
        return d.HasField("min") and d.HasField("max")
    return domain == "bool_domain"


def with_drift_comparators(schema: schema_pb2.Schema, threshold: float) -> schema_pb2.Schema:
    """A copy of `schema` comparing bounded numeric features' distributions by Jensen-Shannon divergence.

    TFDV ignores `infinity_norm` for numeric features, so JSD is the comparator. Its
    equal-width histograms are dominated by the extreme values of unbounded, long-tailed
    columns (two samples of one distribution differ by JSD 0.1-0.4), so only features
    with a bounded domain in the schema are compared.
    """
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    for feature in out.feature:
        if feature.name in F.NUMERIC_FEATURES and _bounded(feature):
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    return out


def validate(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    previous: typing.Optional[statistics_pb2.DatasetFeatureStatisticsList] = None,
    environment: str = TRAINING,
) -> anomalies_pb2.Anomalies:
    """TFDV validation of one split; with `previous`, also its drift from those statistics."""
    return tfdv.validate_statistics(stats, schema, previous_statistics=previous, environment=environment)


def bad_row_anomalies(bad_counts: typing.Mapping[typing.Tuple[str, str], int], rows_read: int,
                      quarantine: str) -> anomalies_pb2.Anomalies:
    """Anomalies describing the rows the reader set aside.

    Args:
      bad_counts: {(kind, column or ""): rows} from the reader's counters.
      rows_read: every data row read, good or bad.
      quarantine: where the bad rows were written.

    Returns:
      One AnomalyInfo per column (rows with the wrong field count go to the dataset).
    """
    out = anomalies_pb2.Anomalies()
    for (kind, column), count in sorted(bad_counts.items()):
        info = out.anomaly_info[column] if column else out.dataset_anomaly_info
        reason = info.reason.add()
        reason.type = getattr(anomalies_pb2.AnomalyInfo, kind, anomalies_pb2.AnomalyInfo.UNKNOWN_TYPE)
        reason.short_description = f"{count} malformed row(s) quarantined"
        reason.description = (
            f"{count} of {rows_read} rows ({kind}) could not be typed and were set aside in {quarantine}."
        )
        info.severity = anomalies_pb2.AnomalyInfo.ERROR
        info.description = reason.description
        info.short_description = reason.short_description
    return out


def anomaly_rows(anomalies_by_name: typing.Mapping[str, anomalies_pb2.Anomalies]) -> typing.List[tuple]:
    """(where, feature, anomaly kind, description) for every anomaly, sorted."""
    rows = []
    for where, anomalies in anomalies_by_name.items():
        for feature, info in anomalies.anomaly_info.items():
            for reason in info.reason:
                kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
                rows.append((where, feature, kind, reason.description or reason.short_description))
        for reason in anomalies.dataset_anomaly_info.reason:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            rows.append((where, "(dataset)", kind, reason.description or reason.short_description))
    return sorted(rows)


def format_table(rows: typing.Sequence[tuple]) -> str:
    """A plain-text table of anomaly rows with a header, columns padded to fit."""
    header = ("split", "feature", "anomaly kind", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r[:3], widths)) + "  " + str(r[3]))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
