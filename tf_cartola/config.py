"""YAML configs as frozen dataclasses; an unknown or misspelt key is an error, never ignored."""

import dataclasses
import typing

import yaml


class ConfigError(ValueError):
    """A config file that does not match the dataclasses below."""


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """The Beam preprocessing job (beam_jobs.preprocess)."""

    input: str = "data/cartola.csv"
    output_dir: str = "runs/preprocess"
    schema: str = "configs/schema.pbtxt"
    split_ratio: typing.Tuple[int, int] = (2, 1)
    fail_on_anomalies: bool = True
    # Share of rows that may be quarantined before the bad rows count as an anomaly.
    max_bad_row_fraction: float = 0.0
    # Jensen-Shannon divergence above which eval-vs-train numeric drift is an anomaly.
    drift_threshold: float = 0.1


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run's configuration; sections may be left out for their defaults."""

    name: str = "default"
    preprocess: PreprocessConfig = PreprocessConfig()


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    values = {}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{where}.{key}")
        elif typing.get_origin(hint) is tuple:
            values[key] = tuple(value)
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, hint):
            raise ConfigError(f"{where}.{key}: expected {hint.__name__}, got {value!r}")
        else:
            values[key] = value
    return cls(**values)


def from_dict(data: dict) -> Config:
    """Builds a Config from plain data (as loaded from YAML)."""
    return _build(Config, data or {}, "config")


def load(path: str) -> Config:
    """Loads a YAML config file.

    Raises:
      ConfigError: unknown keys or values of the wrong type.
    """
    with open(path) as f:
        return from_dict(yaml.safe_load(f))


def override(config: Config, section: str, **changes) -> Config:
    """A copy of `config` with some fields of one section replaced (CLI flags win over the file)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})
