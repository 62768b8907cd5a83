"""The README's runnable blocks (```sh), run as written in a fresh folder: each must succeed and every
path it prints must exist."""

import os
import re
import subprocess
import sys

from tf_cartola.loopback import free_port

from tests.helpers import ROOT

_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
_PATH = re.compile(r"(?<![\w/.:-])((?:runs|serving_models|data)/[\w./-]*\w|[\w./-]+\.(?:csv|json|jsonl|html|config))")


def test_every_runnable_readme_block_works_as_written(tmp_path):
    blocks = _BLOCK.findall(open(os.path.join(ROOT, "README.md")).read())
    assert blocks, "the README has no runnable (```sh) block"
    os.symlink(os.path.join(ROOT, "configs"), tmp_path / "configs")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    for block in blocks:
        for port in ("8600", "8601"):  # Loopback ports nobody else uses now.
            block = block.replace(port, str(free_port()))
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, (block, done.stdout[-3000:], done.stderr[-3000:])
        printed = set(_PATH.findall(done.stdout))
        assert printed, done.stdout
        missing = sorted(p for p in printed if not os.path.exists(os.path.join(tmp_path, p)))
        assert not missing, (missing, done.stdout[-3000:])
