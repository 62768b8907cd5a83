"""The monthly DAG run for real: `airflow dags test` in Airflow's own environment (.venv-airflow,
`make airflow`), SQLite in a fresh AIRFLOW_HOME, the tasks in this project's environment, on
generated months."""

import glob
import json
import os
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest

from tests.airflow import runs
from tests.helpers import ROOT, eventually
from tf_cartola import synthetic

pytestmark = pytest.mark.airflow
ROWS = 3000


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    """Four months of the same users (synthetic.next_month: a few gone and new, some converting,
    some churning): three clean, and a fourth shifted."""
    folder = tmp_path_factory.mktemp("months")
    frames = [synthetic.generate(ROWS, 21)]
    for seed in (22, 23, 24):
        frames.append(synthetic.next_month(frames[-1], seed))
    frames[3] = synthetic.shift_mean(frames[3], "escalacoes", 0.5, np.random.default_rng(0))
    paths = {}
    for month, frame in enumerate(frames, 1):
        paths[month] = str(folder / f"users-{month}.csv")
        synthetic.write_csv(frame, paths[month])
    return paths


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _conf(tmp_path, **params) -> dict:
    """A run's conf: its folders under the test's own, and `params`."""
    folders = {"work_dir": "work", "serving_dir": "serving", "scores": "scores"}
    return {**{k: str(tmp_path / v) for k, v in folders.items()}, **params}


def _versions(serving_dir) -> list:
    return sorted(
        int(v) for v in os.listdir(os.path.join(serving_dir, "cartola_pro")) if v.isdigit()
    )


def _scores(folder, date) -> pd.DataFrame:
    return pd.concat(
        pd.read_csv(p) for p in sorted(glob.glob(os.path.join(folder, date, "scores-*.csv")))
    )


def test_the_dag_loads_with_no_import_errors_and_passes_airflows_checks(airflow_env):
    errors = subprocess.run(
        [runs.AIRFLOW, "dags", "list-import-errors", "-o", "json"],
        env=airflow_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert runs.json_output(errors.stdout) == []
    checks = (
        "from airflow.models import DagBag\n"
        "from airflow.utils.dag_cycle_tester import check_cycle\n"
        f"bag = DagBag({os.path.join(ROOT, 'dags')!r}, include_examples=False)\n"
        "assert not bag.import_errors, bag.import_errors\n"
        f"dag = bag.get_dag({runs.DAG_ID!r})\n"
        "dag.validate()\n"
        "dag.validate_schedule_and_params()\n"
        "check_cycle(dag)\n"
        "assert not dag.catchup and dag.timetable.summary in ('@monthly', '0 0 1 * *'), "
        "dag.timetable.summary\n"
        "print('order:', ' '.join(t.task_id for t in dag.topological_sort()))\n"
    )
    done = subprocess.run(
        [os.path.join(os.path.dirname(runs.AIRFLOW), "python"), "-c", checks],
        env=airflow_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [order] = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("order:")]
    assert order == ["validate", "backtest", "preprocess", "train", "score", "summary"]
    listed = subprocess.run(
        [runs.AIRFLOW, "dags", "list", "-o", "json"],
        env=airflow_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert runs.DAG_ID in {d["dag_id"] for d in runs.json_output(listed.stdout)}


def test_three_months_of_the_same_users_each_backtest_the_last_and_a_shifted_one_stops(
    airflow_env, months, tmp_path
):
    conf = _conf(tmp_path, targets=300)

    first = runs.dags_test(airflow_env, "2026-01-01", {**conf, "input": months[1]})
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert set(runs.states(airflow_env, "2026-01-01").values()) == {"success"}
    assert _versions(conf["serving_dir"]) == [1]
    scored = _scores(conf["scores"], "2026-01-01")
    assert (
        len(scored) == ROWS
        and scored["GLOBO_ID"].is_unique
        and set(scored["model_version"]) == {1}
    )
    assert set(scored["run_id"]) == {"2026-01"} and sorted(set(scored["decile"])) == [
        *range(1, 11)
    ]
    summary = runs.summary(first.stdout + first.stderr)
    assert summary["backtest"] is None  # Month one: no scores of last month.

    for date, month in (("2026-02-01", 2), ("2026-03-01", 3)):
        run = runs.dags_test(airflow_env, date, {**conf, "input": months[month]})
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-3000:]
        assert set(runs.states(airflow_env, date).values()) == {"success"}
        summary = runs.summary(log)
        assert summary["decision"] == f"pushed version {month}", summary  # New data: trained.
        backtest = summary["backtest"]
        last = f"2026-0{month - 1}"
        assert backtest["scores_of"] == last and backtest["model"]["version"] == month - 1
        ks = backtest["realized_ks"]
        assert ks["low"] <= ks["value"] <= ks["high"] and ks["value"] > 0.3
        assert 0 < backtest["top_decile_conversion"] <= 1
        assert (backtest["psi"] is None) == (month == 2)  # Month three has two runs of scores.
        record = json.load(open(backtest["record"]))
        assert record["rows"]["joined"] > 0.9 * ROWS and len(record["deciles"]) == 10
        report = open(summary["report"]).read()
        assert f"v{month - 1}&#x27;s scores of {last}, realized KS" in report
        assert "Conversion by scoring decile" in report
        targets = pd.read_csv(os.path.join(conf["scores"], date, "scores.targets.csv"))
        assert len(targets) == 300 and targets["conversion_rate"].notna().all()
    served = _versions(conf["serving_dir"])[-1]
    assert set(_scores(conf["scores"], "2026-03-01")["model_version"]) == {served}
    before = {
        p: open(p, "rb").read() for p in glob.glob(os.path.join(conf["scores"], "*", "*.csv"))
    }

    shifted = runs.dags_test(airflow_env, "2026-04-01", {**conf, "input": months[4]})
    assert shifted.returncode != 0
    states = runs.states(airflow_env, "2026-04-01")
    assert states["validate"] == "failed" and states["preprocess"] == "upstream_failed", states
    log = shifted.stdout + shifted.stderr
    assert "escalacoes" in log and "DRIFT_DISTRIBUTION" in log and "the data has anomalies" in log
    assert "Marking task as UP_FOR_RETRY" not in log  # Anomalies are not retried.
    assert _versions(conf["serving_dir"])[-1] == served  # Nothing pushed.
    assert {
        p: open(p, "rb").read() for p in glob.glob(os.path.join(conf["scores"], "*", "*.csv"))
    } == before


def test_a_run_killed_mid_task_completes_on_rerun_with_one_version_and_no_duplicates(
    airflow_env, months, tmp_path
):
    conf = _conf(tmp_path, input=months[1])
    proc = subprocess.Popen(
        [runs.AIRFLOW, "dags", "test", runs.DAG_ID, "2026-01-01", "-c", json.dumps(conf)],
        env=airflow_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        # Killed while training writes its export: after preprocessing, before the push.
        for line in proc.stdout:
            if "training on" in line:
                break
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    eventually(lambda: _group_gone(proc.pid), "the killed run's processes gone with its group")
    assert not os.path.isdir(os.path.join(conf["serving_dir"], "cartola_pro")) or not _versions(
        conf["serving_dir"]
    )

    again = runs.dags_test(airflow_env, "2026-01-01", conf)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert _versions(conf["serving_dir"]) == [1]
    scored = _scores(conf["scores"], "2026-01-01")
    assert len(scored) == ROWS and scored["GLOBO_ID"].is_unique


def test_people_steer_a_month_accept_a_forced_backfill_and_a_failure_alerts_with_a_summary(
    airflow_env, months, tmp_path
):
    conf = _conf(tmp_path)
    # The input as a template on the run's date: each run reads its own month's file.
    folder = tmp_path / "inputs"
    folder.mkdir()
    for date, month in (("2026-01-01", 1), ("2026-02-01", 4)):
        os.symlink(months[month], folder / f"users-{date}.csv")
    conf["input"] = str(folder / "users-{{ ds }}.csv")
    assert runs.dags_test(airflow_env, "2026-01-01", conf).returncode == 0
    assert _versions(conf["serving_dir"]) == [1]

    accepted = {**conf, "accept": ["escalacoes"], "accepted_by": "ana"}
    shifted = runs.dags_test(airflow_env, "2026-02-01", accepted)  # Drifted, accepted on purpose.
    log = shifted.stdout + shifted.stderr
    assert shifted.returncode == 0, log[-3000:]
    summary = runs.summary(log)
    assert summary["accepted"]["by"] == "ana" and summary["accepted"]["features"] == ["escalacoes"]
    assert summary["decision"] == "pushed version 2", summary
    served = 2

    # January again, after February, forced (a plain backfill pushes nothing:
    # tests/airflow/test_object_store.py). Its data differs from February's shift: accepted again.
    forced = runs.dags_test(airflow_env, "2026-01-01", {**accepted, "force": True})
    log = forced.stdout + forced.stderr
    assert forced.returncode == 0 and '"force": true' in log, log[-3000:]
    newest = _versions(conf["serving_dir"])[-1]
    assert newest == served + 1
    provenance = json.load(
        open(os.path.join(conf["serving_dir"], "cartola_pro", str(newest), "provenance.json"))
    )
    assert (provenance["run_id"], provenance["force"]) == ("2026-01", True)

    alerts = tmp_path / "alerts.txt"
    env = {**airflow_env, "AIRFLOW_VAR_CARTOLA_ALERT_COMMAND": f"cat >> {alerts}"}
    broken = runs.dags_test(env, "2026-03-01", {**conf, "input": str(tmp_path / "missing.csv")})
    log = broken.stdout + broken.stderr
    assert broken.returncode != 0 and "Marking task as UP_FOR_RETRY" not in log  # Exit 2.
    states = runs.states(airflow_env, "2026-03-01")
    assert states["validate"] == "failed" and states["summary"] == "failed", states
    summary = runs.summary(log)
    assert summary["failed"][0] == "validate"
    assert alerts.exists() and "task validate failed" in alerts.read_text(), log[-6000:]
