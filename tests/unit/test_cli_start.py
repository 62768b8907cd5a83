"""Every command line answers --help, and refuses a bad flag or a taken port, before it loads
TensorFlow: at once, in one process each, as a user runs them."""

import dataclasses
import json
import pathlib
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SHIPPED = ("tf_cartola", "beam_jobs", "serving")
CLIS = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for package in SHIPPED
    for path in pathlib.Path(ROOT, package).rglob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
)
# Runs the CLI as `python -m` does, then says whether TensorFlow was imported.
_RUN = (
    "import runpy, sys\n"
    "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'no tensorflow', "
    "file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _run(module, *args):
    return subprocess.run(
        [sys.executable, "-c", _RUN, module, *args],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
        check=False,
    )


def test_there_are_clis():
    assert "serving.local_server" in CLIS and "beam_jobs.preprocess" in CLIS and len(CLIS) >= 10


@pytest.mark.parametrize("module", CLIS)
def test_help_answers_before_tensorflow_loads(module):
    done = _run(module, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "exit status" in done.stdout and done.stderr.strip().splitlines()[-1] == "no tensorflow"
    ), done.stderr


def test_a_taken_port_is_one_line_before_tensorflow_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(
            "serving.local_server",
            "--model_base_path",
            str(tmp_path),
            "--port",
            str(port),
            "--rest_api_port",
            "0",
        )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (Address already in use); "
        "choose another with --port",
        "no tensorflow",
    ]


def test_a_misspelt_flag_is_named_with_the_closest_one(capsys):
    from serving import client

    assert (
        client.main(["--rset", "http://127.0.0.1:8501", "--csv", "users.csv", "--out", "s.csv"])
        == 2
    )
    assert "unknown flag --rset (did you mean --rest?)" in capsys.readouterr().err


def test_an_unexpected_failure_is_one_line_and_status_70_with_the_traceback_under_v(
    tmp_path, capsys
):
    from tf_cartola.contract import manifest
    from tf_cartola.inspect import report

    # Not a preprocessing output: said, status 2.
    (tmp_path / "manifest.json").write_text("{not json")
    assert report.main(["--preprocess_dir", str(tmp_path)]) == 2
    assert "manifest.json is not JSON" in capsys.readouterr().err
    fields = {f.name: {} for f in dataclasses.fields(manifest.Manifest) if f.name != "dir"}
    # Statistics TFDV cannot parse: unexpected.
    (tmp_path / "garbled.pbtxt").write_text("datasets {{{")
    artifacts = dict.fromkeys(manifest.ARTIFACTS, str(tmp_path / "garbled.pbtxt"))
    (tmp_path / "manifest.json").write_text(json.dumps({**fields, "artifacts": artifacts}))
    done = _run("tf_cartola.inspect.report", "--preprocess_dir", str(tmp_path))
    assert done.returncode == 70
    # The harness's own line is missing when the CLI ends without returning (cli.leave).
    [line] = [x for x in done.stderr.splitlines() if x != "tensorflow loaded"]
    assert line.startswith("error: unexpected ParseError: ") and line.endswith(
        "(-v shows the traceback)"
    )
    verbose = _run("tf_cartola.inspect.report", "--preprocess_dir", str(tmp_path), "-v")
    assert verbose.returncode == 70 and "Traceback (most recent call last)" in verbose.stderr
