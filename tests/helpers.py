"""Helpers shared by test modules: where the repository is, reading a run's outputs back
(TensorFlow only when used, so unit tests do not load it)."""

import contextlib
import os
import socket
import subprocess
import time

from tf_cartola.common.loopback import free_port
from tf_cartola.contract import features as F

# The repository's root. Tests name its files from it, so they run from any directory.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "default.yaml")
# The default config names it relative to the root.
SCHEMA = os.path.join(ROOT, "configs", "schema.pbtxt")
DATA = os.path.join(ROOT, "tests", "data")
SMALL_ROWS = 6000  # The session's small generated CSV (conftest `small_csv`).


def preprocess_args(input_path, output_dir, *extra) -> list:
    """`beam_jobs.preprocess` flags for a test run: the repository's config and schema, and no
    baseline (not whatever a demo left in ./serving_models)."""
    inputs = ["--input", str(input_path), "--output_dir", str(output_dir)]
    return ["--config", CONFIG, "--schema", SCHEMA, *inputs, "--baseline", "none", *extra]


def split_ids(pattern):
    """The sorted GLOBO_IDs of a split's files matching `pattern` (raw or transformed)."""
    from tf_cartola.read import splits

    return sorted(
        splits.read(pattern, [F.ID_KEY]).column(F.ID_KEY).combine_chunks().flatten().to_pylist()
    )


def probe_batch():
    """50 generated raw rows, parsed as the transform graph takes them."""
    import pandas as pd
    import tensorflow as tf

    from tf_cartola import synthetic
    from tf_cartola.read import examples

    frame = synthetic.generate(50, seed=9)
    serialized = [
        examples.to_example(r) for r in frame.where(pd.notna(frame), None).to_dict("records")
    ]
    return tf.io.parse_example(serialized, F.raw_feature_spec())


def headless_chromium():
    """A Selenium driver of Debian's headless Chromium (`make system-packages` installs it),
    logging the console and the network; None when Chromium or its driver is missing."""
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def eventually(condition, what: str, timeout: float = 30.0) -> None:
    """Waits until `condition()` is true, polling it; fails naming `what` if it is not within
    `timeout` seconds. For conditions only observable from outside (a log line, a status, a queue
    length)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


# The raw columns the final model uses, written out by hand: what the tests pin it to.
USED_RAW = (
    "anos_como_pro",
    "avg_3",
    "avg_4",
    "escalacoes",
    "norm_escalacao",
    "tempo_desperd",
)

BEAM_POOL = "apache_beam.runners.worker.worker_pool_main"


@contextlib.contextmanager
def worker_pool(python: str, path_first: str, cwd: str, module: str = BEAM_POOL, env=None):
    """A Beam worker pool (`module`: Beam's own, or beam_jobs.worker_pool; run by `python`) on a
    free loopback port, started in `cwd` with `path_first` at the head of PATH (Beam's pool starts
    each worker as `python` from PATH), no PYTHONPATH and `env` added; yields its address."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        **(env or {}),
    }
    env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    with open(os.path.join(cwd, "pool.log"), "w") as log:
        pool = subprocess.Popen(
            [python, "-m", module, f"--service_port={port}"],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def listening() -> bool:
        assert pool.poll() is None, f"the worker pool exited: see {log.name}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    try:
        eventually(listening, "the worker pool listening", timeout=60)
        yield f"localhost:{port}"
    finally:
        pool.terminate()
        pool.wait(timeout=30)
