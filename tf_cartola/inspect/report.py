"""One self-contained HTML page of a run: inputs, features train vs eval, anomalies and drift, the
model.

    python -m tf_cartola.inspect.report --preprocess_dir runs/preprocess --run_dir runs/train/RUN
    [--out report.html]

Every figure is inline SVG and every style inline, and the page's Content-Security-Policy
forbids any fetch: it opens offline in any browser. Without --run_dir (or for a
preprocessing output that failed validation) the model sections are left out.
`tf_cartola.train` writes one into each run folder, `beam_jobs.preprocess` one into its
output when validation fails. Exit status: 0 written, 2 a folder that is not a
preprocessing output or a training run.
"""

import html
import io
import sys
import typing

import numpy as np

from tf_cartola.common import cli, files
from tf_cartola.contract import config as config_lib
from tf_cartola.contract import manifest as manifest_lib
from tf_cartola.evaluate import backtest as backtest_lib
from tf_cartola.train import metrics as metrics_lib
from tf_cartola.validate import drift as drift_lib

SECTIONS = ("verdict", "inputs", "features", "anomalies", "model", "evaluation", "blessing")
# Tables in the order people read them: rows as they flow, stages as they ran.
ROW_ORDER = ("read", "train", "eval", "bad")
STAGE_ORDER = (
    "hash_inputs",
    "pipeline",
    "read_split",
    "statistics",
    "transform",
    "validate",
    "total",
)
HISTOGRAM_BUCKETS = 20
THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """body{font-family:sans-serif;margin:2em;max-width:72em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
.bad{background:#fdd}.ok{background:#dfd}
#verdict p{margin:.2em 0;padding:.3em .6em;font-size:1.1em}.bad b{color:#b00}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0}
figcaption{font-size:.8em;text-align:center}
code{background:#f4f4f4;padding:0 .2em}"""


class NotARunError(ValueError):
    """A folder that is not a training run (no blessing.json)."""


def load_preprocess(preprocess_dir: str) -> dict:
    """The manifest, TFDV statistics and anomalies of a preprocessing output.

    Returns:
      {"dir", "manifest" (a `Manifest`), "stats" and "anomalies" (by split), "analysis" (or None)}.

    Raises:
      PreprocessOutputError: the folder is not a preprocessing output.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

    manifest = manifest_lib.load(preprocess_dir)
    stats = {
        w: files.read_proto(
            manifest.artifact(f"stats_{w}"), statistics_pb2.DatasetFeatureStatisticsList, text=True
        )
        for w in ("train", "eval")
    }
    anomalies = {
        w: files.read_proto(
            manifest.artifact(f"anomalies_{w}"), anomalies_pb2.Anomalies, text=True
        )
        for w in ("train", "eval", "input")
        if files.exists(manifest.artifact(f"anomalies_{w}"))
    }
    analysis_path = files.join(preprocess_dir, "analysis.json")
    analysis = files.read_json(analysis_path) if files.exists(analysis_path) else None
    return {
        "dir": preprocess_dir,
        "manifest": manifest,
        "stats": stats,
        "anomalies": anomalies,
        "analysis": analysis,
    }


def load_run(run_dir: str) -> dict:
    """A training run's blessing record (metrics, baseline, decision, weights).

    Raises:
      NotARunError: the folder has no blessing.json.
    """
    path = files.join(run_dir, "blessing.json")
    if not files.exists(path):
        raise NotARunError(f"{run_dir} is not a training run: it has no blessing.json")
    evaluated = files.join(run_dir, "evaluation.json")
    return {
        "dir": run_dir,
        "blessing": files.read_json(path),
        "evaluation": files.read_json(evaluated) if files.exists(evaluated) else None,
    }


def eval_scores(preprocess: dict, run: dict) -> typing.Tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of the run's exported model on the raw eval split."""
    from tf_cartola.export import scoring  # TensorFlow: only when a page is built.

    labels, scores, _ = scoring.score_split(
        files.join(run["dir"], "export"), preprocess["manifest"].artifact("raw_eval")
    )
    return labels, scores


# Tables.


def _table(
    header: typing.Sequence[str], rows: typing.Iterable[typing.Sequence], classes=None
) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    return "".join(out) + "</table>"


def feature_rows(stats: dict) -> typing.List[tuple]:
    """(feature, split, count, missing %, min, mean, median, max) from TFDV statistics."""
    out = []
    names = sorted(set().union(*(drift_lib.feature_stats(s) for s in stats.values())))
    for name in names:
        for which, s in stats.items():
            f = drift_lib.feature_stats(s).get(name)
            if f is None:
                continue
            kind = f.WhichOneof("stats")
            common = getattr(f, kind).common_stats
            total = common.num_non_missing + common.num_missing
            missing = 100.0 * common.num_missing / total if total else 0.0
            if kind == "num_stats":
                n = f.num_stats
                out.append((name, which, int(total), missing, n.min, n.mean, n.median, n.max))
            else:
                out.append((name, which, int(total), missing, "", "", "", ""))
    return out


DRIFT_HEADER = ("feature", "comparison", "verdict", "tests: reference -> this data")
_VERDICT_ORDER = {"DRIFT": 0, "ok": 1, "not judged": 2}


def _test_text(check: dict) -> str:
    moved = f"{check['test']}: {check['baseline']} -> {check['current']}"
    if check["note"]:
        return f"{moved} ({check['note']})"
    measure, side = ("KS", ">") if check["test"] == "distribution" else ("p", "<")
    flagged = side if check["drifted"] else {">": "<=", "<": ">="}[side]
    return f"{moved} ({measure} {check['statistic']:.3g} {flagged} {check['threshold']:.3g})"


def drift_rows(drift: typing.Dict[str, typing.List[dict]]) -> typing.List[tuple]:
    """One row per feature and comparison of the run's drift tests (tf_cartola.validate.drift): its
    verdict (DRIFT when any of its tests alarms, ok when one was judged, else not judged) and every
    test; drifted features first.
    """
    out = []
    for comparison, checks in drift.items():
        by_feature = {}
        for c in checks:
            by_feature.setdefault(c["feature"], []).append(c)
        for feature, tests in by_feature.items():
            verdict = (
                "DRIFT"
                if any(c["drifted"] for c in tests)
                else "ok"
                if any(c["threshold"] is not None for c in tests)
                else "not judged"
            )
            out.append((feature, comparison, verdict, "; ".join(_test_text(c) for c in tests)))
    # Stable: the manifest's order within each.
    return sorted(out, key=lambda row: _VERDICT_ORDER[row[2]])


def verdict_lines(
    preprocess: dict, run: typing.Optional[dict] = None
) -> typing.List[typing.Tuple[bool, str]]:
    """(good, line) for validation, drift, the blessing decision and the served version: the page's
    first lines.
    """
    manifest = preprocess["manifest"]
    lines = [_validation_line(manifest), _drift_line(manifest)]
    if run is None:
        return [
            *lines,
            (not manifest.anomalies, "Blessing: no training run in this report"),
            (True, "Served: unchanged by this run"),
        ]
    b, now = run["blessing"], run["served"]
    if b["blessed"]:
        blessing = (
            True,
            f"Blessing: blessed (KS {b['metrics']['ks']:.3f}), pushed as version {b['version']}",
        )
    else:
        blessing = (False, "Blessing: NOT blessed, " + "; ".join(b["reasons"]))
    ours = ", this run's model" if now.version is not None and now.version == b["version"] else ""
    served = (now.version is not None, f"Served: {now.describe()}{ours}")
    compared = [(b["blessed"], f"Comparison: {b['verdict']}")] if b.get("verdict") else []
    return [*lines, blessing, *compared, served]


def _validation_line(manifest) -> typing.Tuple[bool, str]:
    """(passed, what validation found)."""
    anomalies, accepted = manifest.anomalies, manifest.accepted
    if not manifest.valid:
        features = sorted({a["feature"] or "(dataset)" for a in anomalies})
        return False, f"Validation: FAILED, {len(anomalies)} anomalies in {', '.join(features)}"
    if accepted:
        return (
            True,
            f"Validation: passed, with the anomalies of {', '.join(accepted['features'])} "
            f"accepted by {accepted['by']}",
        )
    return (
        True,
        f"Validation: passed, {manifest.rows['read']} rows read, "
        f"{manifest.rows.get('bad', 0)} set aside",
    )


def _drift_line(manifest) -> typing.Tuple[bool, str]:
    """(no drift, where drift was found or against what none was)."""
    drifted = sorted({row[0] for row in drift_rows(manifest.drift) if row[2] == "DRIFT"})
    if drifted:
        return False, f"Drift: in {', '.join(drifted)}"
    baseline = manifest.baseline
    if baseline:
        return True, f"Drift: none against {baseline['description']}"
    return True, "Drift: none between train and eval (no baseline)"


def threshold_rows(labels, scores, thresholds=THRESHOLDS) -> typing.List[tuple]:
    """(threshold, precision, recall, share of users flagged) at each threshold.

    Args:
      labels: the eval split's labels.
      scores: the model's scores of the same rows.
      thresholds: the decision thresholds tabled.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores)
    out = []
    for t in thresholds:
        flagged = scores >= t
        tp = np.sum(flagged & labels)
        out.append((t, tp / max(flagged.sum(), 1), tp / max(labels.sum(), 1), flagged.mean()))
    return out


# Figures.


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg") :]


def _figure(width=4.2, height=2.8):
    """A figure with fixed margins: a layout engine would cost more than the drawing."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = (
        "none"  # Text as text, in the browser's own sans-serif: nothing is fetched.
    )
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(
        left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.3 / height
    )
    return fig, ax


def shared_histograms(
    name: str, stats: dict
) -> typing.Optional[typing.Tuple[np.ndarray, dict, bool]]:
    """(bucket edges, {split: share of its values per bucket}, log scale) of one numeric feature,
    on edges shared by every split (read from TFDV's quantile histograms), so the splits compare
    bucket for bucket. A long-tailed feature's edges are even in log(1 + x) and it is drawn on a
    log axis. None for a feature that is not numeric or has no values.
    """
    from tf_cartola.contract import features as F

    quantiles = {}
    for which, s in stats.items():
        f = drift_lib.feature_stats(s).get(name)
        if (
            f is not None
            and f.WhichOneof("stats") == "num_stats"
            and (hist := drift_lib.quantiles(f)) is not None
        ):
            quantiles[which] = hist
    if not quantiles:
        return None
    low = min(h.buckets[0].low_value for h in quantiles.values())
    high = max(h.buckets[-1].high_value for h in quantiles.values())
    log = name in F.LONG_TAIL and low >= 0 and high > 0
    if log:
        edges = np.expm1(np.linspace(np.log1p(low), np.log1p(high), HISTOGRAM_BUCKETS + 1))
    else:
        edges = np.linspace(low, high if high > low else low + 1, HISTOGRAM_BUCKETS + 1)
    shares = {
        which: np.diff(np.concatenate([[0.0], drift_lib.cdf(h, edges[1:], right=True)]))
        for which, h in quantiles.items()
    }
    return edges, shares, log


_SPLIT_COLORS = {"train": "#1f77b4", "eval": "#ff7f0e"}


def histogram_figure(name: str, stats: dict) -> typing.Optional[str]:
    """Train and eval histograms of one numeric feature on shared bucket edges, overlaid, as shares
    of values (shared_histograms): an SVG drawn directly, train filled and eval outlined. Twenty
    of these are most of a report, and matplotlib took a tenth of a second for each.
    """
    found = shared_histograms(name, stats)
    if found is None:
        return None
    edges, shares, log = found
    width, height, left, right, top, bottom = 320, 200, 44, 10, 24, 30
    top_share = max(float(s.max()) for s in shares.values()) or 1.0
    step = (width - left - right) / (len(edges) - 1)  # Edges are even on the drawn axis.

    def y(share) -> float:
        return top + (1 - share / top_share) * (height - top - bottom)

    parts = []
    for which, share in shares.items():
        color = _SPLIT_COLORS.get(which, "#555")
        if which == "train":
            parts += [
                f'<rect x="{left + i * step:.1f}" y="{y(v):.1f}" width="{step:.1f}" '
                f'height="{y(0) - y(v):.1f}" fill="{color}" fill-opacity="0.45"/>'
                for i, v in enumerate(share)
            ]
        else:
            points = " ".join(
                f"{left + (i + d) * step:.1f},{y(v):.1f}"
                for i, v in enumerate(share)
                for d in (0, 1)
            )
            parts.append(f'<polyline points="{points}" fill="none" stroke="{color}"/>')
    last = len(edges) - 1
    ticks = [(0, "middle"), (last // 2, "middle"), (last, "end")]  # The last inside the figure.
    labels = [
        f'<text x="{left + i * step:.1f}" y="{height - bottom + 12}" text-anchor="{anchor}">'
        f"{edges[i]:.3g}</text>"
        for i, anchor in ticks
    ]
    labels += [
        f'<text x="{left - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{v:.0%}</text>'
        for v in (0.0, top_share)
    ]
    legend = [
        f'<text x="{width - right}" y="{top + 12 + 11 * k}" text-anchor="end" '
        f'fill="{_SPLIT_COLORS.get(w, "#555")}">{html.escape(w)}</text>'
        for k, w in enumerate(shares)
    ]
    title = html.escape(f"{name} (log axis)" if log else name)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="9">'
        f'<text x="{width / 2}" y="14" text-anchor="middle">{title}</text>'
        + "".join(parts)
        + f'<path d="M{left},{top}V{y(0):.1f}H{width - right}" fill="none" stroke="#333"/>'
        + "".join(labels + legend)
        + "</svg>"
    )


def model_figures(labels, scores) -> typing.Dict[str, str]:
    """Score distributions, KS curve, ROC and precision-recall of eval scores, as SVG (the
    reliability diagram is the evaluation section's).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    out = {}

    fig, ax = _figure()
    bins = np.linspace(0, 1, 41)
    ax.hist(neg, bins, density=True, alpha=0.5, label=f"non-PRO (mean {neg.mean():.2f})")
    ax.hist(pos, bins, density=True, alpha=0.5, label=f"PRO (mean {pos.mean():.2f})")
    ax.set_xlabel("predicted PRO probability")
    ax.legend(fontsize=8)
    out["Score distributions, PRO vs non-PRO"] = _svg(fig)

    grid = np.linspace(0, 1, 501)
    cdf_pos = np.searchsorted(pos, grid, side="right") / len(pos)
    cdf_neg = np.searchsorted(neg, grid, side="right") / len(neg)
    at = int(np.argmax(cdf_neg - cdf_pos))
    fig, ax = _figure()
    ax.plot(grid, cdf_neg, label="non-PRO")
    ax.plot(grid, cdf_pos, label="PRO")
    ax.vlines(
        grid[at],
        cdf_pos[at],
        cdf_neg[at],
        colors="k",
        linestyles="dashed",
        label=f"KS {metrics_lib.ks_statistic(labels, scores):.3f} at {grid[at]:.2f}",
    )
    ax.set_xlabel("score")
    ax.set_ylabel("cumulative share")
    ax.legend(fontsize=8)
    out["KS curve: the largest gap between the two score CDFs"] = _svg(fig)

    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(labels[order])
    fp = np.cumsum(~labels[order])
    fig, ax = _figure()
    ax.plot(np.concatenate([[0], fp / len(neg)]), np.concatenate([[0], tp / len(pos)]))
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"AUC {metrics_lib.roc_auc(labels, scores):.3f}", fontsize=9)
    out["ROC curve"] = _svg(fig)

    fig, ax = _figure()
    ax.plot(tp / len(pos), tp / np.arange(1, len(scores) + 1))
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    out["Precision-recall curve"] = _svg(fig)

    return out


# The page.


def _figs(figures: typing.Dict[str, str]) -> str:
    return (
        '<div class="figs">'
        + "".join(
            f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"
            for caption, svg in figures.items()
        )
        + "</div>"
    )


def _inputs_section(manifest) -> str:
    inputs = _table(
        ("file", "bytes", "fingerprint"),
        [(i["path"], i["bytes"], i["fingerprint"]) for i in manifest.inputs],
    )
    rows = _table(("rows", "count"), _in_order(manifest.rows, ROW_ORDER))
    bad = (
        _table(("bad rows: kind and column", "count"), sorted(manifest.bad_rows.items()))
        if manifest.bad_rows
        else "<p>No row was set aside.</p>"
    )
    seconds = _table(("stage", "seconds"), _in_order(manifest.seconds, STAGE_ORDER))
    return f"<h3>Files</h3>{inputs}<h3>Rows</h3>{rows}{bad}<h3>Seconds</h3>{seconds}"


def _in_order(mapping: dict, order: typing.Sequence[str]) -> typing.List[tuple]:
    """A mapping's items, the names in `order` first in that order, any other after them."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(mapping.items(), key=lambda kv: (rank.get(kv[0], len(order)), kv[0]))


def _features_section(stats: dict) -> str:
    table = _table(
        ("feature", "split", "count", "missing %", "min", "mean", "median", "max"),
        feature_rows(stats),
    )
    from tf_cartola.contract import features as F

    names = sorted(set().union(*(drift_lib.feature_stats(s) for s in stats.values())))
    figures = {  # An id's histogram says nothing.
        name: svg for name in names if name != F.ID_KEY and (svg := histogram_figure(name, stats))
    }
    return table + "<h3>Histograms (share of rows per bucket)</h3>" + _figs(figures)


def _anomalies_section(anomalies: dict, manifest) -> str:
    from tf_cartola.validate import validation

    parts = []
    for which, a in anomalies.items():
        rows = validation.anomaly_rows({which: a})
        parts.append(f"<h3>{html.escape(which)}</h3>")
        parts.append(
            _table(validation.ANOMALY_FIELDS, rows, ["bad"] * len(rows))
            if rows
            else "<p>No anomaly.</p>"
        )
    accepted = manifest.accepted
    if accepted:
        parts.append(
            f'<p class="bad">Accepted on purpose for this run by {html.escape(accepted["by"])} '
            f"({html.escape(accepted['at'])}): the anomalies and drift of "
            f"{html.escape(', '.join(accepted['features']))}, {len(accepted['anomalies'])} in "
            "all; they did not fail the run.</p>"
        )
    drift = drift_rows(manifest.drift)
    baseline = manifest.baseline
    parts.append(
        "<h3>Drift</h3><p>One row per feature, drifted ones first. KS is the Kolmogorov-Smirnov "
        "distance between distributions (flagged above the threshold), p the p-value of a test of "
        "shares (Fisher's for the missing share, chi-square for a categorical feature's values; "
        "flagged below it); the thresholds keep a run's false-alarm rate at "
        f"{manifest.config['preprocess'].get('drift_false_alarm_rate', '')}. "
        + (
            f"Baseline: {html.escape(baseline['description'])}.</p>"
            if baseline
            else "No baseline.</p>"
        )
    )
    parts.append(
        _table(DRIFT_HEADER, drift, ["bad" if r[2] == "DRIFT" else "" for r in drift])
        if drift
        else "<p>No drift comparison.</p>"
    )
    return "".join(parts)


def _analysis_section(analysis: dict) -> str:
    steps = _table(
        ("stage", "dropped", "VIF or coefficient", "KS after", "precision", "recall"),
        [
            (s["stage"], s["feature"], s["value"], s["ks"], s["precision"], s["recall"])
            for s in analysis["steps"]
        ],
    )
    kept = ", ".join(analysis["kept"])
    return f"{steps}<p>Kept: <code>[{html.escape(kept)}]</code></p>"


def _model_section(run: dict, labels, scores) -> str:
    b = run["blessing"]
    metrics = _table(("metric", "candidate"), [(m, b["metrics"][m]) for m in metrics_lib.REPORTED])
    coefficients = _table(
        ("feature", "coefficient (z-scored input)"),
        sorted(zip(b["features"], b["weights"]), key=lambda fw: -abs(fw[1])),
    )
    thresholds = _table(
        ("threshold", "precision", "recall", "share flagged"), threshold_rows(labels, scores)
    )
    return (
        f"<h3>Metrics on the eval split</h3>{metrics}<h3>Coefficients</h3>{coefficients}"
        f"<h3>Figures</h3>{_figs(model_figures(labels, scores))}<h3>At each "
        f"threshold</h3>{thresholds}"
    )


def _with_interval(m: typing.Optional[dict]) -> str:
    return "" if m is None else f"{m['value']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def evaluation_section(record: dict, labels, scores) -> str:
    """evaluation.json as a person reads it: overall metrics with intervals beside the served
    model's, the slices (a table and a forest plot of KS), the deciles (a table, gains and lift),
    and the reliability diagram with ECE and Brier.
    """
    candidate = record["candidate"]
    comparison = f"<p>{html.escape(record['verdict'])}</p>" if record.get("verdict") else ""
    figures = {
        "KS per slice with its interval (red: significantly below the overall KS)": (
            forest_figure(candidate["slices"], candidate["overall"]["ks"])
        ),
        "Gains and lift by decile (1 = the highest scores)": deciles_figure(candidate["deciles"]),
        (
            f"Reliability: ECE {candidate['overall']['ece']['value']:.4f}, "
            f"Brier {candidate['overall']['brier']['value']:.4f}"
        ): reliability_figure(labels, scores),
    }
    return (
        f"{comparison}<h3>Overall</h3>{_overall_table(record)}<h3>Figures</h3>{_figs(figures)}"
        f"<h3>Slices</h3>{_slice_table(candidate['slices'])}"
        f"<h3>Deciles, gains and lift</h3>{_decile_table(candidate['deciles'])}"
    )


def _overall_table(record: dict) -> str:
    """Each metric of the candidate with its interval, beside the served model's."""
    from tf_cartola.evaluate import metrics as evaluated

    candidate, served = record["candidate"], record["served"]
    header = ["metric", f"candidate ({record['confidence']:.0%} interval)"]
    if served:
        header.append(f"served v{served['version']}")
    return _table(
        header,
        [
            (m, _with_interval(candidate["overall"][m]))
            + ((_with_interval(served["overall"][m]),) if served else ())
            for m in evaluated.NAMES
        ],
    )


def _slice_note(r: dict) -> str:
    if r["metrics"] is None:
        return "too few rows"
    return "KS below overall" if r.get("below_overall") else ""


def _slice_table(slices: typing.Sequence[dict]) -> str:
    """A row per slice value: its rows, PRO, KS and AUC with intervals, precision and recall."""
    return _table(
        ("slice", "value", "rows", "PRO", "KS", "AUC", "precision", "recall", "note"),
        [
            (
                r["slice"],
                r["value"],
                r["rows"],
                r["rows_pro"],
                *(_with_interval((r["metrics"] or {}).get(m)) for m in ("ks", "auc")),
                *(
                    "" if r["metrics"] is None else f"{r['metrics'][m]['value']:.4f}"
                    for m in ("precision", "recall")
                ),
                _slice_note(r),
            )
            for r in slices
        ],
        classes=["bad" if r.get("below_overall") else "" for r in slices],
    )


_DECILE_COLUMNS = (
    "decile",
    "rows",
    "pro",
    "score_min",
    "score_max",
    "lift",
    "cum_pro_share",
    "ks",
)


def _decile_table(deciles: typing.Sequence[dict]) -> str:
    """A row per decile: rows, PRO, score range, lift, cumulative PRO share and KS."""
    return _table(
        ("decile", "rows", "PRO", "score min", "score max", "lift", "cum. PRO share", "KS"),
        [(*(d[k] for k in _DECILE_COLUMNS), d["ks"]) for d in deciles],
    )


def forest_figure(slices: typing.Sequence[dict], overall: dict) -> str:
    """KS with its interval per slice, the overall KS as a line."""
    shown = [r for r in slices if r["metrics"] is not None]
    fig, ax = _figure(5.6, 0.6 + 0.28 * max(len(shown), 1))
    fig.subplots_adjust(left=2.0 / 5.6)
    for i, r in enumerate(shown):
        ks = r["metrics"]["ks"]
        color = "#b00" if r.get("below_overall") else "#246"
        ax.errorbar(
            ks["value"],
            i,
            xerr=[[ks["value"] - ks["low"]], [ks["high"] - ks["value"]]],
            fmt="o",
            color=color,
            capsize=2,
            markersize=3,
        )
    ax.axvline(overall["value"], color="k", linestyle=":", linewidth=0.8)
    ax.set_yticks(range(len(shown)), [f"{r['slice'].split(':')[0]} {r['value']}" for r in shown])
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("KS")
    return _svg(fig)


def deciles_figure(deciles: typing.Sequence[dict]) -> str:
    """The cumulative share of PRO users captured (gains) and each decile's lift."""
    fig, ax = _figure(4.6, 2.8)
    fig.subplots_adjust(right=1 - 0.75 / 4.6)
    k = [d["decile"] for d in deciles]
    ax.bar(k, [d["lift"] or 0 for d in deciles], color="#9bc", label="lift")
    ax.set_xlabel("decile (1 = highest scores)")
    ax.set_ylabel("lift")
    gains = ax.twinx()
    gains.plot(k, [d["cum_pro_share"] for d in deciles], "o-", color="#b60", label="gains")
    gains.set_ylim(0, 1.02)
    gains.set_ylabel("share of PRO captured")
    ax.set_xticks(k)
    return _svg(fig)


def reliability_figure(labels, scores) -> str:
    """Mean score against PRO rate in 10 equal-count bins (the ECE's bins)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    parts = [p for p in np.array_split(np.argsort(s, kind="stable"), 10) if len(p)]
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.plot([s[p].mean() for p in parts], [y[p].mean() for p in parts], "o-")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("share PRO")
    return _svg(fig)


def backtest_line(record: dict) -> typing.Tuple[bool, str]:
    """(good, line) of a backtest: the realized KS with its interval against the KS at training
    and the minimum, the top decile's conversion and the PSI; not good when the realized KS is
    below blessing.min_ks.
    """
    model = record["model"]
    found, parts = record["realized"], []
    if found is None:
        parts.append("realized KS not known (the joined users are of one class)")
    else:
        ks = found["ks"]
        at_training = (
            "" if record["training_ks"] is None else f", {record['training_ks']:.3f} at training"
        )
        below = " BELOW the minimum" if found["below_min_ks"] else ""
        parts.append(
            f"realized KS {ks['value']:.3f} [{ks['low']:.3f}, {ks['high']:.3f}]{at_training}"
            f"{below} ({found['min_ks']})"
        )
    top = record["deciles"][0] if record["deciles"] else None
    if top and top["conversion_rate"] is not None:
        parts.append(
            f"top decile converted {top['converted']} of {top['rows']} not PRO "
            f"({top['conversion_rate']:.1%})"
        )
    if record["score_drift"]:
        drift = record["score_drift"]
        parts.append(f"PSI {drift['psi']:.3f} ({drift['psi_reading']})")
    good = not (found and found["below_min_ks"])
    return good, (
        f"Backtest: {model['name']} v{model['version']}'s scores of {record['run_id']}, "
        + ", ".join(parts)
    )


def conversion_figure(deciles: typing.Sequence[dict]) -> str:
    """The share of users not PRO at scoring time who converted, per scoring decile."""
    fig, ax = _figure(4.6, 2.8)
    k = [d["decile"] for d in deciles]
    ax.bar(k, [d["conversion_rate"] or 0 for d in deciles], color="#9bc")
    ax.set_xlabel("scoring decile (1 = highest scores)")
    ax.set_ylabel("converted a month later")
    ax.set_xticks(k)
    return _svg(fig)


def realized_figure(record: dict) -> str:
    """The realized KS with its interval beside the KS at training and the blessing minimum."""
    ks = record["realized"]["ks"]
    fig, ax = _figure(4.2, 1.6)
    fig.subplots_adjust(left=1.2 / 4.2)
    color = "#b00" if record["realized"]["below_min_ks"] else "#246"
    ax.errorbar(
        ks["value"],
        0,
        xerr=[[ks["value"] - ks["low"]], [ks["high"] - ks["value"]]],
        fmt="o",
        color=color,
        capsize=3,
    )
    labels = ["realized"]
    if record["training_ks"] is not None:
        ax.plot(record["training_ks"], 1, "s", color="#555")
        labels.append("at training")
    ax.axvline(record["realized"]["min_ks"], color="#b00", linestyle=":", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlabel("KS (dotted: blessing.min_ks)")
    return _svg(fig)


def backtest_section(record: dict) -> str:
    """backtest.json as a person reads it: the verdict, the join's rows, conversion by decile (a
    table and a chart), the realized KS against the KS at training, and the score drift.
    """
    good, line = backtest_line(record)
    rows = _table(("rows", "count"), [(k, record["rows"][k]) for k in backtest_lib.COUNTS])
    deciles = _table(
        ("decile", "not PRO at scoring", "converted", "conversion rate", "lift"),
        [
            (d["decile"], d["rows"], d["converted"], d["conversion_rate"], d["lift"])
            for d in record["deciles"]
        ],
    )
    figures = {}
    if record["deciles"]:
        figures["Conversion by scoring decile"] = conversion_figure(record["deciles"])
    if record["realized"]:
        figures["Realized KS against the KS at training"] = realized_figure(record)
    drift = record["score_drift"]
    drift_text = (
        "<p>No earlier run's scores: no score drift.</p>"
        if drift is None
        else _table(
            ("PSI", "reading", "KS", "p-value", "false-alarm rate", "drifted"),
            [
                (
                    drift["psi"],
                    drift["psi_reading"],
                    drift["ks"],
                    drift["p_value"],
                    drift["false_alarm_rate"],
                    drift["drifted"],
                )
            ],
        )
    )
    return (
        f'<p class="{"ok" if good else "bad"}"><b>{html.escape(line)}</b></p>{_figs(figures)}'
        f"<h3>Rows</h3>{rows}<h3>Conversion by decile</h3>{deciles}<h3>Score drift</h3>"
        f"{drift_text}"
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        f'content="{_CSP}"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def backtest_page(record: dict) -> str:
    """A backtest's own page (beam_jobs.backtest writes it beside backtest.json)."""
    title = f"Cartola PRO backtest: {record['model']['name']} scores of {record['run_id']}"
    return _page(title, f"<h1>{html.escape(title)}</h1>{backtest_section(record)}")


def _blessing_section(run: dict) -> str:
    b = run["blessing"]
    verdict = (
        f"blessed, pushed as version {b['version']}"
        if b["blessed"]
        else "NOT blessed: " + "; ".join(b["reasons"])
    )
    names = ("ks", "auc", "precision", "recall")
    if b["baseline"]:
        table = _table(
            ("metric", "candidate", f"version {b['baseline_version']}"),
            [(m, b["metrics"][m], b["baseline"][m]) for m in names],
        )
    else:
        table = "<p>No version was blessed before this one.</p>"
    cls = "ok" if b["blessed"] else "bad"
    return f'<p class="{cls}"><b>{html.escape(verdict)}</b></p>{table}'


def build_html(
    preprocess: dict,
    run: typing.Optional[dict] = None,
    labels=None,
    scores=None,
    backtest: typing.Optional[dict] = None,
) -> str:
    """The report page; the model and blessing sections only with a run and its eval scores.

    Args:
      preprocess: `load_preprocess`'s dict.
      run: `load_run`'s dict, or None for a page without the model sections.
      labels: the eval split's labels (with `run`).
      scores: the run's model's scores of the same rows (with `run`).
      backtest: a backtest.json record (beam_jobs.backtest) to add, or None.
    """
    manifest = preprocess["manifest"]
    name = run["dir"].rstrip("/").rsplit("/", 1)[-1] if run else preprocess["dir"]
    title = f"Cartola PRO run: {name}"
    verdict = "".join(
        f'<p class="{"ok" if good else "bad"}"><b>{html.escape(line.split(": ", 1)[0])}:</b> '
        f"{html.escape(line.split(': ', 1)[1])}</p>"
        for good, line in verdict_lines(preprocess, run)
        + ([backtest_line(backtest)] if backtest else [])
    )
    trained = f", training run <code>{html.escape(run['dir'])}</code>" if run else ""
    where = f"<p>Preprocessing output <code>{html.escape(preprocess['dir'])}</code>{trained}.</p>"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<section id="verdict">{verdict}{where}</section>',
        _section("inputs", "Inputs", _inputs_section(manifest)),
        _section("features", "Features, train vs eval", _features_section(preprocess["stats"])),
        _section(
            "anomalies",
            "Anomalies and drift",
            _anomalies_section(preprocess["anomalies"], manifest),
        ),
    ]
    if preprocess.get("analysis"):
        heading = "Feature analysis (python -m tf_cartola.inspect.analysis)"
        body.append(_section("analysis", heading, _analysis_section(preprocess["analysis"])))
    if run is not None:
        body += _run_sections(run, labels, scores)
    if backtest is not None:
        body.append(
            _section(
                "backtest",
                "Backtest: last month's scores against this month",
                backtest_section(backtest),
            )
        )
    return _page(title, "".join(body))


def _section(section_id: str, title: str, content: str) -> str:
    """A section of the page, with its id and heading (escaped); `content` is HTML."""
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{content}</section>'


def _run_sections(run: dict, labels, scores) -> typing.List[str]:
    """The sections of a training run: the model, its evaluation (when recorded), the blessing."""
    sections = [_section("model", "The model", _model_section(run, labels, scores))]
    if run.get("evaluation"):
        evaluation = evaluation_section(run["evaluation"], labels, scores)
        sections.append(
            _section("evaluation", "Evaluation: slices, deciles, calibration", evaluation)
        )
    sections.append(_section("blessing", "Blessing", _blessing_section(run)))
    return sections


def write_report(
    out: str,
    preprocess_dir: str,
    run_dir: typing.Optional[str] = None,
    labels=None,
    scores=None,
    model_config_file: typing.Optional[str] = None,
    backtest: typing.Optional[str] = None,
) -> str:
    """Writes the report; scores the eval split with the run's export when `scores` is not given.

    Args:
      out: the HTML file (any filesystem).
      preprocess_dir: a preprocessing output.
      run_dir: a training run, or None.
      labels: the eval split's labels, when the caller has them.
      scores: the run's model's eval scores, when the caller has them.
      model_config_file: the models.config the server runs with (default: the run's config's),
        which says the version served now.
      backtest: a backtest.json (beam_jobs.backtest) whose section the report adds.

    Raises:
      PreprocessOutputError: `preprocess_dir` is not a preprocessing output.
      NotARunError: `run_dir` is not a training run.
      ServedError: a models.config that cannot say what is served.
    """
    import tensorflow as tf

    from tf_cartola.export import served as served_lib

    preprocess = load_preprocess(preprocess_dir)
    run = load_run(run_dir) if run_dir else None
    if run is not None:
        serving = run["blessing"]["config"]["serving"]
        run["served"] = served_lib.served(
            serving["serving_dir"],
            serving["model_name"],
            model_config_file or serving.get("model_config_file", ""),
        )
        if scores is None:
            labels, scores = eval_scores(preprocess, run)
    with tf.io.gfile.GFile(out, "w") as f:
        f.write(
            build_html(
                preprocess,
                run,
                labels,
                scores,
                files.read_json(backtest) if backtest else None,
            )
        )
    return out


def main(argv=None) -> int:
    """The command-line entry point: returns the exit status."""
    parser = cli.parser(
        "tf_cartola.inspect.report",
        __doc__,
        "0 written, 2 not a preprocessing output or training run",
    )
    parser.add_argument("--preprocess_dir", required=True, help="a beam_jobs.preprocess output")
    parser.add_argument(
        "--run_dir", help="a tf_cartola.train run folder (adds the model sections)"
    )
    parser.add_argument(
        "--out", help="the HTML file (default: report.html in the run folder, else the output)"
    )
    config_lib.add_model_config_flag(parser)
    parser.add_argument(
        "--backtest", help="a backtest.json (beam_jobs.backtest): adds its verdict and section"
    )
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose)
    out = args.out or files.join(args.run_dir or args.preprocess_dir, "report.html")
    try:
        write_report(
            out,
            args.preprocess_dir,
            args.run_dir,
            model_config_file=args.model_config_file,
            backtest=args.backtest,
        )
    except (NotARunError, manifest_lib.PreprocessOutputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    cli.leave(cli.run(main))
