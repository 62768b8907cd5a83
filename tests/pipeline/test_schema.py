"""The curated schema agrees with the feature contract (one is checked against the other)."""

import os

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from tests.helpers import CONFIG, ROOT, SCHEMA
from tf_cartola.contract import config
from tf_cartola.contract import features as F

_TYPES = {"string": schema_pb2.BYTES, "int64": schema_pb2.INT, "float32": schema_pb2.FLOAT}


def test_curated_schema_names_and_types_match_the_contract():
    schema = tfdv.load_schema_text(os.path.join(ROOT, config.load(CONFIG).preprocess.schema))
    types = {f.name: f.type for f in schema.feature}
    assert types == {c: _TYPES[F.column_dtype(c).name] for c in F.CSV_COLUMNS}


def test_label_and_id_are_not_expected_at_serving_time():
    schema = tfdv.load_schema_text(SCHEMA)
    for name in (F.LABEL_KEY, F.ID_KEY):
        assert list(tfdv.get_feature(schema, name).not_in_environment) == ["SERVING"]
    assert set(schema.default_environment) == {"TRAINING", "SERVING"}


def test_optional_columns_may_be_missing_and_the_rest_are_required():
    schema = tfdv.load_schema_text(SCHEMA)
    presence = {f.name: f.presence.min_fraction for f in schema.feature}
    assert {n for n, p in presence.items() if p < 1.0} == {"rel_pont", "tempo_desperd", "pixels"}
