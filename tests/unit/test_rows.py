import pytest
import tensorflow as tf

from tf_cartola.contract import features as F
from tf_cartola.contract import rows
from tf_cartola.read import examples


@pytest.mark.parametrize(
    "column, text, value",
    [
        ("escalacoes", "12", 12.0),
        ("escalacoes", "+.5", 0.5),
        ("anos_como_pro", "2.0", 2),
        ("interacoes", "1e3", 1000),
        ("facebook_num", "1_000", 1000.0),
        (F.ID_KEY, "9007199254740993", 9007199254740993),
    ],
)
def test_parse_number_reads_what_python_reads(column, text, value):
    got = rows.parse_number(column, text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "column, text, kind",
    [
        ("escalacoes", "abc", rows.NOT_A_NUMBER),
        ("avg_3", "nan", rows.NOT_A_NUMBER),
        ("interacoes", "1.5", rows.NOT_AN_INT),
        ("interacoes", "1e19", rows.NOT_AN_INT),
    ],
)
def test_parse_number_refuses_with_kind_and_column(column, text, kind):
    with pytest.raises(rows.BadRow) as e:
        rows.parse_number(column, text)
    assert (e.value.kind, e.value.column) == (kind, column)


def test_to_example_round_trips_through_the_raw_feature_spec():
    row = {c: 1 for c in F.CSV_COLUMNS}
    row.update({"rel_pont": None, "anos_como_pro": 3, "avg_3": 0.5, "pixels": "1920x1080"})
    parsed = tf.io.parse_single_example(examples.to_example(row), F.raw_feature_spec())
    assert parsed["anos_como_pro"].values.numpy().tolist() == [3]
    assert parsed["rel_pont"].values.numpy().tolist() == []  # Missing stays missing.
    assert parsed["pixels"].values.numpy().tolist() == [b"1920x1080"]
