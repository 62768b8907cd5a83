"""Drift and skew between two sets of TFDV statistics, with a known false-alarm rate.

Every raw feature of the contract is compared, from the statistics alone (no second
pass over the rows):

- numeric values: the two-sample Kolmogorov-Smirnov distance, the largest gap between
  the two CDFs, read from TFDV's quantile histograms (`stats_options`). It is flagged
  when it exceeds the Kolmogorov distribution's critical value for both sample sizes
  plus the histograms' resolution (the CDF is known to within one bucket's mass and
  the sketch's rank error on each side), so a coarse histogram never raises an alarm.
- the share of missing values: Fisher's exact test.
- categorical values (`pixels`): one chi-square test of homogeneity of the values' shares
  (values too rare for the test's approximation pooled into one), so a feature is one test
  however many values it has.

All tests of one comparison share its false-alarm budget `alpha` (Bonferroni): when both
samples come from one distribution, the chance that any test of the comparison alarms
is at most `alpha`. A test with fewer than `MIN_ROWS` values on either side (the
baseline's, or the new data's) is reported as too small to judge instead. Tests that cannot reject
(no missing value on either side) are shown but not counted.
"""

import dataclasses
import typing

import numpy as np
from scipy import stats as sps
from tensorflow_metadata.proto.v0 import statistics_pb2

from tf_cartola.contract import features as F

QUANTILE_BUCKETS = 100
# The quantile sketch's rank error, as a share of the values.
QUANTILE_EPSILON = 0.001
# Below this many values on either side a test says "too few rows to judge".
MIN_ROWS = 200

DISTRIBUTION, MISSING, CATEGORY = "distribution", "missing share", "value shares"
# A chi-square cell's expected count below this is pooled with the other rare values.
MIN_EXPECTED = 5
# Anomaly kinds (validation.add_anomaly) of each test.
KINDS = {
    DISTRIBUTION: "DRIFT_DISTRIBUTION",
    MISSING: "DRIFT_MISSING_SHARE",
    CATEGORY: "DRIFT_CATEGORY_SHARE",
}


def stats_options():
    """TFDV options for every statistics the job writes: fine quantile histograms for the KS
    test.
    """
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(
        num_quantiles_histogram_buckets=QUANTILE_BUCKETS, epsilon=QUANTILE_EPSILON
    )


@dataclasses.dataclass(frozen=True)
class Check:
    """One test of one feature: what it measured on each side, its statistic, and the verdict."""

    feature: str
    test: str  # DISTRIBUTION, MISSING or CATEGORY.
    baseline: str
    current: str
    statistic: float  # KS distance, or the p-value for the share tests.
    threshold: float  # Flagged above it (KS) or below it (p-value); nan when not judged.
    drifted: bool
    note: str = ""  # Why a check was not judged.

    @property
    def kind(self) -> str:
        """The anomaly kind this check raises when it alarms."""
        return KINDS[self.test]

    def describe(self, baseline_name: str) -> str:
        """The check as one sentence for an anomaly's description."""
        measure = "KS distance" if self.test == DISTRIBUTION else "p-value"
        side = "above" if self.test == DISTRIBUTION else "below"
        return (
            f"{self.feature} {self.test}: {self.current} here, {self.baseline} in "
            f"{baseline_name}; "
            f"{measure} {self.statistic:.3g} is {side} the threshold {self.threshold:.3g}."
        )


def feature_name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    """A feature's name in TFDV statistics: its path's first step (its `name` in older
    statistics).
    """
    return feature.path.step[0] if feature.path.step else feature.name


def feature_stats(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict:
    """The features of the first dataset of TFDV statistics by name ({} when there is none): the
    one lookup of a feature's statistics (validation, drift, the report).
    """
    return {feature_name(f): f for f in stats.datasets[0].features} if stats.datasets else {}


def _common(feature) -> statistics_pb2.CommonStatistics:
    return getattr(feature, feature.WhichOneof("stats")).common_stats


def quantiles(feature) -> typing.Optional[statistics_pb2.Histogram]:
    """A numeric feature's quantile histogram in TFDV statistics, or None when it has no values."""
    for h in feature.num_stats.histograms:
        if h.type == statistics_pb2.Histogram.QUANTILES and h.buckets:
            return h
    return None


def cdf(hist: statistics_pb2.Histogram, xs: np.ndarray, right: bool) -> np.ndarray:
    """The CDF at `xs` (right limits, or left limits), spreading each bucket evenly over its
    width.

    Args:
      hist: a TFDV histogram (quantiles or standard).
      xs: the points.
      right: right limits (P(X <= x)) if true, else left limits (P(X < x)).
    """
    low = np.array([b.low_value for b in hist.buckets])
    high = np.array([b.high_value for b in hist.buckets])
    count = np.array([b.sample_count for b in hist.buckets])
    x = xs[:, None]
    width = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.clip((x - low) / np.where(width > 0, width, 1.0), 0.0, 1.0)
    point = (x >= low) if right else (x > low)  # A bucket of one value is a step there.
    share = np.where(width > 0, spread, point)
    return share @ count / count.sum()


def ks_distance(a: statistics_pb2.Histogram, b: statistics_pb2.Histogram) -> float:
    """The largest gap between the CDFs of two quantile histograms (both limits at every bucket
    edge).
    """
    edges = np.unique(
        [v for h in (a, b) for bucket in h.buckets for v in (bucket.low_value, bucket.high_value)]
    )
    return float(max(np.max(np.abs(cdf(a, edges, r) - cdf(b, edges, r))) for r in (True, False)))


def _share(count: float, total: float) -> str:
    return f"{100.0 * count / total:.1f}%" if total else "n/a"


def _fisher(a: float, n_a: float, b: float, n_b: float) -> float:
    return float(sps.fisher_exact([[round(a), round(n_a - a)], [round(b), round(n_b - b)]])[1])


def _category_counts(feature) -> typing.Tuple[dict, bool]:
    """{value: count} from the rank histogram, and whether it lists every value."""
    s = feature.string_stats
    counts = {b.label: b.sample_count for b in s.rank_histogram.buckets}
    return counts, len(counts) >= s.unique


def _pooled(table: np.ndarray) -> np.ndarray:
    """A 2 x k table of value counts with the values whose expected count is below MIN_EXPECTED on
    either side pooled into one column (kept when it reaches MIN_EXPECTED itself), and empty
    columns dropped.
    """
    table = table[:, table.sum(axis=0) > 0]
    expected = table.sum(axis=0)[None, :] * table.sum(axis=1)[:, None] / max(table.sum(), 1)
    rare = (expected < MIN_EXPECTED).any(axis=0)
    pooled = table[:, rare].sum(axis=1, keepdims=True)
    pooled_expected = pooled.sum() * table.sum(axis=1) / max(table.sum(), 1)
    return (
        np.column_stack([table[:, ~rare], pooled])
        if (pooled_expected >= MIN_EXPECTED).all()
        else table[:, ~rare]
    )


def _tests(name: str, base, cur) -> typing.Iterator[tuple]:
    """(test, baseline text, current text, (baseline size, current size), kind, args) of every test
    of one feature.
    """
    cb, cc = _common(base), _common(cur)
    rows_b, rows_c = cb.num_missing + cb.num_non_missing, cc.num_missing + cc.num_non_missing
    yield (
        MISSING,
        _share(cb.num_missing, rows_b),
        _share(cc.num_missing, rows_c),
        (rows_b, rows_c),
        "fisher",
        (cb.num_missing, rows_b, cc.num_missing, rows_c),
    )
    values = (cb.num_non_missing, cc.num_non_missing)
    if base.HasField("num_stats") and cur.HasField("num_stats"):
        hb, hc = quantiles(base), quantiles(cur)
        yield (
            DISTRIBUTION,
            f"median {base.num_stats.median:.4g}",
            f"median {cur.num_stats.median:.4g}",
            values if hb and hc else (0, 0),
            "ks",
            (hb, hc, *values),
        )
    elif base.HasField("string_stats") and cur.HasField("string_stats"):
        (counts_b, all_b), (counts_c, all_c) = _category_counts(base), _category_counts(cur)
        known = [
            v
            for v in sorted(set(counts_b) | set(counts_c))  # Otherwise a value's count is unknown.
            if (v in counts_b or all_b) and (v in counts_c or all_c)
        ]
        table = np.array(
            [[counts.get(v, 0.0) for v in known] for counts in (counts_b, counts_c)]
        ).reshape(2, -1)
        shares = table / np.maximum(np.array(values, dtype=float)[:, None], 1)
        moved = known[int(np.argmax(np.abs(shares[0] - shares[1])))] if known else None
        texts = [
            f"{len(c)} values"
            + (f", {moved!r} {_share(c.get(moved, 0.0), n)}" if moved is not None else "")
            for c, n in ((counts_b, values[0]), (counts_c, values[1]))
        ]
        # Values past the rank histogram.
        others = np.array(values, dtype=float) - table.sum(axis=1)
        yield (CATEGORY, *texts, values, "chi2", np.column_stack([table, others]))


def _unjudged(size_b: float, size_c: float, kind: str, args) -> typing.Tuple[float, str]:
    """(statistic, why) for a test that cannot judge: too few rows (statistic nan), or nothing to
    compare (p-value 1); (nan, "") when it can.
    """
    if min(size_b, size_c) < MIN_ROWS:
        counts = f"{size_b:g} in the baseline, {size_c:g} here, {MIN_ROWS} needed"
        return float("nan"), f"too few rows to judge: {counts}"
    if kind == "fisher" and args[0] + args[2] == 0:
        return 1.0, "none on either side"
    if kind == "chi2" and _pooled(args).shape[1] < 2:
        return 1.0, "one value on both sides"
    return float("nan"), ""


def compare(
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    alpha: float,
    features: typing.Sequence[str] = F.RAW_FEATURES,
) -> typing.List[Check]:
    """Tests every feature of `current` for drift from `baseline`.

    Args:
      baseline: TFDV statistics (one dataset), made with `stats_options()`.
      current: the statistics of the data judged, made the same way.
      alpha: the comparison's false-alarm budget, shared by all its tests.
      features: the features to compare; those missing from either side are noted.

    Returns:
      One Check per test, in feature order.
    """
    fb, fc = feature_stats(baseline), feature_stats(current)
    planned, notes = [], []
    for name in features:
        if name not in fb or name not in fc:
            where = "the baseline" if name not in fb else "this data"
            notes.append(
                Check(name, "(all)", "", "", float("nan"), float("nan"), False, f"not in {where}")
            )
            continue
        for test, b_text, c_text, (size_b, size_c), kind, args in _tests(name, fb[name], fc[name]):
            statistic, why = _unjudged(size_b, size_c, kind, args)
            if why:
                notes.append(
                    Check(name, test, b_text, c_text, statistic, float("nan"), False, why)
                )
            else:
                planned.append((name, test, b_text, c_text, kind, args))
    per_test = alpha / max(len(planned), 1)
    checks = []
    for name, test, b_text, c_text, kind, args in planned:
        if kind == "ks":
            hb, hc, nb, nc = args
            distance = ks_distance(hb, hc)
            resolution = 1.0 / len(hb.buckets) + 1.0 / len(hc.buckets) + 2 * QUANTILE_EPSILON
            threshold = (
                float(sps.kstwobign.isf(per_test)) * np.sqrt((nb + nc) / (nb * nc)) + resolution
            )
            checks.append(
                Check(name, test, b_text, c_text, distance, threshold, bool(distance > threshold))
            )
        else:
            p = (
                _fisher(*args)
                if kind == "fisher"
                else float(sps.chi2_contingency(_pooled(args), correction=False)[1])
            )
            checks.append(Check(name, test, b_text, c_text, p, per_test, bool(p < per_test)))
    order = {name: i for i, name in enumerate(features)}
    return sorted(checks + notes, key=lambda c: (order[c.feature], c.test))


def drifted_features(checks: typing.Iterable[Check]) -> typing.List[str]:
    """The features with at least one alarm, in order."""
    return list(dict.fromkeys(c.feature for c in checks if c.drifted))


def to_json(checks: typing.Iterable[Check]) -> typing.List[dict]:
    """Checks as JSON-ready dicts (NaN as None), for the manifest and the report."""
    out = []
    for c in checks:
        row = dataclasses.asdict(c)
        for key in ("statistic", "threshold"):
            row[key] = None if np.isnan(row[key]) else round(row[key], 6)
        out.append(row)
    return out
