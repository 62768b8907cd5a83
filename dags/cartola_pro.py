"""The monthly retrain of the Cartola PRO model, as an Airflow DAG: validate -> preprocess -> train
-> score -> summary.

Each task runs one of the project's command lines in the project's own environment (`python`,
default the repository's .venv), never in Airflow's: TensorFlow and Airflow do not share an
environment well, and the tasks are then exactly what a person runs by hand. Every run works in its
own folder, `<work_dir>/<run date>/`, so clearing and rerunning any task, or the whole run, redoes
that month alone.

Exit statuses decide what happens next:
- validate, preprocess: 1 (anomalies) fails the task at once, without retries; the log holds the
  anomaly
  table and the report's path, nothing downstream runs and nothing is pushed;
- train: 1 (not blessed) is a decision, not a failure, as is "nothing changed": the run goes on and
  scores
  with the version served;
- anything else that is not 0 (a database not up yet, a worker lost) is retried with back-off.
"""

import datetime
import json
import os
import shlex
import subprocess

import pendulum
import yaml
from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.models.param import Param
from airflow.operators.python import PythonOperator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_ANOMALIES = 1  # beam_jobs.preprocess and beam_jobs.validate: the data did not pass.
EXIT_NOT_BLESSED = 1  # tf_cartola.train: the candidate was refused, the served version stays.

with open(os.path.join(REPO, "configs", "default.yaml")) as _f:
    _CONFIG = yaml.safe_load(_f)


def _path(value: str) -> str:
    """A path param relative to the repository (where the tasks run); URLs and absolute paths as
    they are.
    """
    return value if "://" in value or os.path.isabs(value) else os.path.join(REPO, value)


def _serving_flags(params: dict) -> list:
    """Where the served model is and which version is served: `model_config_file`, the
    models.config the server runs with, else the newest version (tf_cartola.export.served).
    """
    flags = ["--serving_dir", _path(params["serving_dir"]), "--model_name", params["model_name"]]
    if params.get("model_config_file"):
        flags += ["--model_config_file", _path(params["model_config_file"])]
    return flags


def _served_version(params: dict):
    """The served version, or None, as the project answers it (`tf_cartola.inspect.versions`)."""
    cmd = [
        params["python"],
        "-m",
        "tf_cartola.inspect.versions",
        *_serving_flags(params),
        "--json",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    print(done.stderr, end="", flush=True)
    _check(done.returncode, "versions")
    served = [r["version"] for r in json.loads(done.stdout) if r["served"]]
    return served[0] if served else None


def _run_dir(params: dict, ds: str) -> str:
    return os.path.join(_path(params["work_dir"]), ds)


def _input_flags(params: dict) -> list:
    """A Beam job's input flags, and the runner's (`beam_args`: DirectRunner when empty)."""
    flags = ["--input", params["input"] if "://" in params["input"] else _path(params["input"])]
    for key in ("table", "query"):
        if params.get(key):
            flags += [f"--{key}", params[key]]
    return flags + shlex.split(params["beam_args"])


def _cli(params: dict, module: str, *args: str) -> tuple:
    """Runs `python -m module args` in the repository with the project's interpreter; its output
    goes to the task's log line by line. Returns (its exit status, its output lines).
    """
    cmd = [params["python"], "-m", module, *args]
    print("running:", " ".join(cmd), flush=True)
    out = []
    with subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        for line in proc.stdout:
            out.append(line)
            print(line, end="", flush=True)
    return proc.returncode, out


def _check(status: int, step: str, decisions: tuple = (), where: str = "") -> None:
    """Raises for a failed step: AirflowFailException (no retry) for anomalies, naming `where`
    their record is, AirflowException (retried) for anything else that is neither 0 nor one of
    `decisions`.
    """
    if status == 0 or status in decisions:
        return
    if status == EXIT_ANOMALIES and not decisions:
        raise AirflowFailException(
            f"{step}: the data has anomalies (exit status 1); the table is above, and {where}"
        )
    raise AirflowException(f"{step} exited {status}")


def validate(params: dict, ds: str) -> str:
    """The new month against the served model's baseline; month one (nothing served) has nothing to
    compare.
    """
    if _served_version(params) is None:
        print(
            f"no version of {params['model_name']} is served under {params['serving_dir']} yet: "
            "nothing to validate against (the preprocessing run validates the data itself)"
        )
        return "nothing served"
    status, _ = _cli(
        params,
        "beam_jobs.validate",
        *_input_flags(params),
        *_serving_flags(params),
        "--output_dir",
        os.path.join(_run_dir(params, ds), "validate"),
    )
    _check(
        status, "validate", where=os.path.join(_run_dir(params, ds), "validate", "manifest.json")
    )
    return "passed"


def preprocess(params: dict, ds: str) -> str:
    """The preprocess task: `beam_jobs.preprocess` on the month's input; returns its output
    folder.
    """
    out = os.path.join(_run_dir(params, ds), "preprocess")
    status, _ = _cli(
        params,
        "beam_jobs.preprocess",
        *_input_flags(params),
        "--output_dir",
        out,
        *_serving_flags(params),
    )
    _check(status, "preprocess", where=os.path.join(out, "report.html"))
    return out


def train(params: dict, ds: str) -> str:
    """Trains, blesses and pushes; returns the decision: "pushed version N", "not blessed",
    "nothing changed" (a pushed version was made of the same data and config: this month's rerun,
    say) or "backfill: not pushed" (the served version's data is of a later month).
    """
    run_dir = os.path.join(_run_dir(params, ds), "train")
    blessing = os.path.join(run_dir, "blessing.json")
    if os.path.exists(blessing):
        os.remove(blessing)  # A rerun's decision is its own.
    status, out = _cli(
        params,
        "tf_cartola.train",
        "--preprocess_dir",
        os.path.join(_run_dir(params, ds), "preprocess"),
        *_serving_flags(params),
        "--run_dir",
        run_dir,
        "--run_id",
        ds[:7],
    )
    _check(status, "train", decisions=(EXIT_NOT_BLESSED,))
    if status == EXIT_NOT_BLESSED:
        return "not blessed"
    if any(line.startswith("backfill: not pushed") for line in out):
        return "backfill: not pushed"
    if not os.path.exists(blessing):
        return "nothing changed"
    with open(blessing) as f:
        return f"pushed version {json.load(f)['version']}"


def score(params: dict, ds: str) -> str:
    """Every user, with the version served after training; a rerun of the month replaces its own
    scores.
    """
    scores = params["scores"]
    out = (
        ["--db", scores, "--scores_table", params["scores_table"]]
        if scores.startswith("postgresql://")
        else ["--output", os.path.join(_path(scores), ds, "scores")]
    )
    status, _ = _cli(
        params,
        "beam_jobs.score",
        *_input_flags(params),
        *_serving_flags(params),
        "--run_id",
        ds[:7],
        *out,
    )
    _check(status, "score")
    return out[1]


def summary(params: dict, ds: str, ti) -> dict:
    """One record of the run, logged and returned: rows, anomalies, KS, the decision, the version
    served, the report.
    """
    run = _run_dir(params, ds)
    with open(os.path.join(run, "preprocess", "manifest.json")) as f:
        manifest = json.load(f)
    blessing_path = os.path.join(run, "train", "blessing.json")
    blessing = None
    if os.path.exists(blessing_path):  # None when nothing changed: no model was trained.
        with open(blessing_path) as f:
            blessing = json.load(f)
    record = {
        "month": ds[:7],
        "rows": manifest["rows"],
        "anomalies": len(manifest["anomalies"]),
        "validate": ti.xcom_pull(task_ids="validate"),
        "decision": ti.xcom_pull(task_ids="train"),
        "ks": blessing["metrics"]["ks"] if blessing else None,
        # The candidate against the served model: the difference, its interval and the rule.
        "verdict": blessing.get("verdict") if blessing else None,
        "pushed": blessing["version"] if blessing else None,
        "served_version": _served_version(params),
        "report": os.path.join(run, "train", "report.html") if blessing else None,
        "scores": ti.xcom_pull(task_ids="score"),
    }
    print("summary:", json.dumps(record, sort_keys=True))
    return record


with DAG(
    dag_id="cartola_pro_monthly",
    description="Validate, preprocess, train/bless/push and score every user, each month",
    schedule="@monthly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": datetime.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": datetime.timedelta(minutes=10),
    },
    params={
        "input": Param(
            _CONFIG["preprocess"]["input"],
            type="string",
            description="CSV path or glob, or postgresql://... with table or query",
        ),
        "table": Param("", type="string", description="with a postgresql:// input"),
        "query": Param("", type="string", description="with a postgresql:// input"),
        "work_dir": Param(
            "runs/airflow", type="string", description="one folder per run date under it"
        ),
        "serving_dir": Param(_CONFIG["serving"]["serving_dir"], type="string"),
        "model_name": Param(_CONFIG["serving"]["model_name"], type="string"),
        "model_config_file": Param(
            _CONFIG["serving"].get("model_config_file", ""),
            type="string",
            description="the models.config the server runs with: its versions and `stable` "
            "label say which version is served (empty: the newest)",
        ),
        "scores": Param(
            "runs/airflow/scores",
            type="string",
            description="a folder (CSV shards per run date) or a postgresql:// URL",
        ),
        "scores_table": Param(
            "scores", type="string", description="with a postgresql:// scores URL"
        ),
        "beam_args": Param(
            "",
            type="string",
            description="Beam's flags for the jobs, e.g. --runner DataflowRunner "
            "--project P --region R --temp_location gs://B/tmp --setup_file ./setup.py",
        ),
        "python": Param(
            os.path.join(REPO, ".venv", "bin", "python"),
            type="string",
            description="the project's interpreter, which runs every task",
        ),
    },
    tags=["cartola"],
) as dag:
    steps = [
        PythonOperator(task_id=fn.__name__, python_callable=fn)
        for fn in (validate, preprocess, train, score, summary)
    ]
    for upstream, downstream in zip(steps, steps[1:]):
        upstream >> downstream
