"""The README's screenshots, taken in headless Chromium from the real pages (run from the
repository root).

    python docs/screenshots.py --report runs/mine/train/report.html
    python docs/screenshots.py --airflow_home .airflow --run_id manual__2026-02-01T00:00:00+00:00

The first writes docs/images/report-top.png (the verdict and the first tables, as a reader first
sees the page) and docs/images/report-ks.png (the KS curve figure). The second starts Airflow's web
UI (.venv-airflow) on a loopback port over an AIRFLOW_HOME holding runs of cartola_pro_monthly,
without login (a webserver_config.py there gives anonymous users the Admin role), and writes
docs/images/airflow-graph.png: the DAG's graph as Airflow draws it, for that run.
"""

import argparse
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "docs", "images")


def report_screenshots(browser, report_path: str) -> list:
    """The top of the report and its KS figure, as PNG files under IMAGES."""
    from selenium.webdriver.common.by import By

    browser.set_window_size(1200, 760)
    browser.get("file://" + os.path.abspath(report_path))
    top = os.path.join(IMAGES, "report-top.png")
    browser.save_screenshot(top)
    [ks] = [
        f
        for f in browser.find_elements(By.CSS_SELECTOR, "#model figure")
        if f.find_element(By.TAG_NAME, "figcaption").text.startswith("KS curve")
    ]
    figure = os.path.join(IMAGES, "report-ks.png")
    ks.screenshot(figure)
    return [top, figure]


def airflow_graph(browser, home: str, run_id: str) -> str:
    """The graph view of one run of cartola_pro_monthly, from a web server started here and stopped
    after.
    """
    from tf_cartola.common.loopback import free_port

    with open(os.path.join(home, "webserver_config.py"), "w") as f:
        f.write(
            'AUTH_ROLE_PUBLIC = "Admin"  # docs/screenshots.py: a local UI for a screenshot, no '
            "login.\n"
        )
    env = {
        **os.environ,
        "AIRFLOW_HOME": os.path.abspath(home),
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(ROOT, "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = os.path.join(ROOT, ".venv-airflow", "bin", "airflow")
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [airflow, "webserver", "--hostname", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        browser.set_window_size(1400, 900)
        browser.get(
            f"http://127.0.0.1:{port}/dags/cartola_pro_monthly/grid?tab=graph&dag_run_id="
            + urllib.parse.quote(run_id, safe="")
        )
        time.sleep(8)  # The graph is laid out by the page's scripts after it loads.
        out = os.path.join(IMAGES, "airflow-graph.png")
        browser.save_screenshot(out)
        return out
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)
    from tests.helpers import headless_chromium

    parser = argparse.ArgumentParser(
        prog="python docs/screenshots.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--report", help="a training run's report.html")
    parser.add_argument("--airflow_home", help="an AIRFLOW_HOME with runs of cartola_pro_monthly")
    parser.add_argument("--run_id", help="with --airflow_home: the run to show")
    args = parser.parse_args(argv)
    browser = headless_chromium()
    if browser is None:
        print(
            "error: no chromium and chromedriver (make system-packages installs them)",
            file=sys.stderr,
        )
        return 2
    try:
        written = report_screenshots(browser, args.report) if args.report else []
        if args.airflow_home:
            written.append(airflow_graph(browser, args.airflow_home, args.run_id))
        for path in written:
            print(f"wrote {os.path.relpath(path, ROOT)}")
    finally:
        browser.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
