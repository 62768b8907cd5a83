"""The feature contract: the one place that names raw columns, groups and transformed names."""

ID_KEY = "GLOBO_ID"
LABEL_KEY = "pro_target"

# Raw feature columns by treatment (data-spec.md). Order is the CSV's column order.
LONG_TAIL = (
    "anos_desde_criacao",
    "instagram_num",
    "facebook_num",
    "min_camp",
    "interacoes",
    "tempo_desperd",
    "iteracao_volei",
    "iteracao_atletismo",
)
CAPPED = ("avg_3", "avg_4")
PLAIN = (
    "anos_como_pro",
    "dif_melhoria",
    "escalacoes",
    "norm_escalacao",
    "norm_rodadas",
    "rel_pont",
    "max_camp",
    "gplay_free",
)
PIXELS = "pixels"

# Columns whose values are whole numbers; every other numeric column is a float.
INT_COLUMNS = frozenset(
    {
        ID_KEY,
        LABEL_KEY,
        "anos_como_pro",
        "anos_desde_criacao",
        "interacoes",
        "iteracao_atletismo",
        "iteracao_volei",
        "gplay_free",
    }
)

CSV_COLUMNS = (
    ID_KEY,
    LABEL_KEY,
    "anos_como_pro",
    "anos_desde_criacao",
    "avg_3",
    "avg_4",
    "dif_melhoria",
    "escalacoes",
    "norm_escalacao",
    "norm_rodadas",
    "rel_pont",
    "max_camp",
    "min_camp",
    "facebook_num",
    "instagram_num",
    "interacoes",
    "iteracao_atletismo",
    "iteracao_volei",
    "tempo_desperd",
    "gplay_free",
    PIXELS,
)
RAW_FEATURES = tuple(c for c in CSV_COLUMNS if c not in (ID_KEY, LABEL_KEY))
NUMERIC_FEATURES = tuple(c for c in RAW_FEATURES if c != PIXELS)
assert set(RAW_FEATURES) == set(LONG_TAIL) | set(CAPPED) | set(PLAIN) | {PIXELS}

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

# The data scientists' final model (data-spec.md).
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
