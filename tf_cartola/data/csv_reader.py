"""Reads CSV files of the contract as typed Arrow record batches; malformed rows are set aside.

Arrow's streaming CSV reader parses a file block by block (quotes, CRLF and a UTF-8
BOM handled); each block's cells are then typed a column at a time: trimmed, an
empty cell is missing, numbers are parsed in one vectorised cast. A column with a
cell that cast would reject is typed cell by cell with `rows.parse_number`, the one
definition of what a valid number is, so the fast path never changes a result.

A row with the wrong field count, a cell that is not a number, a fraction in an
integer column or no id / label is returned as a quarantine record with its reason,
never dropped. Typed batches have the layout tfx_bsl decodes tf.Examples to (one
`large_list` column per contract column, null where the cell is missing), so TFDV,
tf.Transform and the tf.Example encoder take them as they are.
"""

import csv
import dataclasses
import io
import typing

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tf_cartola import features as F
from tf_cartola import rows

# ~50k rows of the contract per block: large enough for vectorised work, small enough to stream.
BLOCK_BYTES = 8 << 20
_VALUE_TYPES = {"int": pa.int64(), "float": pa.float32(), "string": pa.large_binary()}
# Strings Arrow's int64 cast reads exactly as Python's int() does (Arrow also takes hex).
_PLAIN_INT = r"^-?[0-9]+$"


def arrow_schema(columns: typing.Sequence[str] = F.CSV_COLUMNS) -> pa.Schema:
    """The typed batches' schema: a `large_list` of the column's value type per column."""
    return pa.schema([(c, pa.large_list(_VALUE_TYPES[F.column_kind(c)])) for c in columns])


@dataclasses.dataclass
class Chunk:
    """One block of a CSV file, typed."""

    batch: pa.RecordBatch  # the good rows, in `arrow_schema` layout
    bad: typing.List[dict]  # quarantine records (see `quarantine_record`)
    rows: int  # data rows read: good + bad


def quarantine_record(source: str, line_number: int, line: str, error: rows.BadRow) -> dict:
    """The record a bad row is set aside as: where it was, its text and why it was refused."""
    return {"source": source, "line_number": int(line_number), "line": line, "kind": error.kind,
            "column": error.column, "reason": str(error)}


def to_records(batch: pa.RecordBatch) -> typing.List[dict]:
    """Typed rows of a batch as dicts: one value per column, None where missing, `pixels` as str."""
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns):
        values = [v[0] if v else None for v in column.to_pylist()]
        columns[name] = [None if v is None else v.decode("utf-8") for v in values] if name == F.PIXELS else values
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _columns(header: typing.Sequence[str], label_required: bool) -> typing.List[str]:
    """The contract columns a file's batches carry: all, less the label when it may be absent and is."""
    return [c for c in F.CSV_COLUMNS if label_required or c != F.LABEL_KEY or c in header]


def _join_cells(cells: typing.Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    return out.getvalue()


def _cellwise(column: str, texts: typing.Sequence[str], present: np.ndarray):
    """Types a column cell by cell with the contract's rule: (values with None, {row: BadRow})."""
    values, bad = [], {}
    for i, (text, here) in enumerate(zip(texts, present)):
        value = None
        if here:
            try:
                value = rows.parse_number(column, text)
            except rows.BadRow as e:
                bad[i] = e
        values.append(value)
    return pa.array(values, _VALUE_TYPES[F.column_kind(column)]), bad


def _numbers(column: str, text: pa.Array, present: np.ndarray):
    """A numeric column's values (null where missing or bad) and {row: BadRow}."""
    kind = F.column_kind(column)
    cells = pc.if_else(pa.array(present), text, pa.scalar(None, pa.string()))
    if kind == "int" and pc.all(pc.match_substring_regex(cells, _PLAIN_INT)).as_py() is not False:
        try:
            return pc.cast(cells, pa.int64()), {}
        except pa.ArrowInvalid:
            pass  # Beyond int64: the cell rule says why.
    try:
        values = pc.cast(cells, pa.float64())
    except pa.ArrowInvalid:
        return _cellwise(column, text.to_pylist(), present)
    v = values.to_numpy(zero_copy_only=False)
    ok = np.isfinite(v) | ~present
    if kind == "int":
        ok &= (np.floor(v) == v) & (v >= -(2.0**63)) & (v < 2.0**63) | ~present
    if not ok.all():
        return _cellwise(column, text.to_pylist(), present)
    return pc.cast(values, _VALUE_TYPES[kind]), {}


def _as_lists(values: pa.Array) -> pa.LargeListArray:
    """[v, None, ...] -> [[v], null, ...]: the tf.Example-decoded layout of an optional scalar."""
    valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False))
    ends = np.cumsum(valid)
    offsets = pa.array(np.concatenate([[0], ends]), pa.int64(), mask=np.concatenate([~valid, [False]]))
    return pa.LargeListArray.from_arrays(offsets, values.drop_null())


def type_block(block: pa.RecordBatch, line_numbers: np.ndarray, source: str,
               label_required: bool = True) -> typing.Tuple[pa.RecordBatch, typing.List[dict]]:
    """Types one block of string cells by the contract.

    Args:
      block: every column of the file as strings ("" where empty).
      line_numbers: each row's line number in the file (the header is line 1).
      source: the file, for quarantine records.
      label_required: False for rows to score, which may have no label column.

    Returns:
      (the good rows in `arrow_schema` layout, quarantine records of the bad ones). A
      row's reason is its first bad column in contract order, as `rows.parse_number`
      words it.
    """
    n = block.num_rows
    columns = _columns(block.schema.names, label_required)
    first_bad: typing.Dict[int, rows.BadRow] = {}
    typed = {}
    for column in columns:
        text = pc.utf8_trim_whitespace(block.column(column))
        present = np.asarray(pc.not_equal(text, "").to_numpy(zero_copy_only=False), dtype=bool)
        if column in (F.ID_KEY, F.LABEL_KEY) and not present.all():
            for i in np.flatnonzero(~present):
                first_bad.setdefault(int(i), rows.BadRow(rows.MISSING_REQUIRED, column, f"{column} is empty"))
        if column == F.PIXELS:
            typed[column] = pc.cast(pc.if_else(pa.array(present), text, pa.scalar(None, pa.string())), pa.large_binary())
            continue
        typed[column], bad = _numbers(column, text, present)
        for i, error in bad.items():
            first_bad.setdefault(i, error)
    records = []
    good = np.ones(n, dtype=bool)
    if first_bad:
        good[list(first_bad)] = False
        cells = block.to_pydict()
        for i, error in sorted(first_bad.items()):
            line = _join_cells([cells[name][i] for name in block.schema.names])
            records.append(quarantine_record(source, line_numbers[i], line, error))
    mask = pa.array(good)
    batch = pa.RecordBatch.from_arrays(
        [_as_lists(typed[c].filter(mask) if first_bad else typed[c]) for c in columns], schema=arrow_schema(columns)
    )
    return batch, records


def read_header(f: typing.BinaryIO, source: str, label_required: bool = True) -> typing.List[str]:
    """The column names on a CSV's first line, checked to hold the contract's columns.

    Raises:
      rows.InputError: the file is empty or its header lacks contract columns.
    """
    first = f.readline().decode("utf-8-sig").rstrip("\r\n")
    if not first.strip():
        raise rows.InputError(f"{source}: the file is empty (no header line)")
    header = next(csv.reader([first]))
    required = [c for c in F.CSV_COLUMNS if label_required or c != F.LABEL_KEY]
    rows.check_header(header, source, required)
    return header


def read_csv(f: typing.BinaryIO, source: str, label_required: bool = True,
             block_bytes: int = BLOCK_BYTES) -> typing.Iterator[Chunk]:
    """Streams a CSV file of the contract as typed chunks.

    Args:
      f: the file, opened in binary mode at its start.
      source: its name, for errors and quarantine records.
      label_required: False for rows to score, which may have no label column.
      block_bytes: how much text one chunk covers.

    Yields:
      Chunks in file order. Blank lines are not rows. Line numbers count the header
      as line 1 and do not count blank lines.

    Raises:
      rows.InputError: the header lacks contract columns.
    """
    header = read_header(f, source, label_required)
    f.seek(0)
    invalid: typing.List[typing.Tuple[int, str, int]] = []  # (line number, text, fields), in file order

    def on_invalid_row(row):
        if row.text.strip():  # A line of blanks is no row, as an empty line is none.
            invalid.append((row.number, row.text.rstrip("\r"), row.actual_columns))
        return "skip"

    reader = pacsv.open_csv(
        f,
        read_options=pacsv.ReadOptions(use_threads=False, block_size=block_bytes),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header}, strings_can_be_null=False),
    )

    def wrong_field_count(number: int, text: str, fields: int) -> dict:
        error = rows.BadRow(rows.WRONG_FIELD_COUNT, None, f"expected {len(header)} fields, got {fields}")
        return quarantine_record(source, number, text, error)

    next_line = 2
    for block in reader:
        # Arrow numbers lines as we do and calls the handler for a block's invalid rows
        # before it returns the block, so every line a good row cannot have is known here.
        taken = np.array([number for number, _, _ in invalid], dtype=np.int64)
        candidates = np.arange(next_line, next_line + block.num_rows + len(taken), dtype=np.int64)
        line_numbers = candidates[~np.isin(candidates, taken)][: block.num_rows]
        last = int(line_numbers[-1]) if block.num_rows else next_line - 1
        batch, bad = type_block(block, line_numbers, source, label_required)
        before = [r for r in invalid if r[0] < last]
        bad += [wrong_field_count(*r) for r in before]
        invalid[:] = invalid[len(before):]
        next_line = last + 1
        yield Chunk(batch, bad, block.num_rows + len(before))
    if invalid:  # Rows after the last good one.
        columns = _columns(header, label_required)
        empty = pa.RecordBatch.from_arrays([pa.array([], t) for t in arrow_schema(columns).types],
                                           schema=arrow_schema(columns))
        yield Chunk(empty, [wrong_field_count(*r) for r in invalid], len(invalid))
