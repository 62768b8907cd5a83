"""The evaluation a team can act on: metrics with bootstrap intervals, overall and per slice, the
deciles of the scores, and the candidate against the served model on the same rows.

Intervals come from a Poisson bootstrap: every row is counted Poisson(1) times in a replicate. A
sum of Poisson(1) counts is Poisson, so a replicate draws each score bin's PRO and non-PRO counts
at once (Poisson of the bin's count) instead of one weight per row: the same bootstrap of the
binned metric, at the cost of the bins (at most BINS per group) instead of the rows. The bins'
metric differs from the rows' by at most about one bin's share, so an interval is the exact point
value less the percentiles of (replicate - the bins' own value): the basic bootstrap interval,
which corrects the upward bias of KS and ECE. The candidate and the served model
are resampled together (their joint bins: one draw per row cell of both models' bins), so the
comparison is paired. A replicate that drew no PRO or no non-PRO row of a group has no KS, AUC or
lift; it is left out of that group's intervals. bench/blessing.py measures the coverage, the false
refusals and the power.

The blessing rule (`compare`): the difference d = KS(candidate) - KS(served) on the same rows; the
candidate is refused when the one-sided upper bound of d at `false_refusal_rate` (d less the
replicates' deviation quantile at that rate) is below -`ks_margin`; equivalently when p, the
share of replicates whose deviation is at most d + ks_margin, is below the rate. A candidate no
worse than the served one is then refused at most that often.
"""

import typing

import numpy as np

from tf_cartola.evaluate import metrics, slices

BINS = 1000  # Score bins per group for the bootstrap.
JOINT_BINS = 200  # Per model, for the paired comparison's joint bins.
CHUNK = 100  # Replicates drawn at once (memory: CHUNK x bins).


def _interval(
    point: float, replicates: np.ndarray, own: float, confidence: float, bounds=(-np.inf, np.inf)
) -> dict:
    """The basic bootstrap interval: the estimate's error is taken to be distributed as the
    replicates' deviation from the bins' own value, so a biased statistic (KS, ECE: a maximum, an
    absolute value) is corrected for its bias instead of having it doubled. Replicates where the
    metric is not defined (NaN: a class drew no row) are left out, and the interval is held to
    the metric's `bounds` (on a small group the reflection can reach past them).
    """
    tail = (1 - confidence) / 2
    below, above = np.nanquantile(replicates - own, [tail, 1 - tail])
    low, high = np.clip([point - above, point - below], *bounds)
    return {"value": point, "low": float(low), "high": float(high)}


def _replicates(b: metrics.Bins, rng: np.random.Generator, replicates: int) -> dict:
    """Metric -> [replicates] of a group's bins."""
    out = {name: [] for name in metrics.NAMES}
    for start in range(0, replicates, CHUNK):
        n = min(CHUNK, replicates - start)
        pos = rng.poisson(b.pos, (n, len(b.pos))).astype(np.float64)
        neg = rng.poisson(b.neg, (n, len(b.neg))).astype(np.float64)
        for name, values in metrics.on_bins(b, pos, neg).items():
            out[name].append(values)
    return {name: np.concatenate(values) for name, values in out.items()}


def with_intervals(labels, scores, threshold: float, rng, cfg, ids=None) -> dict:
    """METRICS: every metric's value (on rows) with its bootstrap interval.

    Args:
      labels: 0/1 labels of the group's rows (both classes present).
      scores: the model's scores of the same rows.
      threshold: the decision threshold.
      rng: the bootstrap's random generator.
      cfg: the evaluate section of the config (replicates, confidence).
      ids: the rows' ids (ties in the top decile).
    """
    point = metrics.on_rows(labels, scores, threshold, ids)
    b = metrics.binned(labels, scores, threshold, BINS)
    own = metrics.on_bins(b, b.pos[None], b.neg[None])
    drawn = _replicates(b, rng, cfg.replicates)
    return {
        name: _interval(
            point[name], drawn[name], float(own[name][0]), cfg.confidence, metrics.RANGES[name]
        )
        for name in metrics.NAMES
    }


def decile_table(labels, scores, ids=None) -> typing.List[dict]:
    """DECILE rows, 1 = the highest scores: rows, PRO rows, score range, the cumulative share of
    PRO users captured (gains), the decile's lift (its PRO rate over the overall rate) and the KS
    at its lower edge (the CDFs' distance when the top deciles down to it are flagged).
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    d = metrics.deciles(s, ids)
    out, captured, passed = [], 0, 0
    for k in range(1, 11):
        rows = d == k
        n, pro = int(rows.sum()), int(y[rows].sum())
        captured, passed = captured + pro, passed + n - pro
        out.append(
            {
                "decile": k,
                "rows": n,
                "pro": pro,
                "score_min": float(s[rows].min()) if n else None,
                "score_max": float(s[rows].max()) if n else None,
                "cum_pro_share": captured / max(int(y.sum()), 1),
                "lift": (pro / n) / y.mean() if n and y.any() else None,
                "ks": abs(captured / max(int(y.sum()), 1) - passed / max(int((~y).sum()), 1)),
            }
        )
    return out


def model_evaluation(labels, scores, columns, threshold, cfg, edges, ids=None) -> dict:
    """{"overall": METRICS, "slices": [SLICE...], "deciles": [DECILE...]} of one model's scores.

    Args:
      labels: the eval rows' 0/1 labels.
      scores: the model's scores of them.
      columns: raw column -> values of the same rows, for the slices.
      threshold: the decision threshold.
      cfg: the evaluate section of the config.
      edges: numeric feature -> its training quartiles (`slices.quartiles`).
      ids: the rows' ids.
    """
    rng = np.random.default_rng(cfg.seed)
    y = np.asarray(labels).astype(bool)
    overall = with_intervals(y, scores, threshold, rng, cfg, ids)
    out = []
    for spec in cfg.slices:
        values = slices.values(spec, columns, edges)
        for value in slices.ordered(values):
            rows = values == value
            n, pro = int(rows.sum()), int(y[rows].sum())
            record = {
                "feature": spec.partition(":")[0],
                "slice": spec,
                "value": value,
                "rows": n,
                "rows_pro": pro,
                "metrics": None,
            }
            if n >= cfg.min_slice_rows and 0 < pro < n:
                record["metrics"] = with_intervals(
                    y[rows],
                    scores[rows],
                    threshold,
                    rng,
                    cfg,
                    None if ids is None else ids[rows],
                )
                record["below_overall"] = record["metrics"]["ks"]["high"] < overall["ks"]["value"]
            out.append(record)
    return {"overall": overall, "slices": out, "deciles": decile_table(y, scores, ids)}


def compare(labels, candidate, served, cfg, blessing) -> dict:
    """The paired comparison of KS on the same rows: {"metric", "difference" {value, low, high},
    "p_value", "upper_bound", "significantly_worse"} (see the module docstring for the rule).

    Args:
      labels: the eval rows' labels.
      candidate: the candidate's scores of them.
      served: the served model's scores of the same rows.
      cfg: the evaluate section (replicates, confidence, seed).
      blessing: the blessing section (ks_margin, false_refusal_rate).
    """
    y = np.asarray(labels).astype(bool)
    point = metrics.ks(y, candidate) - metrics.ks(y, served)
    # The joint cells: a row's (candidate bin, served bin, label).
    cuts = [
        np.unique(np.quantile(s, np.arange(1, JOINT_BINS) / JOINT_BINS))
        for s in (candidate, served)
    ]
    index = [np.searchsorted(c, s, side="right") for c, s in zip(cuts, (candidate, served))]
    cell = (index[0] * (JOINT_BINS + 1) + index[1]) * 2 + y
    cells, counts = np.unique(cell, return_counts=True)
    label = (cells % 2).astype(np.float64)
    # Per model: the cells in the order of its bins, and where each bin starts.
    sorted_by = []
    for bins in (cells // 2 // (JOINT_BINS + 1), cells // 2 % (JOINT_BINS + 1)):
        order = np.argsort(bins, kind="stable")
        starts = np.flatnonzero(np.diff(bins[order], prepend=-1))
        sorted_by.append((order, starts, label[order]))

    def ks(weights: np.ndarray, which: int) -> np.ndarray:
        order, starts, pro = sorted_by[which]
        w = weights[:, order]
        pos = np.add.reduceat(w * pro, starts, axis=1)
        neg = np.add.reduceat(w * (1 - pro), starts, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN where a class drew no row.
            cum_pos = np.cumsum(pos, 1) / pos.sum(1, keepdims=True)
            cum_neg = np.cumsum(neg, 1) / neg.sum(1, keepdims=True)
        return np.max(np.abs(cum_pos - cum_neg), 1)

    own = counts[None].astype(np.float64)
    own_difference = float(ks(own, 0)[0] - ks(own, 1)[0])
    rng = np.random.default_rng(cfg.seed + 1)
    drawn = []
    for start in range(0, cfg.replicates, CHUNK):
        w = rng.poisson(counts, (min(CHUNK, cfg.replicates - start), len(counts))).astype(float)
        drawn.append(ks(w, 0) - ks(w, 1))
    deviations = np.concatenate(drawn) - own_difference
    deviations = deviations[~np.isnan(deviations)]  # Replicates where a class drew no row.
    # The estimate's error d - d_true is distributed as the deviations: at the boundary of "not
    # worse by more than the margin" (d_true = -margin), a difference as low as this one has
    # probability p.
    p_value = (np.sum(deviations <= point + blessing.ks_margin) + 1) / (len(deviations) + 1)
    return {
        "metric": "ks",
        "difference": _interval(point, deviations, 0.0, cfg.confidence),
        "upper_bound": float(point - np.quantile(deviations, blessing.false_refusal_rate)),
        "p_value": float(p_value),
        "significantly_worse": bool(p_value < blessing.false_refusal_rate),
    }
