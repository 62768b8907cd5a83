"""Shared fixtures: small generated data and one real preprocessing run, built once per session."""

import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Before anything imports TensorFlow.

import pytest  # noqa: E402

from tests.helpers import CONFIG, SMALL_ROWS, preprocess_args  # noqa: E402
from tf_cartola import synthetic  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _from_a_folder_of_its_own(tmp_path_factory):
    """Every test runs in a fresh folder outside the repository, as a user's: the default config's
    relative paths (serving_models/, runs/, data/) are then the suite's own, never what `make
    demo` left in the repository, and nothing a test writes by default lands there."""
    os.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory):
    """A generated CSV of a few thousand users."""
    path = tmp_path_factory.mktemp("data") / "users-2026-01.csv"  # Its month: the run id.
    synthetic.write_csv(synthetic.generate(SMALL_ROWS, seed=11), str(path))
    return str(path)


@pytest.fixture(scope="session")
def preprocess_cli(small_csv, tmp_path_factory):
    """`python -m beam_jobs.preprocess` on the small CSV with the default config, as a user runs it
    (the library's logging and warnings settings not inherited): (its CompletedProcess,
    output_dir)."""
    out = str(tmp_path_factory.mktemp("preprocess"))
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")
    }
    done = subprocess.run(
        [sys.executable, "-m", "beam_jobs.preprocess", *preprocess_args(small_csv, out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out


@pytest.fixture(scope="session")
def preprocess_run(preprocess_cli):
    """(Manifest, output_dir) of that run."""
    from tf_cartola.contract import manifest

    _, out = preprocess_cli
    return manifest.load(out), out


@pytest.fixture(scope="session")
def trained(preprocess_run, tmp_path_factory):
    """A real training run on the small preprocessing output, pushed to a temporary serving dir."""
    from tf_cartola.contract import config
    from tf_cartola.inspect import report
    from tf_cartola.train import training

    _, preprocess_dir = preprocess_run
    root = tmp_path_factory.mktemp("train")
    cfg = config.load(CONFIG)
    result = training.train(
        cfg, preprocess_dir, serving_dir=str(root / "serving"), run_dir=str(root / "run")
    )
    # As tf_cartola.train does.
    result["report"] = report.write_report(
        str(root / "run" / "report.html"),
        preprocess_dir,
        result["run_dir"],
        result["labels"],
        result["scores"],
    )
    return cfg, result


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server on a free loopback port (tf_cartola.common.local_postgres)."""
    from tf_cartola.common import local_postgres

    with local_postgres.running() as server:
        yield server


@pytest.fixture
def pg_env(postgres, monkeypatch):
    """The server's password in PGPASSWORD, as a user would set it; yields the server."""
    for name, value in postgres.env.items():
        monkeypatch.setenv(name, value)
    return postgres
