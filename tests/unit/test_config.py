import glob
import os

import pytest

from tests.helpers import ROOT
from tf_cartola.contract import config


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))))
def test_every_config_file_loads(path):
    cfg = config.load(path)
    assert cfg.name
    assert len(cfg.preprocess.split_ratio) == 2
    assert cfg.train.feature_names()  # Feature names are checked against the contract.


def test_unknown_key_is_an_error():
    with pytest.raises(config.ConfigError, match="unknown key.*'epoch'"):
        config.from_dict({"preprocess": {"epoch": 3}})
    with pytest.raises(config.ConfigError, match="unknown key"):
        config.from_dict({"preprocesss": {}})


def test_wrong_type_is_an_error():
    with pytest.raises(config.ConfigError, match="fail_on_anomalies: expected bool"):
        config.from_dict({"preprocess": {"fail_on_anomalies": "yes"}})


def test_override_replaces_only_given_fields():
    cfg = config.override(config.from_dict({}), "preprocess", input="x.csv", output_dir=None)
    assert cfg.preprocess.input == "x.csv"
    assert cfg.preprocess.output_dir == config.PreprocessConfig().output_dir


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"preprocess": {"split_ratio": [0, 0]}},
            "preprocess.split_ratio: must be two positive whole numbers",
        ),
        ({"preprocess": {"split_ratio": [2, 1, 1]}}, "preprocess.split_ratio"),
        (
            {"preprocess": {"max_bad_row_fraction": 2}},
            r"preprocess.max_bad_row_fraction: must be in \[0, 1\]",
        ),
        (
            {"preprocess": {"drift_false_alarm_rate": 0}},
            r"preprocess.drift_false_alarm_rate: must be in \(0, 0.5\]",
        ),
        ({"train": {"batch_size": 0}}, "train.batch_size: must be positive"),
        ({"train": {"learning_rate": -0.1}}, "train.learning_rate: must be positive"),
        ({"blessing": {"min_ks": 1.5}}, r"blessing.min_ks: must be in \[0, 1\]"),
    ],
)
def test_values_out_of_range_are_errors_naming_the_field(data, message):
    with pytest.raises(config.ConfigError, match=message):
        config.from_dict(data)


def test_an_override_out_of_range_is_an_error():
    with pytest.raises(config.ConfigError, match="train.epochs: must be positive"):
        config.override(config.from_dict({}), "train", epochs=0)


def test_the_default_config_of_a_package_outside_the_repository_is_the_defaults(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(config, "DEFAULT", str(tmp_path / "configs" / "default.yaml"))
    assert config.load(config.DEFAULT) == config.from_dict({})
    with pytest.raises(FileNotFoundError):
        config.load(str(tmp_path / "mine.yaml"))  # A config the user names must exist.
