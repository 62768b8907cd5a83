"""Seeded synthetic Cartola users that follow the data contract (docs/data.md).

    python -m tf_cartola.synthetic --rows 128000 --seed 7 --out data/cartola.csv
    python -m tf_cartola.synthetic --next_month_of data/cartola.csv --seed 8 --out next.csv

The command line is `__main__`. The label is drawn from a logistic model of the data scientists'
six final features, so their procedure recovers KS ~0.60, precision ~0.81, recall ~0.75. Collinear
pairs stay collinear; missing cells, -1 sentinels and malformed `pixels` appear at realistic rates.
"""

import logging

import numpy as np
import pandas as pd

from tf_cartola.contract import features as F

# Label model on z-scored engineered features; tuned so the reference procedure
# lands on the real data's numbers (docs/data.md) (see tests/test_synthetic.py).
_LABEL_WEIGHTS = {
    "anos_como_pro": 1.25,
    "ceil_avg_3": 0.55,
    "ceil_avg_4": 0.35,
    "escalacoes": 0.45,
    "norm_escalacao": 0.30,
    "log_tempo_desperd": 0.25,
}
_LABEL_SCALE = 1.25
_LABEL_BIAS = -0.05
_RESOLUTIONS = np.array(
    [
        "1920x1080",
        "1366x768",
        "1280x720",
        "1536x864",
        "2560x1440",
        "360x640",
        "414x896",
        "390x844",
        "768x1024",
    ]
)
_RESOLUTION_P = np.array([0.26, 0.16, 0.08, 0.08, 0.05, 0.15, 0.09, 0.09, 0.04])

log = logging.getLogger(__name__)
CHUNK_ROWS = 1_000_000  # Above this, the CLI generates and writes a file in parts.


def _coupled(rng, values: np.ndarray, latent: np.ndarray, rho: float) -> np.ndarray:
    """Reorders `values` so their ranks follow `rho * latent + noise`: keeps the marginal
    exactly.
    """
    key = rho * latent + np.sqrt(1.0 - rho**2) * rng.standard_normal(len(latent))
    out = np.empty_like(values)
    out[np.argsort(key)] = np.sort(values)
    return out


def _zero_inflated_gamma(rng, n, p_zero, shape, scale, cap):
    x = np.minimum(rng.gamma(shape, scale, n), cap)
    return np.where(rng.random(n) < p_zero, 0.0, x)


def _long_tail(rng, n, p_zero, sigma, median):
    return np.where(rng.random(n) < p_zero, 0.0, np.round(rng.lognormal(np.log(median), sigma, n)))


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def generate(rows: int, seed=0, first_id: int = 10_000_000) -> pd.DataFrame:
    """Generates `rows` synthetic users with the CSV columns of the feature contract.

    Args:
      rows: number of users.
      seed: RNG seed (an int, or a sequence of ints); the same seed gives the same frame.
      first_id: the ids are distinct values of first_id + 3k, k < 3 x rows.

    Returns:
      A DataFrame with columns `features.CSV_COLUMNS`; missing cells are NaN / None.
    """
    rng = np.random.default_rng(seed)
    engagement = rng.standard_normal(rows)
    drawn = _activity(rng, rows, engagement)
    chance = propensity(
        *(drawn[c] for c in ("anos_como_pro", "avg_3", "avg_4", "escalacoes", "norm_escalacao")),
        drawn["tempo_desperd"],
    )
    label = (rng.random(rows) < chance).astype(np.int64)
    # Missing cells and malformed values, at random (after the label is drawn).
    drawn["rel_pont"] = np.where(rng.random(rows) < 0.08, np.nan, drawn["rel_pont"])
    drawn["tempo_desperd"] = np.where(rng.random(rows) < 0.06, np.nan, drawn["tempo_desperd"])
    pixel_roll = rng.random(rows)
    drawn[F.PIXELS][pixel_roll < 0.05] = None
    drawn[F.PIXELS][(pixel_roll >= 0.05) & (pixel_roll < 0.06)] = "unknown"
    ids = rng.permutation(np.arange(first_id, first_id + 3 * rows, 3, dtype=np.int64))[:rows]
    frame = pd.DataFrame({F.ID_KEY: ids, F.LABEL_KEY: label, **_rounded(drawn)})
    frame["facebook_num"] = _long_tail(rng, rows, 0.5, 1.4, 4)
    frame["instagram_num"] = _long_tail(rng, rows, 0.55, 1.4, 3)
    gplay = rng.random(rows) < 1.0 / (1.0 + np.exp(-(0.5 * engagement - 0.6)))
    frame["gplay_free"] = gplay.astype(np.int64)
    return frame[list(F.CSV_COLUMNS)]


def _activity(rng, n: int, engagement: np.ndarray) -> dict:
    """The users' activity columns, each coupled to their `engagement` as the real data's are."""
    anos_como_pro = _coupled(
        rng, rng.choice(4, n, p=[0.68, 0.1035, 0.123, 0.0935]).astype(np.int64), engagement, 0.3
    )
    criacao = np.where(rng.random(n) < 0.2, 0, 1 + rng.negative_binomial(3, 3 / (3 + 2.92), n))
    criacao = np.where(rng.random(n) < 0.03, -1, np.minimum(criacao, 15)).astype(np.int64)
    avg_3 = _coupled(rng, _zero_inflated_gamma(rng, n, 0.21, 1.41, 1.48, 9.95), engagement, 0.6)
    avg_4 = _coupled(rng, _zero_inflated_gamma(rng, n, 0.61, 0.64, 1.25, 7.67), engagement, 0.5)
    escalacoes = _coupled(rng, np.round(38 * rng.beta(1.2, 1.6, n)), engagement, 0.7)
    norm_rodadas = np.clip(escalacoes / 38 + rng.normal(0, 0.02, n), 0, 1)
    norm_escalacao = _coupled(rng, rng.beta(2.0, 2.0, n), engagement, 0.5)
    rel_pont = _coupled(rng, rng.beta(3.0, 3.0, n), engagement, 0.4)
    dif_melhoria = 2.0 * rel_pont - 1.0 + rng.normal(0, 0.05, n)
    min_camp = _coupled(rng, _long_tail(rng, n, 0.3, 1.0, 3), engagement, 0.4)
    max_camp = min_camp + rng.poisson(0.5, n)
    tempo = _coupled(rng, rng.lognormal(np.log(40), 1.3, n), engagement, 0.5)
    interacoes = _long_tail(rng, n, 0.25, 1.5, 8).astype(np.int64)
    atletismo = np.where(rng.random(n) < 0.05, -1, _long_tail(rng, n, 0.6, 1.2, 3))
    volei = np.where(rng.random(n) < 0.05, -1, _long_tail(rng, n, 0.7, 1.2, 2))
    return {
        "anos_como_pro": anos_como_pro,
        "anos_desde_criacao": criacao,
        "avg_3": avg_3,
        "avg_4": avg_4,
        "dif_melhoria": dif_melhoria,
        "escalacoes": escalacoes,
        "norm_escalacao": norm_escalacao,
        "norm_rodadas": norm_rodadas,
        "rel_pont": rel_pont,
        "max_camp": max_camp,
        "min_camp": min_camp,
        "interacoes": interacoes,
        "iteracao_atletismo": atletismo.astype(np.int64),
        "iteracao_volei": volei.astype(np.int64),
        "tempo_desperd": tempo,
        F.PIXELS: rng.choice(_RESOLUTIONS, n, p=_RESOLUTION_P).astype(object),
    }


_DECIMALS = {  # As many decimals as the real CSV's cells have.
    **dict.fromkeys(("avg_3", "avg_4", "tempo_desperd"), 2),
    **dict.fromkeys(("dif_melhoria", "norm_escalacao", "norm_rodadas", "rel_pont"), 4),
}


def _rounded(drawn: dict) -> dict:
    """The columns with the decimals the real CSV has."""
    return {k: v.round(_DECIMALS[k]) if k in _DECIMALS else v for k, v in drawn.items()}


def propensity(anos_como_pro, avg_3, avg_4, escalacoes, norm_escalacao, tempo) -> np.ndarray:
    """The generator's own chance that each user is PRO: its label model on the six final
    features (a missing time spent counts as the mean).
    """
    tempo = np.asarray(tempo, np.float64)
    engineered = {
        "anos_como_pro": np.asarray(anos_como_pro, np.float64),
        "ceil_avg_3": np.minimum(avg_3, 1.0),
        "ceil_avg_4": np.minimum(avg_4, 1.0),
        "escalacoes": np.asarray(escalacoes, np.float64),
        "norm_escalacao": np.asarray(norm_escalacao, np.float64),
        "log_tempo_desperd": np.log1p(np.where(np.isnan(tempo), np.nanmean(tempo), tempo)),
    }
    logit = _LABEL_BIAS + _LABEL_SCALE * sum(
        w * _z(engineered[k]) for k, w in _LABEL_WEIGHTS.items()
    )
    return 1.0 / (1.0 + np.exp(-logit))


# A month later (`next_month`): the shares behind a monthly export of the same users.
STAY = 0.97  # Users kept; the others are gone, and as many new users join.
CONVERT = 0.08  # Non-PRO users who subscribe, on average; each in proportion to its propensity.
CHURN = 0.05  # PRO users who leave PRO, on average; each in proportion to 1 - its propensity.


def next_month(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The following month of the same users, for backtests (the rates above, README "Synthetic
    data"): 3% of users gone and as many new (ids above every earlier one); the kept users'
    activity moved a little (line-ups +-1, averages and time spent by a few percent, the line-up
    rate by 0.02); then 8% of non-PRO users on average convert, each with a chance proportional to
    the generator's true propensity on its moved features (capped at 90%), and 5% of PRO users
    on average churn, in proportion to 1 - propensity.

    Args:
      frame: a month of users with the CSV columns (as `generate` or a read CSV gives them).
      seed: the same seed gives the same month.
    """
    rng = np.random.default_rng(seed)
    kept = frame[rng.random(len(frame)) < STAY].copy()
    n = len(kept)
    kept["escalacoes"] = np.clip(kept["escalacoes"] + rng.integers(-1, 2, n), 0, 38)
    for column, cap in (("avg_3", 9.95), ("avg_4", 7.67)):
        kept[column] = np.minimum(kept[column] * np.exp(rng.normal(0, 0.05, n)), cap).round(2)
    kept["tempo_desperd"] = (kept["tempo_desperd"] * np.exp(rng.normal(0, 0.1, n))).round(2)
    kept["norm_escalacao"] = np.clip(kept["norm_escalacao"] + rng.normal(0, 0.02, n), 0, 1)
    kept["norm_escalacao"] = kept["norm_escalacao"].round(4)
    chance = propensity(
        *(kept[c].to_numpy() for c in ("anos_como_pro", "avg_3", "avg_4", "escalacoes")),
        kept["norm_escalacao"].to_numpy(),
        kept["tempo_desperd"].to_numpy(),
    )
    pro = kept[F.LABEL_KEY].to_numpy() == 1
    convert = np.minimum(CONVERT * chance / chance[~pro].mean(), 0.9)
    churn = np.minimum(CHURN * (1 - chance) / (1 - chance[pro]).mean(), 0.9)
    roll = rng.random(n)
    kept[F.LABEL_KEY] = np.where(pro, roll >= churn, roll < convert).astype(np.int64)
    new = generate(len(frame) - n, seed)
    new[F.ID_KEY] = int(frame[F.ID_KEY].max()) + 1 + np.arange(len(new))
    month = pd.concat([kept, new], ignore_index=True)
    return month.iloc[rng.permutation(len(month))].reset_index(drop=True)[list(F.CSV_COLUMNS)]


def shift_mean(frame: pd.DataFrame, column: str, sds: float, rng) -> pd.DataFrame:
    """`frame` with `column`'s mean moved by `sds` of its standard deviations: drift, for testing
    monitors.

    A float column moves as a whole; an integer column stays whole: +1 on a random share of
    rows, on top of any whole part of the step.

    Args:
      frame: generated users (changed in place and returned).
      column: the numeric column to move.
      sds: the step, in standard deviations of the column.
      rng: a numpy Generator.
    """
    values = frame[column]
    step = sds * values.std()
    if F.column_kind(column) == "int":
        add = np.floor(step) + (rng.random(len(values)) < step - np.floor(step))
        frame[column] = (values + add).astype(values.dtype)
    else:
        frame[column] = values + step
    return frame


def set_missing(frame: pd.DataFrame, column: str, share: float, rng) -> pd.DataFrame:
    """`frame` with `column` emptied in a random `share` of rows (the others as they were).

    Args:
      frame: generated users (changed in place and returned).
      column: the column to empty.
      share: the share of rows emptied.
      rng: a numpy Generator.
    """
    frame[column] = frame[column].where(
        rng.random(len(frame)) >= share, None if column == F.PIXELS else np.nan
    )
    return frame


def write_csv(frame: pd.DataFrame, path: str, mode: str = "w") -> None:
    """Writes a generated frame as CSV (mode "a": appended, without a header); missing cells are
    empty.
    """
    frame.to_csv(path, index=False, float_format="%.6g", mode=mode, header=mode == "w")


def write_generated(rows: int, seed: int, path: str) -> None:
    """Writes `generate(rows, seed)` as CSV; above CHUNK_ROWS rows, in parts of CHUNK_ROWS users
    (part k drawn with the seed (seed, k) and ids of its own), so memory stays that of one part.
    """
    if rows <= CHUNK_ROWS:
        write_csv(generate(rows, seed), path)
        return
    for k, start in enumerate(range(0, rows, CHUNK_ROWS)):
        part = generate(min(CHUNK_ROWS, rows - start), (seed, k), 10_000_000 + 3 * start)
        write_csv(part, path, "w" if k == 0 else "a")
        log.info("wrote %d of %d rows", start + len(part), rows)
