"""Rows about to be scored, checked against the schema the scoring model was trained under.

A model scores whatever it is given: an `anos_como_pro` of 42 where training saw 0-3 gets a
confident score that means nothing. Before scoring, every typed batch is checked against the
schema the model version carries (tf_cartola.validate.baseline): values outside a feature's domain
and empty required features are counted per feature, under TFDV's anomaly type names, and can be
set aside instead of scored. Duplicate ids and empty input are counted by the scoring jobs
themselves, as they span batches.
"""

import dataclasses
import typing

import numpy as np

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.contract import rows
from tf_cartola.read import csv_reader

MAX_SET_ASIDE_FRACTION = 0.01  # A scoring run that sets aside more rows than this fails.


class TooManySetAside(ValueError):
    """A scoring run set aside more than its share of the rows: its scores are not to be used."""


def add_flags(parser) -> None:
    """The scoring CLIs' --set_aside_invalid and --max_set_aside_fraction."""
    parser.add_argument(
        "--set_aside_invalid",
        action="store_true",
        help="set aside rows outside the model's schema (a value out of its domain, an empty "
        "required feature) instead of scoring them",
    )
    parser.add_argument(
        "--max_set_aside_fraction",
        type=float,
        default=MAX_SET_ASIDE_FRACTION,
        help="fail (exit 3) when more than this share of the rows is set aside (default: "
        "%(default)s)",
    )


def check_set_aside(
    read: int, set_aside: int, reasons: typing.Mapping[str, int], max_fraction: float
) -> None:
    """Raises TooManySetAside when more than `max_fraction` of the rows read were set aside.

    Args:
      read: the rows read.
      set_aside: the rows set aside (bad, or outside the schema with --set_aside_invalid).
      reasons: rows set aside per reason ("KIND:column").
      max_fraction: the share of rows that may be set aside.
    """
    if not read or set_aside <= max_fraction * read:
        return
    listed = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    hint = f"; {rows.ENCODING_HINT}" if any(rows.UNDECODABLE in why for why in reasons) else ""
    raise TooManySetAside(
        f"{set_aside} of {read} rows ({set_aside / read:.1%}) were set aside, more than "
        f"--max_set_aside_fraction {max_fraction}: {listed}{hint}"
    )


_BELOW = {"int": "INT_TYPE_SMALL_INT", "float": "FLOAT_TYPE_SMALL_FLOAT"}
_ABOVE = {"int": "INT_TYPE_BIG_INT", "float": "FLOAT_TYPE_BIG_FLOAT"}
UNEXPECTED_STRING = "ENUM_TYPE_UNEXPECTED_STRING_VALUES"
_PHRASES = {
    rows.MISSING_REQUIRED: "empty, a feature the model was trained with always set",
    UNEXPECTED_STRING: "outside the schema's values",
    **{kind: "below the schema's minimum" for kind in _BELOW.values()},
    **{kind: "above the schema's maximum" for kind in _ABOVE.values()},
}


@dataclasses.dataclass(frozen=True)
class Rule:
    """What the schema allows in one column the model takes."""

    column: str
    kind: str  # "int", "float" or "string": the schema's domain kind.
    required: bool  # presence.min_fraction == 1: never empty in training.
    low: typing.Optional[float] = None
    high: typing.Optional[float] = None
    values: typing.Optional[typing.FrozenSet[bytes]] = None  # A string domain.

    def failures(self, values: np.ndarray) -> typing.Iterator[typing.Tuple[str, np.ndarray, str]]:
        """(kind, rows failing, why) of one column's dense values (csv_reader.dense_column)."""
        missing = values == b"" if self.kind == "string" else np.isnan(values)
        if self.required:
            yield (
                rows.MISSING_REQUIRED,
                missing,
                f"{self.column} is empty; the model was trained with it always set",
            )
        if self.values is not None:
            unexpected = ~missing & ~np.isin(values, list(self.values))
            yield (
                UNEXPECTED_STRING,
                unexpected,
                f"{self.column} is not one of the schema's {len(self.values)} values",
            )
        with np.errstate(invalid="ignore"):
            if self.low is not None:
                yield (
                    _BELOW[self.kind],
                    values < self.low,
                    f"{self.column} is below the schema's minimum {self.low:g}",
                )
            if self.high is not None:
                yield (
                    _ABOVE[self.kind],
                    values > self.high,
                    f"{self.column} is above the schema's maximum {self.high:g}",
                )


def rules(schema, columns: typing.Sequence[str]) -> typing.List[Rule]:
    """The rules of a TFDV schema (schema_pb2.Schema) for the columns a model takes; columns the
    schema does not name are not checked.
    """
    string_domains = {d.name: d for d in schema.string_domain}
    out = []
    for feature in schema.feature:
        if feature.name not in columns:
            continue
        required = feature.presence.min_fraction >= 1.0
        if feature.HasField("int_domain") or feature.HasField("float_domain"):
            kind = "int" if feature.HasField("int_domain") else "float"
            domain = getattr(feature, f"{kind}_domain")
            out.append(
                Rule(
                    feature.name,
                    kind,
                    required,
                    domain.min if domain.HasField("min") else None,
                    domain.max if domain.HasField("max") else None,
                )
            )
        elif feature.HasField("string_domain") or feature.HasField("domain"):
            domain = (
                feature.string_domain
                if feature.HasField("string_domain")
                else string_domains[feature.domain]
            )
            out.append(
                Rule(
                    feature.name,
                    "string",
                    required,
                    values=frozenset(v.encode() for v in domain.value),
                )
            )
        else:
            out.append(
                Rule(
                    feature.name, "string" if feature.type == feature.BYTES else "float", required
                )
            )
    return out


@dataclasses.dataclass
class Findings:
    """One batch's findings: which rows break a rule, the count per (kind, column), and each
    breaking row's first reason.
    """

    invalid: np.ndarray  # bool per row
    counts: typing.Dict[typing.Tuple[str, str], int]
    reasons: typing.Dict[int, typing.Tuple[str, str, str]]  # row -> (kind, column, why)


def check(batch, rules_: typing.Sequence[Rule]) -> Findings:
    """Checks a typed record batch (csv_reader layout) against the rules; a row may break several,
    and each is counted.
    """
    invalid = np.zeros(batch.num_rows, dtype=bool)
    counts, reasons = {}, {}
    for rule in rules_:
        for kind, failing, why in rule.failures(csv_reader.dense_column(batch, rule.column)):
            n = int(failing.sum())
            if not n:
                continue
            counts[(kind, rule.column)] = n
            invalid |= failing
            for i in np.flatnonzero(failing).tolist():
                reasons.setdefault(i, (kind, rule.column, why))
    return Findings(invalid, counts, reasons)


def set_aside_records(batch, findings: Findings, source: str, id_key: str) -> typing.List[dict]:
    """Quarantine records of a batch's invalid rows: the source, the user's id, the typed row and
    why.

    Args:
      batch: a typed record batch.
      findings: what `check` found in it.
      source: the input the batch was read from, for the records.
      id_key: the id column.
    """
    import pyarrow as pa

    records = csv_reader.to_records(batch.filter(pa.array(findings.invalid)))
    return [
        {
            "source": source,
            id_key: record[id_key],
            "row": record,
            "kind": kind,
            "column": column,
            "reason": why,
        }
        for record, (kind, column, why) in zip(
            records, (findings.reasons[i] for i in np.flatnonzero(findings.invalid).tolist())
        )
    ]


def duplicate_counts(ids: np.ndarray) -> typing.Tuple[int, int]:
    """(ids that appear more than once, rows they are in)."""
    _, counts = np.unique(ids, return_counts=True)
    repeated = counts[counts > 1]
    return len(repeated), int(repeated.sum())


def describe(counts: typing.Mapping[str, int], rows_checked: int) -> typing.List[str]:
    """One line per "KIND:column" count, most rows first."""
    out = []
    for key, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        kind, column = key.split(":", 1)
        out.append(f"{n} of {rows_checked} rows have {column} {_PHRASES.get(kind, kind)} ({kind})")
    return out


def warnings(
    rows_read: int,
    invalid: typing.Mapping[str, int],
    duplicate_ids: typing.Mapping[str, int],
    set_aside: bool,
) -> typing.List[str]:
    """What a scoring run found that its user must hear: no rows, rows outside the model's schema
    ("KIND:column" counts) and duplicate ids ({"ids": n, "rows": n}).

    Args:
      rows_read: rows read from the input.
      invalid: rows outside the schema, by "KIND:column".
      duplicate_ids: {"ids": n, "rows": n}.
      set_aside: whether the invalid rows were set aside (else scored anyway).
    """
    out = []
    if not rows_read:
        out.append("the input has no rows: nothing was scored")
    what = "set aside" if set_aside else "scored anyway (--set_aside_invalid sets them aside)"
    out += [f"{line}: {what}" for line in describe(invalid, rows_read)]
    if duplicate_ids["ids"]:
        out.append(
            f"{duplicate_ids['ids']} {F.ID_KEY} values appear more than once, in "
            f"{duplicate_ids['rows']} "
            "rows: each row was scored (a scores table keeps one per user and run)"
        )
    return out


def of_model(
    version_dir: str, columns: typing.Sequence[str]
) -> typing.Optional[typing.List[Rule]]:
    """The rules of the schema a model version carries (tf_cartola.validate.baseline), or None when
    it carries none (an export made outside `tf_cartola.train`). Reads the text proto with
    tensorflow_metadata's protos: a local version is checked without loading TensorFlow.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    from tf_cartola.validate import baseline

    path = files.join(version_dir, baseline.SCHEMA_IN_VERSION)
    if not files.exists(path):
        return None
    with files.open_file(path) as f:
        return rules(text_format.Parse(f.read(), schema_pb2.Schema()), columns)
