"""The monthly retrain of the Cartola PRO model, as an Airflow DAG: validate -> backtest ->
preprocess -> train -> score -> summary.

Each task runs one of the project's command lines in the project's own environment (`python`,
default the repository's .venv), never in Airflow's: TensorFlow and Airflow do not share an
environment well, and the tasks are then exactly what a person runs by hand. Every run works in its
own folder, `<work_dir>/<run date>/`, so clearing and rerunning any task, or the whole run, redoes
that month alone.

Exit statuses decide what happens next:
- validate, preprocess: 1 (anomalies) fails the task at once, without retries; the log holds the
  anomaly table and the report's path, nothing downstream runs and nothing is pushed;
- backtest: 3 (no scores of last month, as in month one) is nothing to backtest, not a failure;
- train: 1 (not blessed) is a decision, not a failure, as is "nothing changed": the run goes on and
  scores with the version served;
- 2 (bad arguments, config or input) fails at once, without retries;
- anything else that is not 0 (a database not up yet, a worker lost) is retried with back-off.
"""

import datetime
import json
import os
import posixpath
import shlex
import subprocess

import fsspec
import pendulum
import yaml
from airflow import DAG
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.models import Variable
from airflow.models.param import Param
from airflow.operators.python import PythonOperator, get_current_context

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_ANOMALIES = 1  # beam_jobs.preprocess and beam_jobs.validate: the data did not pass.
EXIT_NOT_BLESSED = 1  # tf_cartola.train: the candidate was refused, the served version stays.
EXIT_ARGUMENTS = 2  # Every CLI: bad arguments, config or input. A retry would fail the same way.
# Airflow Variables (or AIRFLOW_VAR_<NAME> in the environment): set by whoever runs Airflow,
# never by a run's conf.
PYTHON_VARIABLE = "cartola_python"  # The project's interpreter (default: the repository's .venv).
ALERT_VARIABLE = "cartola_alert_command"  # A shell command; a failure's message on its stdin.
STEPS = ("validate", "backtest", "preprocess", "train", "score")  # Then the summary.
EXIT_NO_SCORES = 3  # beam_jobs.backtest: no scores of last month, nothing to backtest.
TASK_TIMEOUT = datetime.timedelta(hours=6)  # One job, even at 10M rows on Dataflow.
RUN_TIMEOUT = datetime.timedelta(hours=20)  # A hung month never blocks the next one.

with open(os.path.join(REPO, "configs", "default.yaml")) as _f:
    _CONFIG = yaml.safe_load(_f)


def _python() -> str:
    return Variable.get(PYTHON_VARIABLE, default_var=os.path.join(REPO, ".venv", "bin", "python"))


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
        _python(),
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
    return posixpath.join(_path(params["work_dir"]), ds)


def _input_flags(params: dict, flag: str = "--input") -> list:
    """A Beam job's input flags (`input` rendered as a template on the run's data interval, given
    as `flag`), and the runner's (`beam_args`: DirectRunner when empty).
    """
    context = get_current_context()
    source = context["task"].render_template(params["input"], context)
    flags = [flag, source if "://" in source else _path(source)]
    for key in ("table", "query"):
        if params.get(key):
            flags += [f"--{key}", params[key]]
    return flags + shlex.split(params["beam_args"])


def _cli(params: dict, module: str, *args: str) -> tuple:
    """Runs `python -m module args` in the repository with the project's interpreter; its output
    goes to the task's log line by line. Returns (its exit status, its output lines).

    The job stays in the task's process group, so whatever kills the task kills the job: Airflow's
    own kill (a timeout, a task marked failed: SIGTERM then SIGKILL to the group) and a SIGKILL of
    the whole group. Airflow's SubprocessHook (and so BashOperator and @task.bash) starts its
    command with setsid, in a session of its own: a task killed with SIGKILL leaves that job
    running, free to push a version after the run was stopped (tests/airflow/test_dag.py kills a
    run so).
    """
    cmd = [_python(), "-m", module, *args]
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
    their record is, and for bad arguments (exit status 2); AirflowException (retried) for
    anything else that is neither 0 nor one of `decisions`.
    """
    if status == 0 or status in decisions:
        return
    if status == EXIT_ANOMALIES and not decisions:
        raise AirflowFailException(
            f"{step}: the data has anomalies (exit status 1); the table is above, and {where}"
        )
    if status == EXIT_ARGUMENTS:
        raise AirflowFailException(f"{step}: bad arguments, config or input (exit status 2)")
    raise AirflowException(f"{step} exited {status}")


def _accept_flags(params: dict) -> list:
    """The features whose anomalies and drift a person accepted for this run, and who."""
    flags = [f for feature in params.get("accept") or [] for f in ("--accept", feature)]
    by = params.get("accepted_by")
    return flags + (["--accepted_by", by] if flags and by else [])


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
        *_accept_flags(params),
        "--output_dir",
        posixpath.join(_run_dir(params, ds), "validate"),
    )
    _check(
        status, "validate", where=posixpath.join(_run_dir(params, ds), "validate", "manifest.json")
    )
    return "passed"


def _month_before(ds: str, months: int = 1) -> str:
    return pendulum.parse(ds).subtract(months=months).to_date_string()


def _scores_prefix(params: dict, ds: str) -> str:
    """The score task's CSV shards' prefix of a run date (with a folder as the scores param)."""
    return posixpath.join(_path(params["scores"]), ds, "scores")


def _backtest_record(params: dict, ds: str) -> str:
    return posixpath.join(_run_dir(params, ds), "backtest", "backtest.json")


def _scores_flags(params: dict, ds: str) -> list:
    """beam_jobs.backtest's flags for last month's scores and, when they exist, the month before's
    (the score drift).
    """
    last, before = _month_before(ds), _month_before(ds, 2)
    if params["scores"].startswith("postgresql://"):
        return ["--db", params["scores"], "--scores_table", params["scores_table"]] + [
            "--run_id",
            last[:7],
            "--previous_run_id",
            before[:7],
        ]
    flags = ["--scores", _scores_prefix(params, last)]
    if _exists(_scores_prefix(params, before) + ".manifest.json"):
        flags += ["--previous_scores", _scores_prefix(params, before)]
    return flags


def backtest(params: dict, ds: str) -> str:
    """Last month's scores against this month's input: the served model's realized KS, conversion
    by decile, PSI (beam_jobs.backtest). Month one has nothing to backtest. A realized KS below
    blessing.min_ks alerts, and the run goes on: it is a finding for people, not a failure.
    """
    record = _backtest_record(params, ds)
    status, _ = _cli(
        params,
        "beam_jobs.backtest",
        *_scores_flags(params, ds),
        *_input_flags(params, "--labels"),
        *_serving_flags(params),
        "--output_dir",
        posixpath.dirname(record),
    )
    if status == EXIT_NO_SCORES:
        return f"nothing to backtest: no scores of {_month_before(ds)[:7]}"
    _check(status, "backtest")
    found = _read_json(record)
    if found["realized"] and found["realized"]["below_min_ks"]:
        _alert(
            f"cartola_pro_monthly {ds}: the served model's realized KS "
            f"{found['realized']['ks']['value']:.3f} on {found['run_id']}'s scores is below "
            f"blessing.min_ks {found['realized']['min_ks']} ({record})"
        )
    return record


def preprocess(params: dict, ds: str) -> str:
    """The preprocess task: `beam_jobs.preprocess` on the month's input; returns its output
    folder.
    """
    out = posixpath.join(_run_dir(params, ds), "preprocess")
    status, _ = _cli(
        params,
        "beam_jobs.preprocess",
        *_input_flags(params),
        "--output_dir",
        out,
        *_serving_flags(params),
        *_accept_flags(params),
    )
    _check(status, "preprocess", where=posixpath.join(out, "report.html"))
    return out


def train(params: dict, ds: str) -> str:
    """Trains, blesses and pushes; returns the decision: "pushed version N", "not blessed",
    "nothing changed" (a pushed version was made of the same data and config: this month's rerun,
    say) or "backfill: not pushed" (the served version's data is of a later month). A run that
    trains nothing writes nothing: the month's folder keeps the record of the run that did.
    """
    run_dir = posixpath.join(_run_dir(params, ds), "train")
    status, out = _cli(
        params,
        "tf_cartola.train",
        "--preprocess_dir",
        posixpath.join(_run_dir(params, ds), "preprocess"),
        *_serving_flags(params),
        "--run_dir",
        run_dir,
        "--run_id",
        ds[:7],
        *(["--force"] if params.get("force") else []),
        *_if_exists("--backtest", _backtest_record(params, ds)),
    )
    _check(status, "train", decisions=(EXIT_NOT_BLESSED,))
    if status == EXIT_NOT_BLESSED:
        return "not blessed"
    for decision in ("backfill: not pushed", "nothing changed"):
        if any(line.startswith(decision) for line in out):
            return decision
    return f"pushed version {_read_json(posixpath.join(run_dir, 'blessing.json'))['version']}"


def score(params: dict, ds: str) -> str:
    """Every user, with the version served after training; a rerun of the month replaces its own
    scores.
    """
    scores = params["scores"]
    out = (
        ["--db", scores, "--scores_table", params["scores_table"]]
        if scores.startswith("postgresql://")
        else ["--output", posixpath.join(_path(scores), ds, "scores")]
    )
    targets = ["--targets", str(params["targets"])] if params.get("targets") else []
    status, _ = _cli(
        params,
        "beam_jobs.score",
        *_input_flags(params),
        *_serving_flags(params),
        "--run_id",
        ds[:7],
        *out,
        *targets,
        *(_if_exists("--backtest", _backtest_record(params, ds)) if targets else []),
    )
    _check(status, "score")
    return out[1]


def _if_exists(flag: str, path: str) -> list:
    return [flag, path] if _exists(path) else []


def _backtest_summary(params: dict, ds: str):
    """The backtest's findings the summary shows, or None when there was none."""
    found = _read_json(_backtest_record(params, ds))
    if found is None:
        return None
    top = found["deciles"][0]["conversion_rate"] if found["deciles"] else None
    realized = found["realized"]
    return {
        "scores_of": found["run_id"],
        "model": found["model"],
        "realized_ks": realized["ks"] if realized else None,
        "below_min_ks": bool(realized and realized["below_min_ks"]),
        "top_decile_conversion": top,
        "psi": found["score_drift"]["psi"] if found["score_drift"] else None,
        "record": _backtest_record(params, ds),
    }


def summary(params: dict, ds: str, ti, dag_run) -> dict:
    """One record of the run, logged and returned, whatever became of the tasks before it: rows,
    anomalies, KS, the decision and the comparison, what was accepted and forced, the version
    served, the report; and for a failed run, which task failed and where its record is.
    """
    run = _run_dir(params, ds)
    states = {t.task_id: t.state for t in dag_run.get_task_instances() if t.task_id != "summary"}
    failed = [task for task in STEPS if states.get(task) == "failed"]  # Not their downstream.
    manifest = _read_json(posixpath.join(run, "preprocess", "manifest.json"))
    decision = ti.xcom_pull(task_ids="train")
    trained = decision is not None and decision.startswith(("pushed", "not blessed"))
    # None when this run trained nothing (nothing changed, a backfill, a failure).
    blessing = _read_json(posixpath.join(run, "train", "blessing.json")) if trained else None
    record = {
        "month": ds[:7],
        "states": states,
        "failed": failed,
        "anomaly_table": _anomaly_record(run, failed),
        "rows": manifest["rows"] if manifest else None,
        "anomalies": len(manifest["anomalies"]) if manifest else None,
        "accepted": (manifest or {}).get("accepted"),
        "force": bool(params.get("force")),
        "validate": ti.xcom_pull(task_ids="validate"),
        "decision": decision,
        "ks": blessing["metrics"]["ks"] if blessing else None,
        # The candidate against the served model: the difference, its interval and the rule.
        "verdict": blessing.get("verdict") if blessing else None,
        "pushed": blessing["version"] if blessing else None,
        "served_version": _served_version(params),
        "report": posixpath.join(run, "train", "report.html") if blessing else None,
        "scores": ti.xcom_pull(task_ids="score"),
        "backtest": _backtest_summary(params, ds),
    }
    print("summary:", json.dumps(record, sort_keys=True))
    if any(state != "success" for state in states.values()):
        raise AirflowFailException(f"the run failed at {', '.join(failed)}: see the summary above")
    return record


def _exists(path: str) -> bool:
    """True if a file is there. The DAG's own reads of a run's records go through fsspec: local
    or on a bucket (s3fs is in Airflow's environment; install gcsfs for gs://).
    """
    fs, inside = fsspec.core.url_to_fs(path)
    return fs.exists(inside)


def _read_json(path: str):
    """The JSON record at `path`, or None when there is none (one request, not two)."""
    try:
        with fsspec.open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _anomaly_record(run: str, failed: list):
    """Where the anomaly table of the step that failed on data is written, if one did."""
    for task, record in (
        ("validate", posixpath.join(run, "validate", "manifest.json")),
        ("preprocess", posixpath.join(run, "preprocess", "report.html")),
    ):
        if task in failed and _exists(record):
            return record
    return None


def alert(context) -> None:
    """on_failure_callback: the failure in one message, logged and, when the Airflow Variable
    `cartola_alert_command` names a shell command (`mail -s "cartola" team@...`, `curl -d @-
    https://chat.example/hook`), given to it on its stdin.
    """
    ti = context["task_instance"]
    _alert(
        f"{ti.dag_id} {context['run_id']}: task {ti.task_id} failed (try {ti.try_number}): "
        f"{context.get('exception')}"
    )


def _alert(message: str) -> None:
    """Logs the message and gives it to the `cartola_alert_command` Variable's command, if any."""
    print("alert:", message)
    command = Variable.get(ALERT_VARIABLE, default_var="")
    if command:
        subprocess.run(command, shell=True, input=message, text=True, check=False, timeout=60)


with DAG(
    dag_id="cartola_pro_monthly",
    description="Validate, preprocess, train/bless/push and score every user, each month",
    schedule="@monthly",
    start_date=pendulum.datetime(2020, 1, 1, tz="UTC"),  # Any month since can be backfilled.
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=RUN_TIMEOUT,
    default_args={
        "execution_timeout": TASK_TIMEOUT,
        "on_failure_callback": alert,
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
        "accept": Param(
            [],
            type="array",
            description="features whose anomalies and drift this run accepts, on purpose",
        ),
        "accepted_by": Param("", type="string", description="who accepts them"),
        "targets": Param(
            0,
            type="integer",
            minimum=0,
            description="the score task also writes a target list of this many users not PRO "
            "at scoring time, with expected conversions from this month's backtest (0: none)",
        ),
        "force": Param(
            False,
            type="boolean",
            description="train even when nothing changed, push even when the data is older "
            "than the served version's (recorded)",
        ),
    },
    tags=["cartola"],
) as dag:
    steps = [
        PythonOperator(task_id=fn.__name__, python_callable=fn)
        for fn in (validate, backtest, preprocess, train, score)
    ]
    # It runs whatever became of the others, and says what failed and where.
    steps.append(
        PythonOperator(
            task_id="summary",
            python_callable=summary,
            trigger_rule="all_done",
            retries=0,
            on_failure_callback=None,  # The failed task has alerted already.
        )
    )
    for upstream, downstream in zip(steps, steps[1:]):
        upstream >> downstream
