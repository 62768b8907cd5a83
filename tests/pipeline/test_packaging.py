"""What Dataflow workers get through --setup_file: the sdist holds every module the jobs need."""

import os
import subprocess
import sys
import tarfile

import pytest

from tests.helpers import ROOT


@pytest.mark.e2e
def test_the_sdist_installs_in_a_fresh_venv_and_the_jobs_import_from_it(tmp_path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    [sdist] = list((tmp_path / "dist").glob("tf_cartola-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for module in (
        "tf_cartola/transform/preprocessing.py",
        "tf_cartola/read/csv_reader.py",
        "beam_jobs/shared/transforms.py",
        "beam_jobs/jobs/preprocess.py",
        "serving/client.py",
        "requirements.txt",
    ):
        assert any(n.endswith(module) for n in names), module
    # Installed as a worker installs it (the pinned stack is already there), into a folder of its
    # own that comes first on the path, away from this checkout.
    target = tmp_path / "installed"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(sdist),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probe = (
        "import tf_cartola.transform.preprocessing as p, beam_jobs.shared.transforms, "
        "tf_cartola.read.csv_reader; "
        "print(p.__file__); print(callable(p.preprocessing_fn))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(target)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    where, ok = done.stdout.split()[-2:]
    assert ok == "True" and where.startswith(str(target))
