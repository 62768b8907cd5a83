"""A job's input, checked and fingerprinted before any pipeline runs: files (local or on an object
store, split into ranges workers share) or a PostgreSQL table or query (one snapshot, id-range
partitions).
"""

import contextlib
import dataclasses
import hashlib
import typing

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.read import csv_reader, postgres

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
def open_inputs(
    location: str,
    fmt: str = CSV,
    required: typing.Sequence[str] = F.CSV_COLUMNS,
    database: typing.Optional[DatabaseInput] = None,
):
    """(inputs as the manifest records them, the parts the pipeline reads), valid inside the block.

    Files: `describe_inputs`. A database: one snapshot exported for the whole block, its
    partitions, and the query, row count and fingerprint the database computed.

    Args:
      location: files (a path or glob, any Beam filesystem) or a postgresql:// URL.
      fmt: "csv" or "prediction_log".
      required: the columns a CSV's header (or the table) must have.
      database: the table or query and partitions, for a postgresql:// location.
    """
    if not postgres.is_database(location):
        yield describe_inputs(location, fmt, required)
        return
    database = database or DatabaseInput()
    with postgres.snapshot(
        location, database.table or None, database.query or None, database.partitions, required
    ) as (parts, description):
        yield [description], parts


def describe_inputs(
    pattern: str, fmt: str = CSV, required: typing.Sequence[str] = F.CSV_COLUMNS
) -> typing.Tuple[typing.List[dict], typing.List[csv_reader.Range]]:
    """Path, size and content fingerprint of every file matching `pattern`, and the ranges the
    pipeline reads. A CSV's header is checked to hold the `required` columns.

    A local file is read once here: its sha256, and for an uncompressed CSV the line ranges
    that let workers share it. A file on an object store (gs://, s3://, ...) is not
    downloaded: its fingerprint is the store's checksum (`FileSystems.checksum`: CRC32C on
    GCS, the ETag on S3) and it is one range. A compressed file cannot be entered mid-way,
    nor a file of records: each is one range too.

    Args:
      pattern: a path or glob (any Beam filesystem).
      fmt: "csv" or "prediction_log".
      required: the columns a CSV's header must hold.

    Raises:
      FileNotFoundError: nothing matches.
      rows.InputError: a CSV is empty or its header lacks required columns.
    """
    # Absolute before matching: Beam matches a bare `m?.csv` (no folder part) against nothing, and
    # a portable runner's workers run in folders of their own.
    pattern = files.absolute(pattern)
    matched = FileSystems.match([pattern])[0].metadata_list
    if not matched:
        raise FileNotFoundError(f"no input file matches {pattern!r}")
    inputs, ranges = [], []
    for meta in sorted(matched, key=lambda m: m.path):
        if fmt == CSV:
            with FileSystems.open(meta.path) as f:
                csv_reader.read_header(f, meta.path, required)
        fingerprint, file_ranges = _fingerprint(meta.path, fmt)
        inputs.append({"path": meta.path, "bytes": meta.size_in_bytes, "fingerprint": fingerprint})
        ranges += file_ranges
    return inputs, ranges


def _fingerprint(path: str, fmt: str) -> typing.Tuple[str, typing.List[csv_reader.Range]]:
    """(a file's fingerprint, the ranges it is read in): the store's checksum and one range on an
    object store; else its sha256 and, for an uncompressed CSV, line ranges.
    """
    if FileSystems.get_scheme(path):  # An object store (gs://, s3://, ...); local paths have none.
        return f"checksum:{FileSystems.checksum(path)}", [csv_reader.Range(path)]
    digest = hashlib.sha256()
    uncompressed = CompressionTypes.detect_compression_type(path) == CompressionTypes.UNCOMPRESSED
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        if fmt == CSV and uncompressed:
            ranges = csv_reader.plan_ranges(f, path, RANGE_BYTES, digest)
        else:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            ranges = [csv_reader.Range(path)]
    return f"sha256:{digest.hexdigest()}", ranges
