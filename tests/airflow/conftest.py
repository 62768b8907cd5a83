"""The Airflow tests' shared environment: a fresh AIRFLOW_HOME with its SQLite database, the
tasks run with this project's interpreter."""

import os
import subprocess
import sys

import pytest

from tests.airflow.runs import AIRFLOW
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    if not os.access(AIRFLOW, os.X_OK):
        pytest.fail(
            "no .venv-airflow: `make airflow` builds it (`make test-airflow` runs these tests)"
        )
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(ROOT, "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_VAR_CARTOLA_PYTHON": sys.executable,  # The Variable the tasks' interpreter is.
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    return env
