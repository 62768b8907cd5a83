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


def paths(pattern: str) -> typing.List[str]:
    """The files of a split, in name order.

    Raises:
      PreprocessOutputError: no file matches `pattern`.
    """
    found = sorted(files.gfile(pattern).glob(pattern))
    if not found:
        raise PreprocessOutputError(f"no files match {pattern}")
    return found


def _table(path: str, columns: typing.Optional[typing.Sequence[str]]) -> typing.Optional[pa.Table]:
    """The columns of one file; None for a file with no rows (an empty shard). A local file is
    read in place; a file on another filesystem is fetched whole first.
    """
    if files.is_url(path):
        with files.open_file(path, "rb") as f:
            source = pa.BufferReader(f.read())
    else:
        source = path
    try:
        parquet = pq.ParquetFile(source)
        if not parquet.metadata.num_rows:
            return None
        return parquet.read(columns=columns)
    except (pa.ArrowInvalid, KeyError) as e:
        raise PreprocessOutputError(
            f"{path} is not a split written by beam_jobs.preprocess ({e}); run it again"
        ) from e


def read(pattern: str, columns: typing.Optional[typing.Sequence[str]] = None) -> pa.Table:
    """The `columns` (None: all) of every row of a split, as one table.

    Raises:
      PreprocessOutputError: no file matches `pattern`, a file is not a split's, or no file
        holds a row.
    """
    tables = [t for t in (_table(p, columns) for p in paths(pattern)) if t is not None]
    if not tables:
        raise PreprocessOutputError(f"no rows in {pattern}")
    return pa.concat_tables(tables)


def head(pattern: str, rows: int) -> pa.Table:
    """The first `rows` rows of a split (the first file that has any)."""
    for path in paths(pattern):
        table = _table(path, None)
        if table is not None:
            return table.slice(0, rows)
    raise PreprocessOutputError(f"no rows in {pattern}")
