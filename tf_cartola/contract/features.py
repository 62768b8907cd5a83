"""The feature contract: the one place that names raw columns, groups and transformed names."""

ID_KEY = "GLOBO_ID"
LABEL_KEY = "pro_target"
# A score, what made it and what a campaign needs of it: the scoring outputs' columns (CSV and
# table). The decile is over the whole run; pro_target is the label at scoring time, empty when the
# input has none.
DECILE = "decile"
SCORE_COLUMNS = (
    ID_KEY,
    "pro_probability",
    "model_name",
    "model_version",
    "run_id",
    DECILE,
    LABEL_KEY,
)

PIXELS = "pixels"

# Every CSV column once, in the CSV's order: (name, value type, treatment); docs/data.md.
_COLUMNS = (
    (ID_KEY, "int", "id"),
    (LABEL_KEY, "int", "label"),
    ("anos_como_pro", "int", "plain"),
    ("anos_desde_criacao", "int", "long_tail"),
    ("avg_3", "float", "capped"),
    ("avg_4", "float", "capped"),
    ("dif_melhoria", "float", "plain"),
    ("escalacoes", "float", "plain"),
    ("norm_escalacao", "float", "plain"),
    ("norm_rodadas", "float", "plain"),
    ("rel_pont", "float", "plain"),
    ("max_camp", "float", "plain"),
    ("min_camp", "float", "long_tail"),
    ("facebook_num", "float", "long_tail"),
    ("instagram_num", "float", "long_tail"),
    ("interacoes", "int", "long_tail"),
    ("iteracao_atletismo", "int", "long_tail"),
    ("iteracao_volei", "int", "long_tail"),
    ("tempo_desperd", "float", "long_tail"),
    ("gplay_free", "int", "plain"),
    (PIXELS, "string", "pixels"),
)
CSV_COLUMNS = tuple(name for name, _, _ in _COLUMNS)
RAW_FEATURES = tuple(name for name, _, treatment in _COLUMNS if treatment not in ("id", "label"))
NUMERIC_FEATURES = tuple(c for c in RAW_FEATURES if c != PIXELS)
# Treatments: log(1+x) with x <= -1 missing; capped at 1; left as is (then imputed and z-scored).
LONG_TAIL = tuple(name for name, _, treatment in _COLUMNS if treatment == "long_tail")
CAPPED = tuple(name for name, _, treatment in _COLUMNS if treatment == "capped")
# Columns whose values are whole numbers; every other numeric column is a float.
INT_COLUMNS = frozenset(name for name, kind, _ in _COLUMNS if kind == "int")
_KINDS = {name: kind for name, kind, _ in _COLUMNS}


def column_kind(column: str) -> str:
    """A CSV column's value type: "int", "float" or "string"."""
    return _KINDS[column]


TOTAL_PIXELS = "total_pixels"
# A parsable screen resolution, "WIDTHxHEIGHT"; anything else counts as missing.
PIXELS_PATTERN = r"^\s*(\d{1,6})\s*[xX]\s*(\d{1,6})\s*$"


def transformed_name(raw: str) -> str:
    """The model-facing name of the feature made from raw column `raw`."""
    if raw in LONG_TAIL:
        return f"log_{raw}"
    if raw in CAPPED:
        return f"ceil_{raw}"
    if raw == PIXELS:
        return TOTAL_PIXELS
    return raw


TRANSFORMED_FEATURES = tuple(transformed_name(c) for c in RAW_FEATURES)

# The data scientists' final model (docs/data.md).
FINAL_FEATURES = (
    "anos_como_pro",
    "ceil_avg_3",
    "ceil_avg_4",
    "escalacoes",
    "norm_escalacao",
    "log_tempo_desperd",
)


def column_dtype(column: str):
    """The TensorFlow dtype a raw column is stored and parsed as."""
    import tensorflow as tf  # Lazy: the contract itself is needed by TF-free tools.

    if column == PIXELS:
        return tf.string
    return tf.int64 if column in INT_COLUMNS else tf.float32


def raw_feature_spec(with_label: bool = True) -> dict:
    """The tf.Example parsing spec of the raw data.

    Every feature is optional (VarLen): a missing cell is an absent feature, imputed
    by `preprocessing_fn`. The id and the label are required.
    """
    import tensorflow as tf

    spec = {ID_KEY: tf.io.FixedLenFeature([], tf.int64)}
    if with_label:
        spec[LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
    for column in RAW_FEATURES:
        spec[column] = tf.io.VarLenFeature(column_dtype(column))
    return spec
