"""No shipped module opens, lists, tests or cuts a path with Python's local-only calls (open,
os.path, shutil, glob, pathlib, tempfile): a path a user gives may be on an object store (gs://,
s3://) or TensorFlow's ram://, which only `tf.io.gfile` (through tf_cartola.common.files) and
Beam's FileSystems inside Beam jobs reach."""

import ast
import pathlib

import pytest

from tests.helpers import ROOT

SHIPPED = ("tf_cartola", "beam_jobs", "serving")
# Modules that may call them, and why.
ALLOWED = {
    "tf_cartola/common/files.py": "the one place that opens a user's path: Python's calls for a "
    "local path",
    "tf_cartola/common/local_postgres.py": "a throwaway PostgreSQL server for tests: its data "
    "folder is local",
}
# os.path altogether (its string functions follow the local OS, and normpath breaks "gs://"), and
# the os calls that touch a filesystem; posixpath and tf_cartola.common.files.join cut paths and
# URLs alike.
OS_CALLS = {
    "makedirs",
    "mkdir",
    "rename",
    "replace",
    "remove",
    "unlink",
    "listdir",
    "scandir",
    "walk",
    "stat",
    "rmdir",
    "removedirs",
}
LOCAL_ONLY_MODULES = ("shutil", "glob", "pathlib", "tempfile")


def _dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _findings(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                if name.split(".")[0] in LOCAL_ONLY_MODULES:
                    yield node.lineno, f"import {name}"
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        owner, _, attr = name.rpartition(".")
        if name == "open" or owner == "os.path" or (owner == "os" and attr in OS_CALLS):
            yield node.lineno, f"{name}()"


def test_no_shipped_module_calls_local_only_file_functions():
    found = []
    for package in SHIPPED:
        for path in sorted(pathlib.Path(ROOT, package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if where not in ALLOWED:
                found += [f"{where}:{line}: {what}" for line, what in _findings(path)]
    assert not found, (
        "use tf_cartola.common.files (or tf.io.gfile / Beam's FileSystems):\n" + "\n".join(found)
    )


def test_the_check_sees_each_kind_of_call(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os, shutil\nopen('x')\nos.path.exists('x')\nos.makedirs('x')\nos.path.join('a')\n"
        "os.getpid()\n"
    )
    assert [what for _, what in _findings(sample)] == [
        "import shutil",
        "open()",
        "os.path.exists()",
        "os.makedirs()",
        "os.path.join()",
    ]


def test_a_scheme_whose_plugin_is_missing_is_a_clear_error(monkeypatch):
    from tf_cartola.common import files

    monkeypatch.setitem(files.PLUGINS, "nowhere", "no_such_filesystem_plugin")
    with pytest.raises(ValueError, match="nowhere://b/x: TensorFlow reaches nowhere:// through"):
        files.exists("nowhere://b/x")
    files.reach("/a/local/path", "gs://b/x")  # Built in: nothing to import.
