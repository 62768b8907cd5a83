"""The columnar CSV reader: typing, quarantine and line numbers on literal rows; the id-hash
split."""

import io
import random

import numpy as np
import pytest

from tf_cartola.contract import features as F
from tf_cartola.contract import rows, split
from tf_cartola.read import csv_reader

HEADER = list(F.CSV_COLUMNS)


def _cells(**overrides):
    cells = {c: "1" for c in HEADER}
    cells.update({"pixels": "1920x1080", "avg_3": "0.5"})
    cells.update(overrides)
    return cells


def _line(header=HEADER, **overrides):
    cells = _cells(**overrides)
    return ",".join(cells[c] for c in header)


def _read(text, required=F.CSV_COLUMNS, block_bytes=csv_reader.BLOCK_BYTES):
    data = text.encode("utf-8") if isinstance(text, str) else text
    chunks = list(csv_reader.read_csv(io.BytesIO(data), "f.csv", required, block_bytes))
    records = [r for c in chunks for r in csv_reader.to_records(c.batch)]
    return records, [b for c in chunks for b in c.bad], sum(c.rows for c in chunks)


def test_types_columns_and_keeps_missing_as_none():
    text = (
        "\n".join([",".join(HEADER), _line(rel_pont="", escalacoes="12.0", anos_como_pro="2.0")])
        + "\n"
    )
    [row], bad, n = _read(text)
    assert not bad and n == 1
    assert row["rel_pont"] is None
    assert row["escalacoes"] == 12.0 and isinstance(row["escalacoes"], float)
    assert row["anos_como_pro"] == 2 and isinstance(row["anos_como_pro"], int)
    assert row["pixels"] == "1920x1080"


def test_header_order_does_not_matter_and_extra_columns_are_ignored():
    header = list(reversed(HEADER)) + ["extra"]
    cells = _cells(avg_4="0.25", extra="zzz")
    [row], bad, _ = _read(",".join(header) + "\n" + ",".join(cells[c] for c in header) + "\n")
    assert not bad and row["avg_4"] == 0.25 and "extra" not in row


@pytest.mark.parametrize(
    "overrides, kind, column, reason",
    [
        (
            {"escalacoes": "abc"},
            rows.NOT_A_NUMBER,
            "escalacoes",
            "escalacoes: 'abc' is not a number",
        ),
        ({"avg_3": "nan"}, rows.NOT_A_NUMBER, "avg_3", "avg_3: 'nan' is not a finite number"),
        ({"avg_3": "1e400"}, rows.NOT_A_NUMBER, "avg_3", "avg_3: '1e400' is not a finite number"),
        (
            {"interacoes": "1.5"},
            rows.NOT_AN_INT,
            "interacoes",
            "interacoes: '1.5' is not a whole number",
        ),
        (
            {"interacoes": "0x1F"},
            rows.NOT_A_NUMBER,
            "interacoes",
            "interacoes: '0x1F' is not a number",
        ),
        (
            {F.ID_KEY: "99999999999999999999"},
            rows.NOT_AN_INT,
            F.ID_KEY,
            "GLOBO_ID: '99999999999999999999' is outside the 64-bit integer range",
        ),
        ({F.LABEL_KEY: ""}, rows.MISSING_REQUIRED, F.LABEL_KEY, "pro_target is empty"),
        (
            {F.ID_KEY: " ", "escalacoes": "abc"},
            rows.MISSING_REQUIRED,
            F.ID_KEY,
            "GLOBO_ID is empty",
        ),
    ],
)
def test_malformed_values_are_quarantined_with_kind_column_and_reason(
    overrides, kind, column, reason
):
    good = _line(**{F.ID_KEY: "5"})
    bad_line = _line(**overrides)
    records, [bad], n = _read("\n".join([",".join(HEADER), good, bad_line, good]) + "\n")
    assert n == 3 and len(records) == 2
    assert bad == {
        "source": "f.csv",
        "line_number": 3,
        "line": bad_line,
        "kind": kind,
        "column": column,
        "reason": reason,
    }


def test_wrong_field_counts_blank_lines_crlf_and_bom():
    lines = [",".join(HEADER), _line(), "1,2,3", "", "   ", _line() + ",x", '"1",' + _line()[2:]]
    text = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    records, bad, n = _read(text)
    assert n == 4 and len(records) == 2  # Blank lines are not rows.
    # Blank lines are lines.
    assert [(b["line_number"], b["line"], b["kind"], b["reason"]) for b in bad] == [
        (3, "1,2,3", rows.WRONG_FIELD_COUNT, "expected 21 fields, got 3"),
        (
            6,
            _line() + ",x",
            rows.WRONG_FIELD_COUNT,
            "expected 21 fields, got 22",
        ),
    ]


def test_quoted_fields_keep_commas_and_values():
    cells = _cells(pixels='"1920,1080"', escalacoes='" 7 "')
    [row], bad, _ = _read(",".join(HEADER) + "\n" + ",".join(cells[c] for c in HEADER) + "\n")
    assert not bad and row["pixels"] == "1920,1080" and row["escalacoes"] == 7.0


def test_big_ids_stay_exact_and_sentinels_are_values():
    [row], _, _ = _read(
        ",".join(HEADER) + "\n" + _line(GLOBO_ID="9007199254740993", iteracao_volei="-1") + "\n"
    )
    assert row[F.ID_KEY] == 9007199254740993 and row["iteracao_volei"] == -1


def test_line_numbers_hold_across_blocks():
    lines = [",".join(HEADER)] + [_line(GLOBO_ID=str(i)) for i in range(2000)]
    lines[700] = "short,line"
    lines[1500] = _line(avg_4="x")
    records, bad, n = _read("\n".join(lines), block_bytes=4096)
    assert n == 2000 and len(records) == 1998
    assert [b["line_number"] for b in bad] == [701, 1501]
    assert [r[F.ID_KEY] for r in records] == [i for i in range(2000) if i not in (699, 1499)]


def test_vectorised_typing_agrees_with_the_cell_rule():
    """Random cells typed in batches by Arrow's casts equal the per-cell rule, value and
    verdict."""
    rng = random.Random(0)
    alphabet = "0123456789.eE+-naifINx_ "
    cells = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    cells += [
        "12",
        "-3",
        "007",
        "1e3",
        "2.0",
        "+4",
        "5.",
        ".5",
        "inf",
        "1_000",
        "9223372036854775808",
    ]
    for column in ("interacoes", "escalacoes"):
        lines = [",".join(HEADER)] + [
            _line(GLOBO_ID=str(i), **{column: c.replace(",", "")}) for i, c in enumerate(cells)
        ]
        records, bad, _ = _read("\n".join(lines) + "\n")
        got = {r[F.ID_KEY]: r[column] for r in records}
        refused = {int(b["line"].split(",")[0]) for b in bad}
        for i, cell in enumerate(cells):
            text = cell.strip()
            try:
                expected = rows.parse_number(column, text) if text else None
            except rows.BadRow:
                assert i in refused, (column, cell)
                continue
            if column == "escalacoes" and expected is not None:
                with np.errstate(over="ignore"):  # As a tf.train.FloatList stores it.
                    expected = float(np.float32(expected))
            assert got[i] == expected, (column, cell)


def test_a_file_to_score_needs_only_the_columns_asked_for():
    header = [F.ID_KEY, "escalacoes", "avg_3"]
    [row], bad, _ = _read(",".join(header) + "\n7,3,0.5\n", required=header)
    assert not bad and row == {F.ID_KEY: 7, "escalacoes": 3.0, "avg_3": 0.5}
    with pytest.raises(rows.InputError, match=r"lacks column\(s\) \['avg_4'\]"):
        _read(",".join(header) + "\n7,3,0.5\n", required=header + ["avg_4"])


def test_a_file_without_the_label_reads_for_scoring():
    header = [c for c in HEADER if c != F.LABEL_KEY]
    [row], bad, _ = _read(",".join(header) + "\n" + _line(header) + "\n", required=header)
    assert not bad and F.LABEL_KEY not in row
    with pytest.raises(rows.InputError, match="lacks column.*pro_target"):
        _read(",".join(header) + "\n" + _line(header) + "\n")


def test_header_missing_columns_or_empty_file_is_an_input_error():
    with pytest.raises(rows.InputError, match="lacks column.*pixels"):
        _read(",".join(HEADER[:-1]) + "\n")
    with pytest.raises(rows.InputError, match="empty"):
        _read("")


def test_split_is_the_md5_of_the_id_as_before():
    # Computed with the row-at-a-time split of commit 9f618fb.
    assert {i: split.split_of(i) for i in (0, 3, 7, 42, 10000000, -5)} == {
        0: "train",
        3: "eval",
        7: "eval",
        42: "train",
        10000000: "train",
        -5: "train",
    }
    assert split.split_of(10000000, (7, 3)) == "eval" and split.split_of(3, (7, 3)) == "train"
    assert split.is_eval([0, 3, 7], (2, 1)).tolist() == [False, True, True]


def test_ranges_cover_every_line_once_with_the_file_line_numbers():
    lines = [",".join(HEADER)] + [_line(GLOBO_ID=str(i)) for i in range(3000)]
    lines[10], lines[1200], lines[2999] = "", "bad,line", _line(avg_4="x")
    data = ("\r\n".join(lines) + "\r\n").encode()
    ranges = csv_reader.plan_ranges(io.BytesIO(data), "f.csv", range_bytes=20_000)
    assert (
        len(ranges) > 5
        and ranges[0].start == len(lines[0]) + 2
        and ranges[-1].end in (None, len(data))
    )
    assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
    assert [r.first_line for r in ranges] == [1 + data[: r.start].count(b"\n") for r in ranges]
    records, bad = [], []
    for r in ranges:
        for chunk in csv_reader.read_csv(
            io.BytesIO(data), "f.csv", byte_range=r, block_bytes=7_000
        ):
            records += csv_reader.to_records(chunk.batch)
            bad += chunk.bad
    assert [r[F.ID_KEY] for r in records] == [i for i in range(3000) if i not in (9, 1199, 2998)]
    assert [(b["line_number"], b["line"]) for b in bad] == [
        (1201, "bad,line"),
        (3000, lines[2999]),
    ]


def test_a_line_break_inside_quotes_is_a_clear_error():
    text = ",".join(HEADER) + "\n" + _line(pixels='"1920\n1080"') + "\n"
    with pytest.raises(rows.InputError, match="spans lines"):
        _read(text)


def test_labels_outside_0_1_and_a_repeated_header_are_set_aside():
    lines = [
        ",".join(HEADER),
        _line(pro_target="2"),
        _line(pro_target="-1"),
        ",".join(HEADER),
        _line(),
    ]
    records, bad, n = _read("\n".join(lines) + "\n")
    assert n == 4 and len(records) == 1
    assert [(b["line_number"], b["kind"], b["reason"]) for b in bad] == [
        (2, rows.LABEL_ABOVE_1, "pro_target: 2 is neither 0 nor 1"),
        (3, rows.LABEL_BELOW_0, "pro_target: -1 is neither 0 nor 1"),
        (
            4,
            rows.REPEATED_HEADER,
            "the header line repeats here (files joined with their headers?)",
        ),
    ]
    header = [c for c in HEADER if c != F.LABEL_KEY]
    scored, bad, _ = _read(",".join(HEADER) + "\n" + _line(pro_target="2") + "\n", required=header)
    assert len(scored) == 1 and not bad  # Rows to score need no label, right or wrong.


def test_a_line_that_is_not_text_in_the_encoding_is_set_aside_at_its_true_line():
    lines = [",".join(HEADER)] + [_line(GLOBO_ID=str(i)) for i in range(1, 30)]
    # Line 12; "×" is one byte in Windows-1252.
    lines[11] = _line(GLOBO_ID="11", pixels="1920\u00d71080")
    data = "\n".join(lines).encode("windows-1252") + b"\n"
    # One piece, and many: line numbers stay exact.
    for block_bytes in (
        csv_reader.BLOCK_BYTES,
        200,
    ):
        chunks = list(csv_reader.read_csv(io.BytesIO(data), "f.csv", block_bytes=block_bytes))
        bad = [b for c in chunks for b in c.bad]
        assert [(b["line_number"], b["kind"]) for b in bad] == [(12, rows.UNDECODABLE)]
        assert "1920?1080" in bad[0]["line"].replace("\ufffd", "?") and "utf-8" in bad[0]["reason"]
        assert sum(c.rows for c in chunks) == 29 and sum(c.batch.num_rows for c in chunks) == 28
    chunks = list(csv_reader.read_csv(io.BytesIO(data), "f.csv", encoding="windows-1252"))
    assert not chunks[0].bad and chunks[0].batch.num_rows == 29
    assert csv_reader.to_records(chunks[0].batch)[10]["pixels"] == "1920\u00d71080"


@pytest.mark.parametrize(
    "encoding, says",
    [("no-such-codec", "unknown text encoding"), ("utf-16", "is not ASCII-compatible")],
)
def test_an_encoding_the_reader_cannot_split_lines_in_is_refused(encoding, says):
    with pytest.raises(rows.InputError, match=says):
        list(
            csv_reader.read_csv(
                io.BytesIO(b"GLOBO_ID\n1\n"), "f.csv", required=(), encoding=encoding
            )
        )
