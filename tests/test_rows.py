import pytest
import tensorflow as tf

from tf_cartola import features as F
from tf_cartola import rows

HEADER = list(F.CSV_COLUMNS)


def _fields(**overrides):
    cells = {c: "1" for c in HEADER}
    cells.update({"pixels": "1920x1080", "avg_3": "0.5"})
    cells.update(overrides)
    return [cells[c] for c in HEADER]


def test_parse_types_columns_and_keeps_missing_as_none():
    row = rows.parse_fields(HEADER, _fields(rel_pont="", escalacoes="12.0", anos_como_pro="2.0"))
    assert row["rel_pont"] is None
    assert row["escalacoes"] == 12.0 and isinstance(row["escalacoes"], float)
    assert row["anos_como_pro"] == 2 and isinstance(row["anos_como_pro"], int)
    assert row["pixels"] == "1920x1080"


def test_header_order_does_not_matter():
    reordered = list(reversed(HEADER))
    fields = list(reversed(_fields(avg_4="0.25")))
    assert rows.parse_fields(reordered, fields)["avg_4"] == 0.25


@pytest.mark.parametrize(
    "overrides, kind, column",
    [
        ({"escalacoes": "abc"}, rows.NOT_A_NUMBER, "escalacoes"),
        ({"avg_3": "nan"}, rows.NOT_A_NUMBER, "avg_3"),
        ({"interacoes": "1.5"}, rows.NOT_AN_INT, "interacoes"),
        ({F.LABEL_KEY: ""}, rows.MISSING_REQUIRED, F.LABEL_KEY),
    ],
)
def test_malformed_values_raise_bad_row_with_kind_and_column(overrides, kind, column):
    with pytest.raises(rows.BadRow) as e:
        rows.parse_fields(HEADER, _fields(**overrides))
    assert (e.value.kind, e.value.column) == (kind, column)


def test_wrong_field_count_is_a_bad_row():
    with pytest.raises(rows.BadRow) as e:
        rows.parse_fields(HEADER, _fields()[:-2])
    assert e.value.kind == rows.WRONG_FIELD_COUNT


def test_header_missing_columns_is_an_input_error():
    with pytest.raises(rows.InputError, match="lacks column.*pixels"):
        rows.check_header(HEADER[:-1], "f.csv")


def test_to_example_round_trips_through_the_raw_feature_spec():
    row = rows.parse_fields(HEADER, _fields(rel_pont="", anos_como_pro="3"))
    parsed = tf.io.parse_single_example(rows.to_example(row), F.raw_feature_spec())
    assert parsed["anos_como_pro"].values.numpy().tolist() == [3]
    assert parsed["rel_pont"].values.numpy().tolist() == []  # Missing stays missing.
    assert parsed["pixels"].values.numpy().tolist() == [b"1920x1080"]
