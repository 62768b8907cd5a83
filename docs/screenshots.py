"""The README's screenshots, taken in headless Chromium from the real pages (run from the repository root).

    python docs/screenshots.py --report runs/mine/train/report.html

writes docs/images/report-top.png (the verdict and the first tables, as a reader first sees the page)
and docs/images/report-ks.png (the KS curve figure).
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "docs", "images")


def report_screenshots(browser, report_path: str) -> list:
    """The top of the report and its KS figure, as PNG files under IMAGES."""
    from selenium.webdriver.common.by import By

    browser.set_window_size(1200, 760)
    browser.get("file://" + os.path.abspath(report_path))
    top = os.path.join(IMAGES, "report-top.png")
    browser.save_screenshot(top)
    [ks] = [f for f in browser.find_elements(By.CSS_SELECTOR, "#model figure")
            if f.find_element(By.TAG_NAME, "figcaption").text.startswith("KS curve")]
    figure = os.path.join(IMAGES, "report-ks.png")
    ks.screenshot(figure)
    return [top, figure]


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)
    from tests.helpers import headless_chromium

    parser = argparse.ArgumentParser(prog="python docs/screenshots.py", description=__doc__.splitlines()[0])
    parser.add_argument("--report", required=True, help="a training run's report.html")
    args = parser.parse_args(argv)
    browser = headless_chromium()
    if browser is None:
        print("error: no chromium and chromedriver (make system-packages installs them)", file=sys.stderr)
        return 2
    try:
        for path in report_screenshots(browser, args.report):
            print(f"wrote {os.path.relpath(path, ROOT)}")
    finally:
        browser.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
