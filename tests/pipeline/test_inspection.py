"""Inspection: the run report (parsed, and opened in a real headless browser), the feature
analysis, the notebook."""

import html.parser
import json
import os

import numpy as np
import pytest

from tests import helpers
from tests.helpers import ROOT
from tf_cartola.contract import features as F
from tf_cartola.inspect import analysis, report

COLLINEAR_PAIRS = [
    ("dif_melhoria", "rel_pont"),
    ("escalacoes", "norm_rodadas"),
    ("max_camp", "log_min_camp"),
]


class _Page(html.parser.HTMLParser):
    """Collects section ids, tags and attributes, and every cell's text."""

    def __init__(self):
        super().__init__()
        self.sections, self.tags, self.attrs, self.cells = [], [], [], []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        if tag == "section":
            self.sections.append(dict(attrs)["id"])
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)


def _page(path) -> _Page:
    page = _Page()
    page.feed(open(path).read())
    page.close()
    return page


def test_the_report_of_a_run_holds_every_section_and_the_run_numbers(trained, preprocess_run):
    manifest, _ = preprocess_run
    _, result = trained
    page = _page(result["report"])
    assert page.sections == list(report.SECTIONS)
    assert not {"script", "link", "img", "iframe"} & set(page.tags)
    assert not [v for k, v in page.attrs if k in ("src", "href") and v]  # Nothing to fetch.
    metrics = json.load(open(os.path.join(result["run_dir"], "metrics.json")))
    for key in ("ks", "auc", "precision", "recall"):
        assert f"{metrics[key]:.4g}" in page.cells, key
    assert str(metrics["rows"]) in page.cells
    for key in ("read", "train", "eval"):
        assert str(manifest.rows[key]) in page.cells
    assert manifest.inputs[0]["fingerprint"] in page.cells
    # A histogram per feature and the model figures.
    assert page.tags.count("svg") >= len(F.RAW_FEATURES) + 5


def test_the_report_shows_slices_deciles_and_calibration_in_reading_order(trained):
    _, result = trained
    text = open(result["report"]).read()
    section = text[text.index('<section id="evaluation">') :]
    section = section[: section.index("</section>")]
    evaluated = json.load(open(os.path.join(result["run_dir"], "evaluation.json")))
    page = _Page()
    page.feed(section)
    assert section.count("<svg") == 3  # The forest plot, gains and lift, reliability.
    assert "KS per slice with its interval" in section and "Reliability: ECE 0." in section
    slices = evaluated["candidate"]["slices"]
    assert [c for c in page.cells if c in {r["value"] for r in slices}]
    assert sum(page.cells.count(r["slice"]) for r in slices) >= len(slices)
    ks = evaluated["candidate"]["overall"]["ks"]
    assert f"{ks['value']:.4f} [{ks['low']:.4f}, {ks['high']:.4f}]" in page.cells
    assert page.cells[page.cells.index("decile") + 8 : page.cells.index("decile") + 9] == ["1"]
    assert "Comparison:" in text[: text.index("</section>")]
    whole = _page(result["report"]).cells
    rows = [whole.index(k) for k in ("read", "train", "eval")]
    stages = [whole.index(k) for k in ("hash_inputs", "pipeline", "total")]
    assert rows == sorted(rows) and stages == sorted(stages)


def test_the_report_gives_the_verdict_first_and_one_drift_row_per_feature(trained, preprocess_run):
    manifest, preprocess_dir = preprocess_run
    _, result = trained
    text = open(result["report"]).read()
    verdict = text[text.index('<section id="verdict">') : text.index("</section>")]
    found = [
        verdict.find(f"<b>{what}:</b>") for what in ("Validation", "Drift", "Blessing", "Served")
    ]
    assert -1 not in found and found == sorted(found), verdict
    assert f"pushed as version {result['version']}" in verdict

    rows = report.drift_rows(manifest.drift)
    comparisons = {
        (c, check["feature"]) for c, checks in manifest.drift.items() for check in checks
    }
    # One row per feature and comparison.
    assert sorted((c, f) for f, c, _, _ in rows) == sorted(comparisons)
    moved = {
        "data vs baseline": [
            {
                "feature": "avg_3",
                "test": "distribution",
                "baseline": "median 1",
                "current": "median 1",
                "statistic": 0.01,
                "threshold": 0.03,
                "drifted": False,
                "note": "",
            },
            {
                "feature": "pixels",
                "test": "missing share",
                "baseline": "5.0%",
                "current": "5.1%",
                "statistic": 0.9,
                "threshold": 0.001,
                "drifted": False,
                "note": "",
            },
            {
                "feature": "pixels",
                "test": "value shares",
                "baseline": "10 values, '1x1' 1.0%",
                "current": "11 values, '1x1' 9.0%",
                "statistic": 1e-9,
                "threshold": 0.001,
                "drifted": True,
                "note": "",
            },
        ]
    }
    [first, second] = report.drift_rows(moved)
    assert first[:3] == ("pixels", "data vs baseline", "DRIFT") and "p 1e-09 < 0.001" in first[3]
    assert second[:3] == ("avg_3", "data vs baseline", "ok")


def test_train_and_eval_histograms_share_their_bucket_edges(preprocess_run):
    _, preprocess_dir = preprocess_run
    stats = report.load_preprocess(preprocess_dir)["stats"]
    for name in ("avg_3", "min_camp"):
        edges, shares, log = report.shared_histograms(name, stats)
        assert set(shares) == {"train", "eval"} and len(edges) == report.HISTOGRAM_BUCKETS + 1
        for share in shares.values():
            assert len(share) == report.HISTOGRAM_BUCKETS and abs(share.sum() - 1) < 1e-6
        assert log == (name in F.LONG_TAIL)


def test_a_report_needs_a_run_folder(tmp_path, capsys):
    assert report.main(["--preprocess_dir", str(tmp_path)]) == 2
    assert "is not a preprocessing output" in capsys.readouterr().err


def _browser():
    browser = helpers.headless_chromium()
    if browser is None:
        pytest.skip(
            "no chromium and chromedriver here (Debian's chromium, chromium-driver; .ci/run "
            "installs them)"
        )
    return browser


@pytest.mark.e2e
def test_the_report_opens_offline_in_a_real_browser(trained):
    _, result = trained
    browser = _browser()
    try:
        browser.get("file://" + os.path.abspath(result["report"]))
        sizes = browser.execute_script(
            "return Array.from(document.querySelectorAll('svg'))"
            ".map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height]);"
        )
        evaluation = browser.execute_script(
            "const s = document.querySelector('#evaluation');"
            "return [s.querySelectorAll('svg').length, s.querySelectorAll('tr').length,"
            " s.innerText];"
        )
        console = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    finally:
        browser.quit()
    assert len(sizes) >= len(F.RAW_FEATURES) + 5 and all(w > 0 and h > 0 for w, h in sizes)
    svgs, table_rows, shown = evaluation  # Slices, deciles and calibration, as a person sees them.
    assert svgs == 3 and table_rows >= 8 + 11 + 10, table_rows
    assert "KS per slice" in shown and "Gains and lift by decile" in shown and "ECE" in shown
    assert console == []
    urls = [
        m["params"]["request"]["url"]
        for m in requests
        if m["method"] == "Network.requestWillBeSent"
    ]
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls


def test_vif_is_the_textbook_one(preprocess_run):
    _, out = preprocess_run
    (x, _), _ = analysis.load_transformed(out)
    # Independent: the VIFs are the diagonal of the inverse correlation matrix.
    np.testing.assert_allclose(
        analysis.vif(x), np.diag(np.linalg.inv(np.corrcoef(x, rowvar=False))), rtol=1e-6
    )


def test_the_selection_drops_one_of_each_collinear_pair_and_writes_its_table(
    preprocess_run, capsys
):
    _, out = preprocess_run
    assert (
        analysis.main(["--preprocess_dir", out, "--out", os.path.join(out, "analysis.json")]) == 0
    )
    printed = capsys.readouterr().out
    result = json.load(open(os.path.join(out, "analysis.json")))
    by_vif = {s["feature"] for s in result["steps"] if s["stage"] == "vif"}
    assert any(a in by_vif or b in by_vif for a, b in COLLINEAR_PAIRS[:2])
    for pair in COLLINEAR_PAIRS:
        assert not set(pair) <= set(result["kept"]), pair
    assert "anos_como_pro" in result["kept"]
    assert f"features: [{', '.join(result['kept'])}]" in printed
    assert all(
        set(s) == {"stage", "feature", "value", "ks", "precision", "recall"}
        for s in result["steps"]
    )


@pytest.mark.e2e
def test_the_notebook_runs_headless_on_a_small_run(trained, preprocess_run):
    import nbformat
    from nbclient import NotebookClient

    _, out = preprocess_run
    _, result = trained
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "inspect_run.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Committed without outputs.
    assert all(not c.outputs and c.execution_count is None for c in code)
    [parameters] = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    parameters.source = f"PREPROCESS_DIR = {out!r}\nRUN_DIR = {result['run_dir']!r}"
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    ).execute()
    shown = [o for c in code for o in c.outputs]
    assert not [o for o in shown if o.output_type == "error"]
    assert sum("image/svg+xml" in o.get("data", {}) for o in shown) >= len(F.RAW_FEATURES) + 5
