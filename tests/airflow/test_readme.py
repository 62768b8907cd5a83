"""The README's Airflow lines, run as written in a copy of the repository (what a clone holds,
the environments linked in), from a shell with no Airflow settings of its own."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request

import pytest

from tests.airflow import runs
from tests.helpers import ROOT, eventually
from tf_cartola import synthetic
from tf_cartola.common.loopback import free_port

pytestmark = pytest.mark.airflow
_BLOCK = re.compile(r"^```sh airflow\n(.*?)^```", re.S | re.M)


@pytest.fixture
def clone(tmp_path):
    """The repository's tracked files (their times kept, so make finds the environments up to
    date), its built environments linked in, and the demo's data."""
    repo = tmp_path / "repo"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), repo / name)
    for venv in (".venv", ".venv-airflow"):
        os.symlink(os.path.join(ROOT, venv), repo / venv)
    stale = subprocess.run(
        ["make", "-n", "airflow"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    assert "pip install" not in stale, "the environments are stale: run `make airflow` first"
    (repo / "data").mkdir()
    synthetic.write_csv(synthetic.generate(3000, 41), str(repo / "data" / "cartola.csv"))
    return repo


def _shell_env() -> dict:
    """A user's shell: no AIRFLOW_* of the tests, the project's environment not activated."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))
    } | {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def _get(url: str, password: str = ""):
    request = urllib.request.Request(url)
    if password:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_the_readme_airflow_lines_run_as_written(clone):
    [block] = _BLOCK.findall(open(os.path.join(ROOT, "README.md")).read())
    setup, month, backfill, standalone = block.strip().splitlines()
    env = _shell_env()

    def line(command: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
        return done.stdout + done.stderr

    assert setup.startswith("make airflow")
    line(setup)
    assert runs.summary(line(month))["decision"] == "pushed version 1"
    assert runs.summary(line(backfill))["decision"] == "backfill: not pushed"
    assert (clone / ".airflow" / "airflow.db").exists()  # Its home: the clone's .airflow/.
    versions = os.listdir(clone / "serving_models" / "cartola_pro")
    assert [v for v in versions if v.isdigit()] == ["1"]

    port = free_port()
    log = open(clone / "standalone.log", "w")
    server = subprocess.Popen(
        ["bash", "-c", standalone],
        cwd=clone,
        env={
            **env,
            "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(port),  # 8080 may be taken here.
            "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        eventually(
            lambda: "Airflow is ready" in (clone / "standalone.log").read_text(),
            "standalone's web UI and scheduler up",
            timeout=240,
        )
        health = _get(f"http://127.0.0.1:{port}/health")
        assert health["scheduler"]["status"] == "healthy", health
        password = (clone / ".airflow" / "standalone_admin_password.txt").read_text().strip()
        dag = _get(f"http://127.0.0.1:{port}/api/v1/dags/{runs.DAG_ID}", password)
        assert dag["dag_id"] == runs.DAG_ID and not dag["has_import_errors"], dag
        dag_runs = _get(f"http://127.0.0.1:{port}/api/v1/dags/{runs.DAG_ID}/dagRuns", password)
        # The months run above, in the same home.
        assert {r["logical_date"][:10] for r in dag_runs["dag_runs"]} == {
            "2026-02-01",
            "2026-01-01",
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
