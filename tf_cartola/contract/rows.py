"""The cell rule: typing CSV cells by the feature contract; a malformed row raises BadRow with its
kind.
"""

import codecs
import math
import typing

from tf_cartola.contract import features as F


class BadRow(ValueError):
    """A row that cannot be typed; `kind` and `column` say why (used for counters and
    anomalies).
    """

    def __init__(self, kind: str, column: typing.Optional[str], message: str):
        super().__init__(message)
        self.kind = kind
        self.column = column


# Reason kinds, named after TFDV's AnomalyInfo types where one fits.
NOT_A_NUMBER = "FLOAT_TYPE_STRING_NOT_FLOAT"
NOT_AN_INT = "INT_TYPE_NOT_INT_STRING"
MISSING_REQUIRED = "MISSING_REQUIRED_VALUE"
WRONG_FIELD_COUNT = "WRONG_FIELD_COUNT"
REPEATED_HEADER = "REPEATED_HEADER"
UNDECODABLE = "UNDECODABLE_TEXT"  # Bytes that are not text in the file's encoding.
# Said wherever UNDECODABLE rows are counted: the anomaly table, the report, a failed scoring run.
ENCODING_HINT = (
    "their bytes are not text in the encoding read: give the file's encoding with --encoding "
    "(preprocess.encoding in the config), e.g. --encoding windows-1252"
)
LABEL_ABOVE_1 = "BOOL_TYPE_BIG_INT"
LABEL_BELOW_0 = "BOOL_TYPE_SMALL_INT"


class InputError(ValueError):
    """An input file that cannot be read at all (e.g. its header lacks contract columns)."""


def check_encoding(encoding: str) -> str:
    """The codec's canonical name, for an encoding whose line breaks, commas and digits are ASCII
    bytes (as the reader splits lines and ranges on them): UTF-8, Windows-1252, Latin-1 and the
    like.

    Raises:
      InputError: an unknown encoding, or one such as UTF-16 that is not ASCII-compatible.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"unknown text encoding {encoding!r}") from None
    if "GLOBO_ID,1.5\n".encode(name, "strict") != b"GLOBO_ID,1.5\n":
        raise InputError(
            f"encoding {encoding!r} is not ASCII-compatible: convert the file to UTF-8"
        )
    return name


def check_header(
    header: typing.Sequence[str], source: str, required: typing.Sequence[str] = F.CSV_COLUMNS
) -> None:
    """Raises InputError naming the missing columns when a CSV header lacks some `required`
    ones.

    Args:
      header: the column names on the file's first line.
      source: the file, for the message.
      required: the columns it must hold.
    """
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{source}: the CSV header lacks column(s) {missing}; it has {list(header)}"
        )


def parse_number(column: str, text: str):
    """The value of one non-empty, trimmed cell of a numeric column: the contract's rule.

    Integer columns take whole numbers ("12", "12.0", "1e3"; beyond 2**53 only as digits,
    which stay exact) within int64; float columns any finite number Python reads.

    Raises:
      BadRow: not a number, not finite, or not a whole int64 in an integer column.
    """
    if column in F.INT_COLUMNS:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is not None:
            return _int64(column, text, value)
    try:
        value = float(text)
    except ValueError:
        raise BadRow(NOT_A_NUMBER, column, f"{column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRow(NOT_A_NUMBER, column, f"{column}: {text!r} is not a finite number")
    if column in F.INT_COLUMNS:
        if value != int(value):
            raise BadRow(NOT_AN_INT, column, f"{column}: {text!r} is not a whole number")
        return _int64(column, text, int(value))
    return value


def _int64(column: str, text: str, value: int) -> int:
    if not -(2**63) <= value < 2**63:
        raise BadRow(NOT_AN_INT, column, f"{column}: {text!r} is outside the 64-bit integer range")
    return value
