"""preprocessing_fn through real tf.Transform, against an independent pandas re-computation."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from tests import reference
from tf_cartola import synthetic
from tf_cartola.contract import features as F
from tf_cartola.read import csv_reader, examples
from tf_cartola.transform.preprocessing import preprocessing_fn

# Literal edge cases: sentinels, missing cells, caps and every kind of pixels string.
EDGE_ROWS = [
    {
        "anos_desde_criacao": -1,
        "iteracao_volei": -1,
        "iteracao_atletismo": -5,
        "rel_pont": None,
        "tempo_desperd": None,
        "pixels": None,
        "avg_3": 5.0,
        "avg_4": 1.0,
    },
    {"anos_desde_criacao": 0, "pixels": " 800 X 600 ", "avg_3": 0.0, "tempo_desperd": 0.0},
    {"pixels": "1920*1080", "facebook_num": 0.0, "min_camp": None},
    {"pixels": "abc", "interacoes": 100000, "avg_4": 7.5},
    {"pixels": "x", "anos_como_pro": None, "escalacoes": None},
]


def _frame(n=300):
    frame = synthetic.generate(n, seed=3).astype(object)
    frame.loc[: n // 5, "rel_pont"] = None  # Missing from the first batches altogether.
    for i, edge in enumerate(EDGE_ROWS):
        for column, value in edge.items():
            frame.at[i, column] = value
    return frame.where(pd.notna(frame), None)


def _instances(frame):
    """Instance dicts as tf.Transform expects for the raw feature spec (VarLen -> lists)."""
    out = []
    for record in frame.to_dict("records"):
        instance = {}
        for column, value in record.items():
            if column in (F.ID_KEY, F.LABEL_KEY):
                instance[column] = int(value)
            else:
                instance[column] = (
                    [] if value is None else [value.encode() if column == F.PIXELS else value]
                )
        out.append(instance)
    return out


def _transform(instances, temp_dir):
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(F.raw_feature_spec())
    )
    with tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=False):
        (transformed, out_metadata), _ = (
            instances,
            metadata,
        ) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
    return transformed, out_metadata


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    frame = _frame()
    got, out_metadata = _transform(_instances(frame), str(tmp_path_factory.mktemp("tft")))
    return frame, pd.DataFrame(got), out_metadata


def test_matches_pandas_recomputation_with_missing_and_sentinels(transformed):
    frame, got, _ = transformed
    engineered = reference.engineer(frame)
    expected = reference.impute_and_scale(engineered, engineered)
    for name in F.TRANSFORMED_FEATURES:
        np.testing.assert_allclose(
            got[name].to_numpy(), expected[name].to_numpy(), atol=1e-5, err_msg=name
        )


def test_edge_rows_are_imputed_with_the_training_mean(transformed):
    frame, got, _ = transformed
    engineered = reference.engineer(frame)

    def z(name: str, value: float) -> float:
        """`value`'s z-score among the column imputed with its training mean."""
        imputed = engineered[name].fillna(engineered[name].mean())
        return (value - imputed.mean()) / imputed.std(ddof=0)

    # Row 0: sentinel and missing values all land on the (imputed) mean's z-score.
    for name in (
        "log_anos_desde_criacao",
        "log_iteracao_volei",
        "rel_pont",
        "log_tempo_desperd",
        "total_pixels",
    ):
        assert got[name][0] == pytest.approx(z(name, engineered[name].mean()), abs=1e-5), name
    assert got["ceil_avg_3"][0] == pytest.approx(z("ceil_avg_3", 1.0), abs=1e-5)  # 5.0 capped.
    assert got["total_pixels"][1] == pytest.approx(z("total_pixels", 800 * 600), abs=1e-5)
    for row in (2, 3):  # "1920*1080" and "abc" do not parse: imputed, as a missing cell is.
        assert got["total_pixels"][row] == pytest.approx(got["total_pixels"][0], abs=1e-6)


def test_outputs_are_finite(transformed):
    _, got, _ = transformed
    assert np.isfinite(got[list(F.TRANSFORMED_FEATURES)].to_numpy()).all()


def test_transformed_feature_spec_is_pinned(transformed):
    _, _, out_metadata = transformed
    golden = {
        name: tf.io.FixedLenFeature([], tf.float32)
        for name in [
            "anos_como_pro",
            "log_anos_desde_criacao",
            "ceil_avg_3",
            "ceil_avg_4",
            "dif_melhoria",
            "escalacoes",
            "norm_escalacao",
            "norm_rodadas",
            "rel_pont",
            "max_camp",
            "log_min_camp",
            "log_facebook_num",
            "log_instagram_num",
            "log_interacoes",
            "log_iteracao_atletismo",
            "log_iteracao_volei",
            "log_tempo_desperd",
            "gplay_free",
            "total_pixels",
        ]
    }
    golden[F.LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
    golden[F.ID_KEY] = tf.io.FixedLenFeature([], tf.int64)
    assert schema_utils.schema_as_feature_spec(out_metadata.schema).feature_spec == golden


def test_rows_the_reader_types_become_examples_the_raw_spec_parses_back(tmp_path):
    frame = _frame(20)
    path = tmp_path / "edge.csv"
    frame.to_csv(path, index=False)
    with open(path, "rb") as f:
        [chunk] = list(csv_reader.read_csv(f, str(path)))
    assert not chunk.bad and chunk.batch.num_rows == len(frame)
    for row, expected in zip(csv_reader.to_records(chunk.batch), frame.to_dict("records")):
        parsed = tf.io.parse_single_example(examples.to_example(row), F.raw_feature_spec())
        for column in F.RAW_FEATURES:
            values = parsed[column].values.numpy().tolist()  # Missing: no value.
            if expected[column] is None:
                assert values == [], column
            elif column == F.PIXELS:
                assert values == [expected[column].strip().encode()], column  # Cells are trimmed.
            else:
                assert values == [pytest.approx(float(expected[column]), rel=1e-6)], column
        assert int(parsed[F.ID_KEY]) == expected[F.ID_KEY]


def test_four_literal_rows_give_the_values_worked_out_by_hand(tmp_path):
    """tft_unit's style: a handful of rows, every expected value written out (derivations beside
    them)."""
    rows = [
        {
            "anos_como_pro": 1,
            "avg_3": 0.5,
            "anos_desde_criacao": 0,
            "pixels": "2x3",
            "gplay_free": 1,
        },
        {
            "anos_como_pro": 3,
            "avg_3": 2.0,
            "anos_desde_criacao": 3,
            "pixels": "10x10",
            "gplay_free": 1,
        },
        {
            "anos_como_pro": None,
            "avg_3": 1.0,
            "anos_desde_criacao": -1,
            "pixels": "bad",
            "gplay_free": 1,
        },
        {
            "anos_como_pro": 5,
            "avg_3": 0.0,
            "anos_desde_criacao": None,
            "pixels": "1x2",
            "gplay_free": 1,
        },
    ]
    instances = [
        {
            F.ID_KEY: i,
            F.LABEL_KEY: i % 2,
            **{
                c: [] if row.get(c) is None else [row[c].encode() if c == F.PIXELS else row[c]]
                for c in F.RAW_FEATURES
            },
        }
        for i, row in enumerate(rows)
    ]
    transformed, _ = _transform(instances, str(tmp_path))
    # float32 outputs.
    got = {
        name: pytest.approx([float(row[name]) for row in transformed], abs=1e-5)
        for name in F.TRANSFORMED_FEATURES
    }
    # anos_como_pro: valid 1, 3, 5, mean 3, imputed [1, 3, 3, 5], population variance 8/4 = 2: z =
    # +-2/sqrt(2).
    assert [-1.414214, 0.0, 0.0, 1.414214] == got["anos_como_pro"]
    # avg_3 capped at 1: [0.5, 1, 1, 0], mean 0.625, variance 0.6875/4 = 0.171875, std 0.414578.
    assert [-0.301511, 0.904534, 0.904534, -1.507557] == got["ceil_avg_3"]
    # log(1 + x), -1 the unknown sentinel: [0, ln 4, missing, missing] -> imputed ln 2; z =
    # +-sqrt(2), 0, 0.
    assert [-1.414214, 1.414214, 0.0, 0.0] == got["log_anos_desde_criacao"]
    # width x height: [6, 100, missing, 2], mean 36, centered [-30, 64, 0, -34], variance 6152/4 =
    # 1538.
    assert [-0.764969, 1.631934, 0.0, -0.866965] == got["total_pixels"]
    # A constant feature is centered, not divided by a zero deviation; an all-missing one is 0.
    assert [0.0] * 4 == got["gplay_free"] and [0.0] * 4 == got["rel_pont"]
    assert [int(row[F.ID_KEY]) for row in transformed] == [0, 1, 2, 3]
