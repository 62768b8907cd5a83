"""Schema, statistics and anomalies: TFDV validation plus the quarantine's findings, as a table."""

import typing

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from tf_cartola.contract import features as F
from tf_cartola.contract import rows as rows_lib
from tf_cartola.validate import drift

TRAINING, SERVING = "TRAINING", "SERVING"


def infer_schema(stats: statistics_pb2.DatasetFeatureStatisticsList) -> schema_pb2.Schema:
    """A fresh schema from statistics, for review; label and id are left out of SERVING."""
    import tensorflow_data_validation as tfdv  # Lazy: reading anomalies does not need it.

    schema = tfdv.infer_schema(stats)
    schema.default_environment[:] = [TRAINING, SERVING]
    for name in (F.LABEL_KEY, F.ID_KEY):
        feature = tfdv.get_feature(schema, name)
        feature.not_in_environment[:] = [SERVING]
    return schema


def validate(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    environment: str = TRAINING,
) -> anomalies_pb2.Anomalies:
    """TFDV's schema checks of one dataset (drift is tf_cartola.validate.drift's).

    Args:
      stats: TFDV statistics of one dataset.
      schema: the schema to check them against.
      environment: TRAINING or SERVING (the label is not expected when serving).
    """
    import tensorflow_data_validation as tfdv

    return tfdv.validate_statistics(stats, schema, environment=environment)


def merge(into: anomalies_pb2.Anomalies, other: anomalies_pb2.Anomalies) -> None:
    """Adds `other`'s anomalies to `into`, keeping both when they name the same feature (a proto
    merge would replace the first).
    """
    for feature, info in other.anomaly_info.items():
        if feature in into.anomaly_info:
            into.anomaly_info[feature].reason.extend(info.reason)
        else:
            into.anomaly_info[feature].CopyFrom(info)
    into.dataset_anomaly_info.reason.extend(other.dataset_anomaly_info.reason)
    if other.dataset_anomaly_info.reason:
        into.dataset_anomaly_info.severity = anomalies_pb2.AnomalyInfo.ERROR


def only_features(
    schema: schema_pb2.Schema, names: typing.Sequence[str], environment: str
) -> schema_pb2.Schema:
    """A copy of `schema` in which features outside `names` are left out of `environment` (a
    model's requests carry only the raw columns it uses).

    Args:
      schema: the full schema.
      names: the raw features to keep checking.
      environment: the environment the others are left out of.
    """
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    for feature in out.feature:
        if feature.name not in names and environment not in feature.not_in_environment:
            feature.not_in_environment.append(environment)
    return out


def in_environment(
    stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema, environment: str
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A copy of `stats` without the features the schema leaves out of `environment` (e.g. the
    label and the id when serving data happens to carry them: TFDV would call them new columns).

    Args:
      stats: TFDV statistics of one dataset.
      schema: the schema whose `not_in_environment` lists are applied.
      environment: TRAINING or SERVING.
    """
    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.CopyFrom(stats)
    excluded = {f.name for f in schema.feature if environment in f.not_in_environment}
    for dataset in out.datasets:
        kept = [f for f in dataset.features if drift.feature_name(f) not in excluded]
        del dataset.features[:]
        dataset.features.extend(kept)
    return out


def drift_anomalies(checks, baseline_name: str) -> anomalies_pb2.Anomalies:
    """One anomaly per drift.Check that raised an alarm, naming the feature and what moved."""
    out = anomalies_pb2.Anomalies()
    for check in checks:
        if check.drifted:
            add_anomaly(out, check.feature, check.kind, check.describe(baseline_name))
    return out


def bad_row_anomalies(
    bad_counts: typing.Mapping[typing.Tuple[str, str], int], rows_read: int, quarantine: str
) -> anomalies_pb2.Anomalies:
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
        add_anomaly(
            out,
            column or None,
            kind,
            f"{count} of {rows_read} rows ({kind}) could not be typed and were set aside in "
            f"{quarantine}."
            + (
                f" {rows_lib.ENCODING_HINT[0].upper()}{rows_lib.ENCODING_HINT[1:]}."
                if kind == rows_lib.UNDECODABLE
                else ""
            ),
        )
    return out


def add_anomaly(
    anomalies: anomalies_pb2.Anomalies, feature: typing.Optional[str], kind: str, description: str
) -> None:
    """Adds one ERROR anomaly to a feature (or, with None, to the dataset).

    `kind` is a TFDV AnomalyInfo type name where one fits; any other kind is kept as the
    reason's short description (its type is UNKNOWN_TYPE) and shown as the kind.

    Args:
      anomalies: the Anomalies proto added to.
      feature: the feature's name, or None for the dataset.
      kind: a TFDV AnomalyInfo type name, or a short kind of our own.
      description: what was found, for the anomaly table.
    """
    info = anomalies.anomaly_info[feature] if feature else anomalies.dataset_anomaly_info
    reason = info.reason.add()
    reason.type = getattr(anomalies_pb2.AnomalyInfo, kind, anomalies_pb2.AnomalyInfo.UNKNOWN_TYPE)
    reason.short_description = kind
    reason.description = description
    info.severity = anomalies_pb2.AnomalyInfo.ERROR
    info.description = description
    info.short_description = kind


def data_anomalies(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
    rows_read: int,
    duplicate_ids: int,
    duplicate_rows: int,
) -> anomalies_pb2.Anomalies:
    """What TFDV's schema checks do not see: no data at all, repeated user ids, constant features.

    Args:
      stats: the train split's statistics (constant features are looked for there).
      rows_read: every data row read, good or bad.
      duplicate_ids: how many ids appear more than once.
      duplicate_rows: in how many rows they appear.
    """
    out = anomalies_pb2.Anomalies()
    if rows_read == 0:
        add_anomaly(
            out,
            None,
            "DATASET_LOW_NUM_EXAMPLES",
            "The input holds no data row (empty, or a header alone).",
        )
    if duplicate_ids:
        add_anomaly(
            out,
            F.ID_KEY,
            "DUPLICATE_ID",
            f"{duplicate_ids} {F.ID_KEY} values appear more than once, in "
            f"{duplicate_rows} rows: one user should be one row (both copies went to the same "
            "split).",
        )
    for name, feature in drift.feature_stats(stats).items():
        value = _constant(feature) if name in F.RAW_FEATURES else None
        if value is None:
            continue
        add_anomaly(
            out,
            name,
            "FEATURE_TYPE_LOW_UNIQUE",
            f"Every present value of {name} in the train split is {value}: a constant column "
            "tells nothing.",
        )
    return out


def _constant(feature) -> typing.Optional[str]:
    """The one value every present cell of a feature holds (when more than one is present), as
    text; None when it has more.
    """
    kind = feature.WhichOneof("stats")
    if kind == "num_stats":
        numbers = feature.num_stats
        if numbers.common_stats.num_non_missing > 1 and numbers.min == numbers.max:
            return f"{numbers.min:g}"
    elif kind == "string_stats":
        strings = feature.string_stats
        if strings.common_stats.num_non_missing > 1 and strings.unique == 1:
            return repr(strings.top_values[0].value) if strings.top_values else "one"
    return None


def _kind(reason) -> str:
    if (
        reason.type == anomalies_pb2.AnomalyInfo.UNKNOWN_TYPE
        and reason.short_description.isupper()
    ):
        return reason.short_description  # One of ours (see add_anomaly).
    return anomalies_pb2.AnomalyInfo.Type.Name(reason.type)


def anomaly_rows(
    anomalies_by_name: typing.Mapping[str, anomalies_pb2.Anomalies],
) -> typing.List[tuple]:
    """(where, feature, anomaly kind, description) for every anomaly, sorted."""
    rows = []
    for where, anomalies in anomalies_by_name.items():
        for feature, info in anomalies.anomaly_info.items():
            for reason in info.reason:
                rows.append(
                    (where, feature, _kind(reason), reason.description or reason.short_description)
                )
        for reason in anomalies.dataset_anomaly_info.reason:
            rows.append(
                (where, "(dataset)", _kind(reason), reason.description or reason.short_description)
            )
    return sorted(rows)


ANOMALY_FIELDS = ("split", "feature", "kind", "description")  # Of each `anomaly_rows` tuple.


def as_records(anomaly_rows: typing.Iterable[tuple]) -> typing.List[dict]:
    """Anomaly rows as a manifest records them: a dict of ANOMALY_FIELDS each."""
    return [dict(zip(ANOMALY_FIELDS, r)) for r in anomaly_rows]


def verdict_record(
    listed: typing.Sequence[tuple],
    failing: typing.Sequence[tuple],
    accepted: typing.Optional[dict],
) -> dict:
    """A manifest's verdict: the anomalies it lists, whether the run is valid (none fails it), and
    the record of those accepted on purpose (split_accepted).
    """
    return {"anomalies": as_records(listed), "valid": not failing, "accepted": accepted}


def split_accepted(
    anomaly_rows: typing.Sequence[tuple], accept: typing.Sequence[str], accepted_by: str = ""
) -> typing.Tuple[list, typing.Optional[dict]]:
    """(the anomaly rows that fail the run, the record of those accepted on purpose or None).

    Args:
      anomaly_rows: `anomaly_rows`' (where, feature, kind, description) tuples.
      accept: the features whose anomalies (drift included) this run accepts.
      accepted_by: who accepts them (default: the user running the job).
    """
    if not accept:
        return list(anomaly_rows), None
    import datetime
    import getpass
    import logging

    accepted = [r for r in anomaly_rows if r[1] in accept]
    record = {
        "features": list(accept),
        "by": accepted_by or getpass.getuser(),
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "anomalies": as_records(accepted),
    }
    log = logging.getLogger(__name__)
    log.warning(
        "accepted by %s for this run: %d anomalies of %s",
        record["by"],
        len(accepted),
        list(accept),
    )
    unused = sorted(set(accept) - {r[1] for r in accepted})
    if unused:
        log.warning("accepted but without any anomaly: %s", unused)
    return [r for r in anomaly_rows if r[1] not in accept], record


def format_table(rows: typing.Sequence[tuple]) -> str:
    """A plain-text table of anomaly rows with a header, columns padded to fit."""
    header = ("split", "feature", "anomaly kind", "description")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r[:3], widths)) + "  " + str(r[3]))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
