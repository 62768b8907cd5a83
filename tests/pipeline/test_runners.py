"""The Beam jobs on Beam's portable runner: the protocol Flink, Spark and Dataflow Runner v2 speak,
with the Python workers outside the launching process. Each run must write what the direct runner
writes.

LOOPBACK runs the workers in this process's environment; the `production` test runs them in a
worker pool started outside the repository from `.venv-worker` (`make worker-env`: the package's
wheel and its install_requires, nothing else), as a cluster's workers get the package.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from beam_jobs import preprocess, score, validate
from tests.helpers import ROOT, preprocess_args, worker_pool
from tf_cartola.contract import features as F

PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed"]
LOOPBACK = [*PORTABLE, "--environment_type=LOOPBACK"]
WORKER_VENV = os.environ.get("CARTOLA_WORKER_VENV", os.path.join(ROOT, ".venv-worker"))
# What must not differ between runners.
MANIFEST_FIELDS = ("rows", "bad_rows", "duplicate_ids", "anomalies", "valid", "drift", "inputs")


def _preprocess(small_csv, out, *runner):
    return preprocess.run(preprocess_args(small_csv, str(out), *runner))


def _validate(csv, baseline_dir, out, *runner):
    assert (
        validate.main(
            ["--input", csv, "--baseline", baseline_dir, "--output_dir", str(out), *runner]
        )
        == 0
    )
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def _rows(pattern):
    """{GLOBO_ID: {column: its values}} of a split's files (both splits carry the id)."""
    from tf_cartola.read import splits

    return {row[F.ID_KEY][0]: row for row in splits.read(pattern).to_pylist()}


def _stats(path):
    import tensorflow_data_validation as tfdv

    return tfdv.load_stats_binary(path)


def assert_same_outputs(expected, actual) -> None:
    """Two preprocessing runs wrote the same manifest rows, statistics and raw and transformed
    splits."""

    assert {k: getattr(actual, k) for k in MANIFEST_FIELDS} == {
        k: getattr(expected, k) for k in MANIFEST_FIELDS
    }
    for which in ("train", "eval"):
        assert _stats(actual.artifacts[f"stats_{which}"].replace(".pbtxt", ".binpb")) == _stats(
            expected.artifacts[f"stats_{which}"].replace(".pbtxt", ".binpb")
        ), which
        assert _rows(actual.artifacts[f"raw_{which}"]) == _rows(expected.artifacts[f"raw_{which}"])
        want = _rows(expected.artifacts[f"transformed_{which}"])
        got = _rows(actual.artifacts[f"transformed_{which}"])
        assert got.keys() == want.keys() and len(got) == actual.rows[which]
        for key, row in want.items():
            for name, value in row.items():
                np.testing.assert_allclose(
                    got[key][name], value, rtol=0, atol=1e-6, err_msg=f"{key} {name}"
                )


@pytest.fixture(scope="module")
def loopback_run(small_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("loopback")
    return _preprocess(small_csv, out, *LOOPBACK), str(out)


@pytest.mark.e2e
def test_preprocess_on_the_portable_runner_writes_what_the_direct_runner_writes(
    preprocess_run, loopback_run
):
    (direct, _), (portable, _) = preprocess_run, loopback_run
    assert_same_outputs(direct, portable)
    assert direct.runner == {"name": "DirectRunner", "not_reported": []}
    # The portable runner reports user counters only: the rows are there, the stage timings are
    # said missing.
    assert portable.runner == {"name": "PortableRunner", "not_reported": ["stage seconds"]}
    assert "read_split" in direct.seconds and "read_split" not in portable.seconds


@pytest.mark.e2e
def test_validate_on_the_portable_runner_finds_what_the_direct_runner_finds(
    preprocess_run, small_csv, tmp_path
):
    _, baseline_dir = preprocess_run
    direct = _validate(small_csv, baseline_dir, tmp_path / "direct")
    portable = _validate(small_csv, baseline_dir, tmp_path / "portable", *LOOPBACK)
    for key in ("rows", "bad_rows", "anomalies", "valid", "drift"):
        assert portable[key] == direct[key], key
    assert _stats(str(tmp_path / "portable" / "stats" / "data.binpb")) == _stats(
        str(tmp_path / "direct" / "stats" / "data.binpb")
    )


def _worker_venv() -> str:
    python = os.path.join(WORKER_VENV, "bin", "python")
    if not os.path.exists(python):
        pytest.fail(
            f"no worker environment at {WORKER_VENV}: run `make worker-env` (.ci/run does)"
        )
    return WORKER_VENV


@pytest.mark.production
def test_the_jobs_run_on_workers_installed_from_the_package_alone(
    preprocess_run, trained, small_csv, tmp_path
):
    venv = _worker_venv()
    site = subprocess.run(
        [
            os.path.join(venv, "bin", "python"),
            "-c",
            "import tf_cartola; print(tf_cartola.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.strip()
    assert site.startswith(venv) and "site-packages" in site  # The wheel, not this checkout.
    direct, direct_dir = preprocess_run
    with worker_pool(
        os.path.join(venv, "bin", "python"), os.path.join(venv, "bin"), str(tmp_path)
    ) as address:
        external = [*PORTABLE, "--environment_type=EXTERNAL", f"--environment_config={address}"]
        out = tmp_path / "external"
        manifest = _preprocess(small_csv, out, *external)
        checked = _validate(small_csv, direct_dir, tmp_path / "validate", *external)
        scored = score.run(
            [
                "--input",
                small_csv,
                "--model_dir",
                trained[1]["export_dir"],
                "--output",
                str(tmp_path / "scores"),
                *external,
            ]
        )
    assert_same_outputs(direct, manifest)
    read = direct.rows["read"]
    assert scored["rows"] == {"read": read, "scored": read, "bad": 0, "set_aside": 0}
    [worker] = manifest.runner["workers"]
    assert worker["tf_cartola"] == site and worker["python"].startswith(venv)
    assert checked["valid"] and checked["rows"]["read"] == direct.rows["read"]


@pytest.mark.e2e
def test_a_worker_that_cannot_start_fails_the_job_in_bounded_time(small_csv, tmp_path, capsys):
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "python").write_text(
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'apache_beam'\" >&2\nexit 1\n"
    )
    (broken / "python").chmod(0o755)
    started = time.monotonic()
    with worker_pool(sys.executable, str(broken), str(tmp_path)) as address:
        status = preprocess.main(
            preprocess_args(
                small_csv,
                str(tmp_path / "out"),
                *PORTABLE,
                "--environment_type=EXTERNAL",
                f"--environment_config={address}",
                "--worker_start_timeout=10",
            )
        )
    assert status == 2 and time.monotonic() - started < 90
    err = capsys.readouterr().err
    assert f"no worker (EXTERNAL environment {address}) answered within 10 s" in err
    assert not (tmp_path / "out" / "manifest.json").exists()
