"""Reads CSV files of the contract as typed Arrow record batches; malformed rows are set aside.

A file, or a range of its lines (`plan_ranges`, so that workers can share one big
file), is read in blocks of whole lines; Arrow's CSV parser splits each block into
cells (quotes, CRLF and a UTF-8 BOM handled), which are then typed a column at a
time: trimmed, an empty cell is missing, numbers are parsed in one vectorised cast. A column with a
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

from tf_cartola.contract import features as F
from tf_cartola.contract import rows

# ~100k rows of the contract per block: large enough for vectorised work, small enough to stream.
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
    """The record a bad row is set aside as: where it was, its text and why it was refused.

    Args:
      source: the file the row came from.
      line_number: its line in the file (the header is line 1).
      line: its text.
      error: why it was refused.
    """
    return {
        "source": source,
        "line_number": int(line_number),
        "line": line,
        "kind": error.kind,
        "column": error.column,
        "reason": str(error),
    }


def to_records(batch: pa.RecordBatch) -> typing.List[dict]:
    """Typed rows of a batch as dicts: one value per column, None where missing, `pixels` as
    str.
    """
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns):
        values = [v[0] if v else None for v in column.to_pylist()]
        columns[name] = (
            [None if v is None else v.decode("utf-8") for v in values]
            if name == F.PIXELS
            else values
        )
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def dense_column(batch: typing.Union[pa.RecordBatch, pa.Table], name: str, text: bool = False):
    """One column of a typed batch (or table) as a flat array, one value per row: numbers as
    float64 with NaN where missing (ids and labels are never missing), `pixels` as bytes with b""
    where missing, or (`text`) as str with "".
    """
    column = batch.column(batch.schema.get_field_index(name))
    if isinstance(column, pa.ChunkedArray):  # A table's.
        column = column.combine_chunks()
    present = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False) > 0
    values = pc.list_flatten(column)  # At most one value per row.
    if F.column_kind(name) == "string":
        out = np.full(len(column), "" if text else b"", dtype=object)
        values = pc.cast(values, pa.large_string()) if text else values
    else:
        out = np.full(len(column), np.nan)
    out[present] = values.to_numpy(zero_copy_only=False)
    return out


def _columns(header: typing.Sequence[str]) -> typing.List[str]:
    """The contract columns a file's batches carry: those its header has, in contract order."""
    return [c for c in F.CSV_COLUMNS if c in header]


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


def _outside_0_1(labels: pa.Array, bad: dict) -> typing.Dict[int, rows.BadRow]:
    """Labels that are whole numbers but neither 0 nor 1."""
    values = labels.to_numpy(zero_copy_only=False)
    present = ~np.asarray(labels.is_null().to_numpy(zero_copy_only=False))
    out = {}
    for i in np.flatnonzero(present & (values != 0) & (values != 1)):
        if int(i) not in bad:
            kind = rows.LABEL_ABOVE_1 if values[i] > 1 else rows.LABEL_BELOW_0
            out[int(i)] = rows.BadRow(
                kind, F.LABEL_KEY, f"{F.LABEL_KEY}: {int(values[i])} is neither 0 nor 1"
            )
    return out


def _as_lists(values: pa.Array) -> pa.LargeListArray:
    """[v, None, ...] -> [[v], null, ...]: the tf.Example-decoded layout of an optional scalar."""
    valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False))
    ends = np.cumsum(valid)
    offsets = pa.array(
        np.concatenate([[0], ends]), pa.int64(), mask=np.concatenate([~valid, [False]])
    )
    return pa.LargeListArray.from_arrays(offsets, values.drop_null())


def type_block(
    block: pa.RecordBatch,
    line_numbers: np.ndarray,
    text_of: typing.Callable[[int], str],
    source: str,
    required: typing.Sequence[str] = F.CSV_COLUMNS,
) -> typing.Tuple[pa.RecordBatch, typing.List[dict]]:
    """Types one block of string cells by the contract.

    Args:
      block: every column of the file as strings ("" where empty).
      line_numbers: each row's line number in the file (the header is line 1).
      text_of: row -> its line as it stands in the file.
      source: the file, for quarantine records.
      required: the columns the caller needs; of these, the id and the label may not be empty.

    Returns:
      (the good rows in `arrow_schema` layout, quarantine records of the bad ones). A
      row's reason is its first bad column in contract order, as `rows.parse_number`
      words it.
    """
    columns = _columns(block.schema.names)
    first_bad = _repeated_headers(block) if F.ID_KEY in columns else {}
    typed = {}
    for column in columns:
        typed[column], bad = _typed_column(column, block.column(column), column in required)
        for i, error in bad.items():
            first_bad.setdefault(i, error)
    records = []
    good = np.ones(block.num_rows, dtype=bool)
    if first_bad:
        good[list(first_bad)] = False
        for i, error in sorted(first_bad.items()):
            records.append(quarantine_record(source, line_numbers[i], text_of(i), error))
    mask = pa.array(good)
    batch = pa.RecordBatch.from_arrays(
        [_as_lists(typed[c].filter(mask) if first_bad else typed[c]) for c in columns],
        schema=arrow_schema(columns),
    )
    return batch, records


def _repeated_headers(block: pa.RecordBatch) -> typing.Dict[int, rows.BadRow]:
    """The rows that repeat the header line (files joined with their headers)."""
    ids = pc.utf8_trim_whitespace(block.column(F.ID_KEY))
    maybe = np.flatnonzero(pc.equal(ids, F.ID_KEY).to_numpy(zero_copy_only=False))
    why = "the header line repeats here (files joined with their headers?)"
    return {
        int(i): rows.BadRow(rows.REPEATED_HEADER, None, why)
        for i in maybe
        if all(block.column(name)[int(i)].as_py().strip() == name for name in block.schema.names)
    }


def _typed_column(
    column: str, cells: pa.Array, required: bool
) -> typing.Tuple[pa.Array, typing.Dict[int, rows.BadRow]]:
    """One column's cells typed by the contract, and its bad rows (an empty id or label where
    `required`, a cell that is not its kind, a label outside {0, 1}).
    """
    text = pc.utf8_trim_whitespace(cells)
    present = np.asarray(pc.not_equal(text, "").to_numpy(zero_copy_only=False), dtype=bool)
    bad = {}
    if column in (F.ID_KEY, F.LABEL_KEY) and required and not present.all():
        missing = rows.BadRow(rows.MISSING_REQUIRED, column, f"{column} is empty")
        bad = {int(i): missing for i in np.flatnonzero(~present)}
    if column == F.PIXELS:
        kept = pc.if_else(pa.array(present), text, pa.scalar(None, pa.string()))
        return pc.cast(kept, pa.large_binary()), bad
    typed, wrong = _numbers(column, text, present)
    if column == F.LABEL_KEY and required:
        wrong.update(_outside_0_1(typed, wrong))
    return typed, {**wrong, **bad}


def _to_utf8(
    piece: bytes,
    encoding: str,
    source: str,
    first_line: int,
    header: typing.Sequence[str],
    required: typing.Sequence[str],
) -> typing.Tuple[bytes, typing.List[dict]]:
    """A piece of whole lines as UTF-8. A line that is not text in `encoding` is set aside (an
    empty line, so every other line keeps its number, and a quarantine record at its true line
    number) when the bytes that are not text fall in a column of `required`; in a column the
    reader does not use they are replaced (U+FFFD) and the row is kept.
    """
    try:
        text = piece.decode(encoding)
    except UnicodeDecodeError:
        pass
    else:
        return (piece if encoding == "utf-8" else text.encode("utf-8")), []
    lines, bad = piece.split(b"\n"), []
    used = {i for i, name in enumerate(header) if name in set(required)}
    for i, line in enumerate(lines):
        try:
            lines[i] = line.decode(encoding).encode("utf-8")
        except UnicodeDecodeError as e:
            replaced = line.decode(encoding, "replace")
            fields = next(csv.reader([replaced.rstrip("\r")]), [])
            hit = [k for k, field in enumerate(fields) if "\ufffd" in field]
            if len(fields) == len(header) and not used.intersection(hit):
                lines[i] = replaced.encode("utf-8")  # Only columns nobody reads are not text.
                continue
            in_use = sorted(used.intersection(hit))
            column = header[in_use[0]] if in_use else None
            error = rows.BadRow(
                rows.UNDECODABLE,
                column,
                f"byte {line[e.start : e.start + 1]!r} at column {e.start + 1} "
                f"is not {encoding} text (give the file's encoding with --encoding)",
            )
            bad.append(quarantine_record(source, first_line + i, replaced.rstrip("\r"), error))
            lines[i] = b""
    return b"\n".join(lines), bad


def read_header(
    f: typing.BinaryIO,
    source: str,
    required: typing.Sequence[str] = F.CSV_COLUMNS,
    encoding: str = "utf-8",
) -> typing.List[str]:
    """The column names on a CSV's first line, checked to hold the `required` ones.

    Leaves `f` at the start of the second line.

    Args:
      f: the file, opened in binary mode at its start.
      source: its path, for messages.
      required: the columns the header must hold.
      encoding: the file's text encoding.

    Raises:
      rows.InputError: the file is empty, its header lacks contract columns or is not text in
      `encoding`.
    """
    line = f.readline()
    try:
        first = line.decode("utf-8-sig" if encoding == "utf-8" else encoding).rstrip("\r\n")
    except UnicodeDecodeError:
        raise rows.InputError(
            f"{source}: the header line is not {encoding} text (give the file's encoding "
            "with --encoding)"
        ) from None
    if not first.strip():
        raise rows.InputError(f"{source}: the file is empty (no header line)")
    header = next(csv.reader([first]))
    rows.check_header(header, source, required)
    return header


@dataclasses.dataclass(frozen=True)
class Range:
    """Whole lines of a file: from byte `start` (None: right after the header) to byte `end`
    (None: the end of the file); the first of them is line `first_line`.
    """

    path: str
    start: typing.Optional[int] = None
    end: typing.Optional[int] = None
    first_line: int = 2


def plan_ranges(
    f: typing.BinaryIO, path: str, range_bytes: int, digest=None
) -> typing.List[Range]:
    """Splits a file into ranges of whole data lines of about `range_bytes` each.

    Reads the file once from its start, counting line breaks, so that every range knows
    its first line number; `digest` (a hashlib object), when given, is fed every byte.

    Args:
      f: the file, opened in binary mode at its start.
      path: its path, recorded in every range.
      range_bytes: the size a range aims for.
      digest: a hashlib object fed every byte, or None.
    """
    header = f.readline()
    if digest is not None:
        digest.update(header)
    ranges, start, first_line = [], len(header), 2
    offset, line, next_cut = start, 2, start + range_bytes
    for chunk in iter(lambda: f.read(1 << 20), b""):
        if digest is not None:
            digest.update(chunk)
        line_starts = offset + np.flatnonzero(np.frombuffer(chunk, np.uint8) == ord("\n")) + 1
        i = int(np.searchsorted(line_starts, next_cut))
        while i < len(line_starts):
            ranges.append(Range(path, start, int(line_starts[i]), first_line))
            start, first_line = int(line_starts[i]), line + i + 1
            next_cut = start + range_bytes
            i = int(np.searchsorted(line_starts, next_cut))
        line += len(line_starts)
        offset += len(chunk)
    if offset > start:
        ranges.append(Range(path, start, None, first_line))
    return ranges


def _pieces(
    f: typing.BinaryIO, end: typing.Optional[int], piece_bytes: int
) -> typing.Iterator[bytes]:
    """Reads from the current position to `end` (or EOF) in pieces of whole lines; without an end
    `f` may be a stream (no tell).
    """
    position = f.tell() if end is not None else 0
    while end is None or position < end:
        size = piece_bytes if end is None else min(piece_bytes, end - position)
        piece = f.read(size)
        if not piece:
            return
        if not piece.endswith(b"\n"):
            piece += f.readline()  # Complete the last line (the range's end is a line start).
        position += len(piece)
        yield piece


def _parse_piece(piece: bytes, header: typing.Sequence[str], source: str, first_line: int):
    """Parses whole lines into string cells.

    Returns:
      (the rows' cells, their line numbers, [(line number, text, fields)] of the rows with
      a wrong field count, a function: row -> its line's text, the piece's line breaks).
    """
    invalid = []

    def on_invalid_row(row):
        invalid.append((row.number, row.text, row.actual_columns))
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(piece),
        read_options=pacsv.ReadOptions(
            use_threads=False, column_names=list(header), block_size=len(piece) + 1
        ),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}, strings_can_be_null=False
        ),
    )
    block = pa.RecordBatch.from_arrays(
        [c.combine_chunks() for c in table.columns], names=table.column_names
    )
    # Arrow numbers the non-empty lines 1, 2, ...; map them to the file's line numbers.
    data = np.frombuffer(piece, np.uint8)
    breaks = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(piece)]])
    lengths = ends - starts - (data[np.maximum(ends - 1, 0)] == ord("\r")) * (ends > starts)
    nonempty = np.flatnonzero(lengths > 0)
    if block.num_rows + len(invalid) != len(nonempty):
        raise rows.InputError(
            f"{source}: a quoted value spans lines between lines {first_line} and "
            f"{first_line + len(breaks)}; values may not hold line breaks (docs/data.md)"
        )
    skipped = np.zeros(len(nonempty), dtype=bool)
    skipped[[number - 1 for number, _, _ in invalid]] = True
    row_lines = nonempty[~skipped]
    # A line of blanks is no row.
    wrong = [
        (first_line + int(nonempty[number - 1]), text.rstrip("\r"), fields)
        for number, text, fields in invalid
        if text.strip()
    ]

    def text_of(row: int) -> str:
        k = row_lines[row]
        return piece[starts[k] : ends[k]].decode("utf-8", "replace").rstrip("\r")

    return block, first_line + row_lines, wrong, text_of, len(breaks)


def read_csv(
    f: typing.BinaryIO,
    source: str,
    required: typing.Sequence[str] = F.CSV_COLUMNS,
    block_bytes: int = BLOCK_BYTES,
    byte_range: typing.Optional[Range] = None,
    encoding: str = "utf-8",
) -> typing.Iterator[Chunk]:
    """Reads a CSV file of the contract, or one range of its lines, as typed chunks.

    Args:
      f: the file, opened in binary mode at its start.
      source: its name, for errors and quarantine records.
      required: the columns the header must hold (rows to score need no label, and only the
        features their model uses); of these, the id and the label may not be empty.
      block_bytes: how much text one chunk covers.
      byte_range: only these lines (from `plan_ranges`); default the whole file.
      encoding: the file's text encoding (rows.check_encoding); a line that is not text in it is
        set aside.

    Yields:
      Chunks in file order. Blank lines are not rows; line numbers are the file's.

    Raises:
      rows.InputError: the header lacks contract columns, or a quoted value spans lines.
    """
    encoding = rows.check_encoding(encoding)
    header = read_header(f, source, required, encoding)
    byte_range = byte_range or Range(source)
    if byte_range.start is not None:
        f.seek(byte_range.start)
    first_line = byte_range.first_line
    for raw_piece in _pieces(f, byte_range.end, block_bytes):
        piece, undecodable = _to_utf8(raw_piece, encoding, source, first_line, header, required)
        block, line_numbers, wrong, text_of, line_breaks = _parse_piece(
            piece, header, source, first_line
        )
        first_line += line_breaks
        batch, bad = type_block(block, line_numbers, text_of, source, required)
        for number, text, fields in wrong:
            error = rows.BadRow(
                rows.WRONG_FIELD_COUNT, None, f"expected {len(header)} fields, got {fields}"
            )
            bad.append(quarantine_record(source, number, text, error))
        yield Chunk(batch, undecodable + bad, block.num_rows + len(wrong) + len(undecodable))
