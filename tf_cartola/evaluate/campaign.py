"""What a campaign reads off a scoring run: every user's decile over the whole run, the target
list, its expected conversions and the list size that pays best.

Deciles. A run's rows are ranked by their written score (the PRO probability rounded to
DECIMALS places, as the scores' CSV and table hold it) descending, ties by GLOBO_ID ascending, and
rank r of n is in decile d when `pandas.qcut` would put r of 1..n there (metrics.deciles): 1 = the
highest 10%. The ranks need the whole run, the decile of a row needs only the run's nine cuts (the
last row of each of deciles 1 to 9 in that order), so a distributed job computes the cuts once and
each batch's deciles where it is (`decile_cuts`, `deciles_at`). A run under 10 rows leaves some
deciles empty (5 rows take deciles 1, 3, 5, 8 and 10); rows with the same score and the same id
share a decile.

Expected conversions of a list: the sum over its users of the latest backtest's conversion rate of
their decile (tf_cartola.evaluate.backtest), with a normal interval whose variance adds each user's
Bernoulli variance r(1 - r) and the rates' own sampling variance (t_d^2 r_d (1 - r_d) / n_d for t_d
targets in decile d and n_d backtested users): an interval for the conversions the list will
realize, not only for their mean.

The list size that pays best: contacting the top k targets is worth
profit(k) = value x (expected conversions of the k) - cost x k; within a decile every contact adds
value x r_d - cost, so the best k ends a decile: the k over 0 and the decile ends that maximizes
profit(k).
"""

import statistics
import typing

import numpy as np

from tf_cartola.common import files
from tf_cartola.contract import features as F
from tf_cartola.read import csv_reader

DECIMALS = 6
DECILES = 10


def written(probabilities) -> np.ndarray:
    """The scores as the outputs write them: rounded to DECIMALS places (int32 millionths)."""
    return np.rint(np.asarray(probabilities, np.float64) * 10**DECIMALS).astype(np.int32)


def as_probability(micro: np.ndarray) -> np.ndarray:
    """Written scores (millionths) as probabilities: formatted with DECIMALS places they give back
    the same digits.
    """
    return np.asarray(micro, np.float64) / 10**DECIMALS


class Scored(typing.NamedTuple):
    """Scored rows as the outputs hold them, column by column."""

    ids: np.ndarray  # int64 GLOBO_IDs.
    micro: np.ndarray  # int32 written scores (`written`).
    pro_target: np.ndarray  # float32 label at scoring time, NaN where unknown.
    decile: typing.Optional[np.ndarray] = None  # int8 1..10, once the run's cuts are known.

    def csv_lines(self, made_by: str) -> str:
        """The rows as CSV lines of F.SCORE_COLUMNS, one string; `made_by` is
        "model_name,model_version,run_id".
        """
        label = np.where(np.isnan(self.pro_target), -1, self.pro_target).astype(np.int64)
        return "\n".join(
            f"{i},{m / 10**DECIMALS:.{DECIMALS}f},{made_by},{d},{'' if t < 0 else t}"
            for i, m, d, t in zip(
                self.ids.tolist(), self.micro.tolist(), self.decile.tolist(), label.tolist()
            )
        )

    def table_rows(self, model_name: str, model_version, run_id: str) -> typing.List[tuple]:
        """The rows as a scores table holds them (F.SCORE_COLUMNS' values; None where unknown)."""
        return [
            (
                i,
                m / 10**DECIMALS,
                model_name,
                model_version,
                run_id,
                d,
                None if np.isnan(t) else int(t),
            )
            for i, m, d, t in zip(
                self.ids.tolist(),
                self.micro.tolist(),
                self.decile.tolist(),
                self.pro_target.tolist(),
            )
        ]

    def ranked(self, cuts: "Cuts") -> "Scored":
        """These rows with their deciles in the run whose cuts these are."""
        return self._replace(decile=deciles_at(self.micro, self.ids, cuts))


def of_batch(batch, probabilities) -> Scored:
    """A typed record batch's ids and labels at scoring time (NaN when it has no label column)
    beside the model's probabilities for it.
    """
    label = (
        csv_reader.dense_column(batch, F.LABEL_KEY)
        if F.LABEL_KEY in batch.schema.names
        else np.full(batch.num_rows, np.nan)
    )
    return Scored(
        csv_reader.dense_column(batch, F.ID_KEY).astype(np.int64),
        written(probabilities),
        label.astype(np.float32),
    )


def concatenate(parts: typing.Sequence[Scored]) -> Scored:
    """Batches of scored rows as one."""
    if not parts:
        return Scored(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    columns = list(zip(*parts))
    return Scored(*(None if column[0] is None else np.concatenate(column) for column in columns))


class Cuts(typing.NamedTuple):
    """The last row of each of deciles 1 to 9, in rank order: its written score and id."""

    micro: np.ndarray  # [9] int32.
    ids: np.ndarray  # [9] int64.


def decile_cuts(micro: np.ndarray, ids: np.ndarray) -> Cuts:
    """A whole run's cuts, from its written scores and ids, without sorting the run: decile k ends
    at rank floor(e_k), e_k being metrics.deciles' k-th rank edge, and the row at a rank is found
    by selection on the score, then among the rows tied with it at that score, on the id.
    """
    micro, ids = np.asarray(micro, np.int32), np.asarray(ids, np.int64)
    n = len(micro)
    if not n:
        return Cuts(np.zeros(0, np.int32), np.zeros(0, np.int64))
    edges = np.quantile(np.arange(1, n + 1), np.linspace(0, 1, DECILES + 1))
    positions = np.floor(edges[1:DECILES]).astype(np.int64) - 1  # 0-based, in rank order.
    descending = -micro.astype(np.int64)
    chosen = np.partition(descending, positions)[positions]
    cut_ids = []
    for position, value in zip(positions, chosen):
        before = int(np.count_nonzero(descending < value))
        tied = ids[descending == value]
        cut_ids.append(np.partition(tied, position - before)[position - before])
    return Cuts((-chosen).astype(np.int32), np.array(cut_ids, np.int64))


def deciles_at(micro: np.ndarray, ids: np.ndarray, cuts: Cuts) -> np.ndarray:
    """The deciles (1..10, int8) of some of a run's rows, from the run's cuts: 1 plus the number of
    cuts a row ranks after.
    """
    out = np.ones(len(micro), np.int8)
    for cut_micro, cut_id in zip(cuts.micro, cuts.ids):
        out += (micro < cut_micro) | ((micro == cut_micro) & (ids > cut_id))
    return out


def targetable(pro_target: np.ndarray) -> np.ndarray:
    """The rows a campaign may contact: not PRO at scoring time (label 0, or unknown: NaN)."""
    return ~(np.asarray(pro_target, np.float64) == 1)


def top(micro: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    """The indices of the `n` highest-ranked rows (written score descending, id ascending)."""
    order = np.lexsort((np.asarray(ids, np.int64), -np.asarray(micro, np.int64)))
    return order[:n]


def decile_rates(backtest: dict) -> typing.Tuple[np.ndarray, np.ndarray]:
    """(conversion rate, backtested rows) per decile 1..10 of a backtest.json record (rate NaN
    where the decile had no rows).
    """
    rows = np.zeros(DECILES)
    converted = np.zeros(DECILES)
    for record in backtest["deciles"]:
        rows[record["decile"] - 1] = record["rows"]
        converted[record["decile"] - 1] = record["converted"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return converted / rows, rows


def expected_conversions(
    target_deciles: np.ndarray, backtest: dict, confidence: float = 0.95
) -> dict:
    """{"value", "low", "high", "confidence", "deciles_without_rates"}: the conversions a list of
    users with these deciles is expected to realize, by the backtest's rates (module docstring).
    Targets in a decile the backtest had no rows of are left out and listed.
    """
    rates, rows = decile_rates(backtest)
    targets = np.bincount(np.asarray(target_deciles, np.int64) - 1, minlength=DECILES)
    known = rows > 0
    r, t, n = rates[known], targets[known].astype(np.float64), rows[known]
    value = float(np.sum(t * r))
    variance = float(np.sum(t * r * (1 - r) + t**2 * r * (1 - r) / n))
    # The standard library's normal quantile: the score job need not import SciPy for it.
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    return {
        "value": value,
        "low": max(0.0, value - z * variance**0.5),
        "high": value + z * variance**0.5,
        "confidence": confidence,
        "deciles_without_rates": [d + 1 for d in np.flatnonzero(~known & (targets > 0))],
    }


def best_list_size(
    targetable_per_decile: np.ndarray, backtest: dict, value: float, cost: float
) -> dict:
    """{"rows", "expected_profit", "expected_conversions"}: the list size that maximizes expected
    profit (module docstring), over a run with these targetable users per decile 1..10.
    """
    rates, _ = decile_rates(backtest)
    rates = np.nan_to_num(rates)
    counts = np.asarray(targetable_per_decile, np.float64)
    ends = np.concatenate([[0.0], np.cumsum(counts)])
    conversions = np.concatenate([[0.0], np.cumsum(counts * rates)])
    profit = value * conversions - cost * ends
    best = int(np.argmax(profit))
    return {
        "rows": int(ends[best]),
        "expected_profit": float(profit[best]),
        "expected_conversions": float(conversions[best]),
        "value_per_conversion": value,
        "cost_per_contact": cost,
    }


TARGET_COLUMNS = (F.ID_KEY, "pro_probability", F.DECILE, "conversion_rate")


def write_targets(scored: Scored, path: str, rates: typing.Optional[np.ndarray]) -> None:
    """Writes a target list (rows in rank order) as CSV of TARGET_COLUMNS: conversion_rate is the
    backtest's rate of the row's decile, empty without a backtest.
    """
    order = top(scored.micro, scored.ids, len(scored.ids))
    with files.open_file(path, "w") as f:
        f.write(",".join(TARGET_COLUMNS) + "\n")
        for i in order.tolist():
            d = int(scored.decile[i])
            rate = "" if rates is None or np.isnan(rates[d - 1]) else f"{rates[d - 1]:.6f}"
            f.write(f"{scored.ids[i]},{scored.micro[i] / 10**DECIMALS:.{DECIMALS}f},{d},{rate}\n")


def target_record(
    target_deciles: np.ndarray,
    targetable_per_decile: np.ndarray,
    backtest: typing.Optional[dict],
    value: typing.Optional[float] = None,
    cost: typing.Optional[float] = None,
) -> dict:
    """What a target list is expected to bring: {"rows", "expected_conversions" (or None, with
    "why_not"), "best_list_size" (with a value and cost per contact and a backtest, else None)}.
    """
    record = {"rows": len(target_deciles), "expected_conversions": None, "best_list_size": None}
    if backtest is None:
        record["why_not"] = "no backtest yet: no conversion rates to expect conversions from"
        return record
    record["backtest"] = {"run_id": backtest.get("run_id"), "model": backtest.get("model")}
    record["expected_conversions"] = expected_conversions(target_deciles, backtest)
    if value is not None and cost is not None:
        record["best_list_size"] = best_list_size(targetable_per_decile, backtest, value, cost)
    return record


def describe_targets(record: dict) -> str:
    """A target list's record (`target_record`, with its path) as one line, for logs and people."""
    line = f"targets: {record['rows']} users in {record['path']}"
    expected = record["expected_conversions"]
    if expected is None:
        return f"{line}; expected conversions: none ({record['why_not']})"
    line += (
        f"; expected conversions {expected['value']:.0f} "
        f"[{expected['low']:.0f}, {expected['high']:.0f}] "
        f"({expected['confidence']:.0%}, by backtest {record['backtest']['run_id']})"
    )
    best = record["best_list_size"]
    if best:
        line += (
            f"; the best list size is {best['rows']} users (expected profit "
            f"{best['expected_profit']:.2f})"
        )
    return line
