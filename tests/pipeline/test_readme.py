"""The README's runnable blocks (```sh), run as written in a fresh folder: each must succeed and
every path it prints must exist."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tf_cartola.common.loopback import free_port

_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
_NOISE = re.compile(r"cuda|TensorRT|TF-TRT|FutureWarning|DeprecationWarning|Traceback")
_PATH = re.compile(
    r"(?<![\w/.:-])((?:runs|serving_models|data)/[\w./-]*\w|[\w./-]+\.(?:csv|json|jsonl|html|config))"
)


@pytest.mark.e2e
def test_every_runnable_readme_block_works_as_written(tmp_path):
    blocks = _BLOCK.findall(open(os.path.join(ROOT, "README.md")).read())
    assert blocks, "the README has no runnable (```sh) block"
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    for written in blocks:
        block = written
        for port in ("8600", "8601"):  # Loopback ports nobody else uses now.
            block = block.replace(port, str(free_port()))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, (block, done.stdout[-3000:], done.stderr[-3000:])
        noise = [line for line in (done.stdout + done.stderr).splitlines() if _NOISE.search(line)]
        assert not noise, noise[:5]  # Library chatter stays behind -v.
        printed = set(_PATH.findall(done.stdout))
        assert printed, done.stdout
        missing = sorted(p for p in printed if not os.path.exists(os.path.join(tmp_path, p)))
        assert not missing, (missing, done.stdout[-3000:])


@pytest.mark.e2e
def test_the_notebook_opens_what_the_walkthrough_writes():
    import nbformat

    walkthrough = _BLOCK.findall(open(os.path.join(ROOT, "README.md")).read())[0]
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "inspect_run.ipynb"), as_version=4)
    [parameters] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    defaults = dict(re.findall(r'^(PREPROCESS_DIR|RUN_DIR) = "([^"]+)"', parameters.source, re.M))
    preprocess = "beam_jobs.preprocess --input users-2026-01.csv --output_dir"
    assert f"{preprocess} {defaults['PREPROCESS_DIR']}\n" in walkthrough
    assert f"--run_dir {defaults['RUN_DIR']}\n" in walkthrough
