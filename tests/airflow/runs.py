"""Running the monthly DAG for real, as the tests do: `airflow dags test` in Airflow's own
environment, and what it left (task states, the summary record)."""

import json
import os
import re
import subprocess

from tests.helpers import ROOT

AIRFLOW = os.path.join(ROOT, ".venv-airflow", "bin", "airflow")
DAG_ID = "cartola_pro_monthly"


def json_output(stdout: str):
    """The JSON an `airflow ... -o json` command printed, without Airflow's log lines around it."""
    text = "\n".join(
        line for line in stdout.splitlines() if not re.match(r"^\[\d{4}-", line)
    ).strip()
    return [] if text in ("", "No data found") else json.loads(text)


def dags_test(env, date, conf, **kwargs):
    """`airflow dags test` of the DAG for `date` with `conf`, as a finished subprocess."""
    return subprocess.run(
        [AIRFLOW, "dags", "test", DAG_ID, date, "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        **kwargs,
        check=False,
    )


def states(env, date) -> dict:
    """Each task's state in the run of `date`."""
    run_id = f"manual__{date}T00:00:00+00:00"
    done = subprocess.run(
        [AIRFLOW, "tasks", "states-for-dag-run", DAG_ID, run_id, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {t["task_id"]: t["state"] for t in json_output(done.stdout)}


def summary(log: str) -> dict:
    """The record the summary task logged."""
    [line] = [line for line in log.splitlines() if "summary: {" in line]
    return json.loads(line.split("summary: ", 1)[1])
