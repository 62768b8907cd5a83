import glob

import pytest

from tf_cartola import config


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.yaml")))
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
