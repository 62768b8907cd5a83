"""YAML configs as frozen dataclasses; an unknown or misspelt key is an error, never ignored.

Paths in a config are the user's, relative to where a command runs (input, output_dir, run_dir,
serving_dir), except `preprocess.schema`, a file that belongs with the config: relative to the
config file's own folder. So the CLIs run from any directory with the repository's config by
default.
"""

import dataclasses
import posixpath
import typing

import yaml

from tf_cartola.contract import features as F
from tf_cartola.contract import rows, split

# The repository's configs (the package sits beside them in a checkout or an editable install).
CONFIGS = posixpath.join(
    posixpath.dirname(posixpath.dirname(posixpath.dirname(__file__))), "configs"
)
DEFAULT = f"{CONFIGS}/default.yaml"


def add_flag(parser) -> None:
    """Adds `--config` (the run's YAML file, default DEFAULT) to an argparse parser."""
    parser.add_argument(
        "--config",
        default=DEFAULT,
        help="YAML config file (default: the repository's configs/default.yaml)",
    )


def add_serving_flags(parser) -> None:
    """--serving_dir, --model_name and --model_config_file (TF Serving's flag name): where the
    versions are pushed and which is served; they override the config's serving section
    (`with_serving_flags`).
    """
    parser.add_argument(
        "--serving_dir",
        help="where model versions are pushed (the served one is read there); default from the "
        "config",
    )
    parser.add_argument("--model_name", help="the model's name; default from the config")
    add_model_config_flag(parser)


def add_model_config_flag(parser) -> None:
    """--model_config_file, TF Serving's flag: the models.config the server runs with."""
    parser.add_argument(
        "--model_config_file",
        help="the models.config the server runs with: its versions and `stable` label decide "
        "which version is served (default: the config's serving.model_config_file, else the "
        "newest version pushed)",
    )


def with_serving_flags(config: "Config", args) -> "Config":
    """The config with the serving section's values the command line gave."""
    return override(
        config,
        "serving",
        serving_dir=args.serving_dir,
        model_name=args.model_name,
        model_config_file=args.model_config_file,
    )


class ConfigError(ValueError):
    """A config file that does not match the dataclasses below."""


def _require(condition: bool, field: str, rule: str, value) -> None:
    if not condition:
        raise ConfigError(f"{field}: {rule}, got {value!r}")


def _fraction(field: str, value) -> None:
    _require(0.0 <= value <= 1.0, field, "must be in [0, 1]", value)


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """The Beam preprocessing job (beam_jobs.preprocess)."""

    # CSV path or glob (any Beam filesystem), or postgresql://USER@HOST:PORT/DB with `table` or
    # `query`.
    input: str = "data/cartola.csv"
    table: str = ""
    query: str = ""
    # A database input is read in this many ranges of GLOBO_ID, in parallel.
    partitions: int = 4
    output_dir: str = "runs/preprocess"
    schema: str = f"{CONFIGS}/schema.pbtxt"
    split_ratio: typing.Tuple[int, int] = split.DEFAULT_RATIO
    fail_on_anomalies: bool = True
    # Share of rows that may be quarantined before the bad rows count as an anomaly.
    max_bad_row_fraction: float = 0.0
    # The chance that a run on data with no drift raises a drift alarm anyway
    # (tf_cartola/validate/drift.py).
    drift_false_alarm_rate: float = 0.01
    # The new train split is also compared with this: "served" (the served version of
    # serving.model_name, tf_cartola/export/served.py, when it carries a baseline), "none", or a
    # directory (a model version, or a preprocessing output).
    baseline: str = "served"
    # A CSV input's text encoding: utf-8, or another whose ASCII bytes mean ASCII (windows-1252,
    # latin-1).
    encoding: str = "utf-8"
    # Features whose anomalies (drift included) are accepted for this run, on purpose: they are
    # recorded, not failed on; anything else still fails the run. `accepted_by` says who (default:
    # the user running it).
    accept: typing.Tuple[str, ...] = ()
    accepted_by: str = ""

    def __post_init__(self):
        ratio = tuple(self.split_ratio)
        _require(
            len(ratio) == 2
            and all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in ratio),
            "split_ratio",
            "must be two positive whole numbers [train, eval]",
            list(ratio),
        )
        _fraction("max_bad_row_fraction", self.max_bad_row_fraction)
        _require(self.partitions >= 1, "partitions", "must be >= 1", self.partitions)
        try:
            rows.check_encoding(self.encoding)
        except rows.InputError as e:
            _require(False, "encoding", str(e), self.encoding)
        _require(
            not (self.table and self.query),
            "table",
            "give a table or a query, not both",
            self.table,
        )
        _require(
            0.0 < self.drift_false_alarm_rate <= 0.5,
            "drift_false_alarm_rate",
            "must be in (0, 0.5]",
            self.drift_false_alarm_rate,
        )
        _require(
            bool(self.baseline),
            "baseline",
            'must be "served", "none" or a directory',
            self.baseline,
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The Keras logistic model and its training (tf_cartola.train)."""

    # Transformed feature names, or ["all"] for every feature of the contract.
    features: typing.Tuple[str, ...] = F.FINAL_FEATURES
    optimizer: str = "adam"
    learning_rate: float = 0.05
    batch_size: int = 512
    epochs: int = 40
    # Stop when the eval loss has not improved for this many epochs (best weights kept).
    early_stopping_patience: int = 3
    l2: float = 0.0
    seed: int = 0
    run_dir: str = "runs/train"

    def __post_init__(self):
        _require(self.learning_rate > 0, "learning_rate", "must be positive", self.learning_rate)
        _require(self.batch_size > 0, "batch_size", "must be positive", self.batch_size)
        _require(self.epochs > 0, "epochs", "must be positive", self.epochs)
        _require(
            self.early_stopping_patience >= 0,
            "early_stopping_patience",
            "must be >= 0",
            self.early_stopping_patience,
        )
        _require(self.l2 >= 0, "l2", "must be >= 0", self.l2)

    def feature_names(self) -> typing.Tuple[str, ...]:
        """The resolved feature list ("all" expanded), checked against the contract."""
        names = (
            F.TRANSFORMED_FEATURES if tuple(self.features) == ("all",) else tuple(self.features)
        )
        unknown = sorted(set(names) - set(F.TRANSFORMED_FEATURES))
        if unknown or not names:
            raise ConfigError(
                f"train.features: unknown {unknown}; known: {list(F.TRANSFORMED_FEATURES)}"
            )
        return names


@dataclasses.dataclass(frozen=True)
class BlessingConfig:
    """When a trained model may be pushed: absolute thresholds, then not significantly worse than
    the served model on the same rows (tf_cartola/evaluate/evaluation.py, `compare`).
    """

    # Same shape as TrainConfig's fields (the duplicates tool pairs them): data declarations, not
    # logic.
    decision_threshold: float = 0.5
    min_ks: float = 0.45
    min_auc: float = 0.75
    min_precision: float = 0.6
    min_recall: float = 0.5
    # Refused against the served model only when the one-sided upper bound of (candidate KS -
    # served KS), at this false-refusal rate, is below -ks_margin. Two retrains of one distribution
    # differ by a few thousandths of KS on their own: a paired test on tens of thousands of rows
    # sees that, so smaller differences are not refused (bench/blessing.py).
    ks_margin: float = 0.005
    false_refusal_rate: float = 0.01

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _fraction(field.name, getattr(self, field.name))
        _require(
            0.0 < self.false_refusal_rate < 0.5,
            "false_refusal_rate",
            "must be in (0, 0.5)",
            self.false_refusal_rate,
        )


# The default slices: a feature by value, a string feature by a class of its own (`pixels:screen`:
# mobile, tablet, desktop, unknown) or a number in quartiles of the training split
# (`escalacoes:quartiles`).
DEFAULT_SLICES = ("anos_como_pro", "gplay_free", "pixels:screen", "escalacoes:quartiles")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The evaluation training writes to evaluation.json: slices, bootstrap intervals, deciles."""

    slices: typing.Tuple[str, ...] = DEFAULT_SLICES
    # A slice with fewer rows is listed with its size and no metrics.
    min_slice_rows: int = 200
    confidence: float = 0.95
    # Poisson bootstrap replicates, drawn with this seed.
    replicates: int = 1000
    seed: int = 0

    def __post_init__(self):
        _require(self.min_slice_rows >= 1, "min_slice_rows", "must be >= 1", self.min_slice_rows)
        _require(0.5 <= self.confidence < 1, "confidence", "must be in [0.5, 1)", self.confidence)
        _require(self.replicates >= 100, "replicates", "must be >= 100", self.replicates)
        for spec in self.slices:
            column, _, kind = spec.partition(":")
            _require(
                column in F.RAW_FEATURES and kind in ("", "screen", "quartiles"),
                "slices",
                "each is a raw feature, optionally :screen (pixels) or :quartiles",
                spec,
            )


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Where blessed models are pushed, as TF Serving reads them:
    <serving_dir>/<model_name>/<version>/.
    """

    serving_dir: str = "serving_models"
    model_name: str = "cartola_pro"
    # The models.config the server runs with (TF Serving's --model_config_file): its version
    # policy and `stable` label say which version is served (tf_cartola/export/served.py). Empty:
    # the newest version under serving_dir, TF Serving's default policy.
    model_config_file: str = ""


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run's configuration; sections may be left out for their defaults."""

    name: str = "default"
    preprocess: PreprocessConfig = PreprocessConfig()
    train: TrainConfig = TrainConfig()
    blessing: BlessingConfig = BlessingConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    serving: ServingConfig = ServingConfig()


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
            values[key] = (value,) if isinstance(value, str) else tuple(value)
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, hint):
            raise ConfigError(f"{where}.{key}: expected {hint.__name__}, got {value!r}")
        else:
            values[key] = value
    try:
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}") from None


def from_dict(data: dict) -> Config:
    """Builds a Config from plain data (as loaded from YAML)."""
    return _build(Config, data or {}, "config")


def load(path: str) -> Config:
    """Loads a YAML config file (local or any TensorFlow filesystem); a relative
    `preprocess.schema` is read from the config file's folder. The default config of a package
    installed without the repository is the dataclasses' defaults.

    Raises:
      ConfigError: unknown keys or values of the wrong type.
      FileNotFoundError: no file at `path`.
    """
    from tf_cartola.common import files

    # The package installed outside a checkout: the defaults.
    if path == DEFAULT and not files.exists(path):
        return from_dict({})
    with files.open_file(path) as f:
        data = yaml.safe_load(f) or {}
    schema = (data.get("preprocess") or {}).get("schema") if isinstance(data, dict) else None
    if isinstance(schema, str):
        data["preprocess"]["schema"] = files.relative_to(schema, path)
    return from_dict(data)


def override(config: Config, section: str, **changes) -> Config:
    """A copy of `config` with some fields of one section replaced (CLI flags win over the file).

    Raises:
      ConfigError: a replaced value is out of its range.
    """
    changes = {k: v for k, v in changes.items() if v is not None}
    try:
        replaced = dataclasses.replace(getattr(config, section), **changes)
    except ConfigError as e:
        raise ConfigError(f"{section}.{e}") from None
    return dataclasses.replace(config, **{section: replaced})
