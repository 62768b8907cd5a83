"""The preprocessing job's splits, raw and transformed, read back as columns.

The job writes each split as Parquet files (`SUFFIX`), one row group per record batch, in
the layout its batches have: one `large_list` column per feature, a null list where a raw
value is missing. Reading a split is reading the columns asked for, with no per-row
decoding; any TensorFlow filesystem works (`files.open_file`).
"""

import typing

import pyarrow as pa
import pyarrow.parquet as pq

from tf_cartola.common import files
from tf_cartola.contract.manifest import PreprocessOutputError

SUFFIX = ".parquet"


def pattern(prefix: str) -> str:
    """The glob of a split's files written with `prefix` (beam_jobs' WriteSplit)."""
    return prefix + "*" + SUFFIX


def paths(pattern: str) -> typing.List[str]:
    """The files of a split, in name order.

    Raises:
      PreprocessOutputError: no file matches `pattern`.
    """
    found = sorted(files.gfile(pattern).glob(pattern))
    if not found:
        raise PreprocessOutputError(f"no files match {pattern}")
    return found


def _file(path: str) -> typing.Optional[pq.ParquetFile]:
    """One file of a split; None for a file with no rows (an empty shard). A local file is read in
    place; a file on another filesystem is fetched whole first.

    Raises:
      PreprocessOutputError: the file is not Parquet.
    """
    if files.is_url(path):
        with files.open_file(path, "rb") as f:
            source = pa.BufferReader(f.read())
    else:
        source = path
    try:
        parquet = pq.ParquetFile(source)
    except pa.ArrowInvalid as e:
        raise PreprocessOutputError(
            f"{path} is not a split written by beam_jobs.preprocess ({e}); run it again"
        ) from e
    return parquet if parquet.metadata.num_rows else None


def read(pattern: str, columns: typing.Optional[typing.Sequence[str]] = None) -> pa.Table:
    """The `columns` (None: all) of every row of a split, as one table.

    Raises:
      PreprocessOutputError: no file matches `pattern`, a file is not a split's or lacks a
        column, or no file holds a row.
    """
    tables = []
    for path in paths(pattern):
        parquet = _file(path)
        if parquet is None:
            continue
        missing = sorted(set(columns or ()) - set(parquet.schema_arrow.names))
        if missing:
            raise PreprocessOutputError(f"{path} has no column {', '.join(missing)}")
        tables.append(parquet.read(columns=columns))
    if not tables:
        raise PreprocessOutputError(f"no rows in {pattern}")
    return pa.concat_tables(tables)


def head(pattern: str, rows: int) -> pa.Table:
    """The first `rows` rows of a split (at most a row group's, from the first file with rows)."""
    for path in paths(pattern):
        parquet = _file(path)
        if parquet is not None:
            return parquet.read_row_group(0).slice(0, rows)
    raise PreprocessOutputError(f"no rows in {pattern}")
