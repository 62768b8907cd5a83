"""Every third-party module the shipped packages import comes from a distribution the package
requires.

A Dataflow, Flink or Spark worker installs the package's `install_requires` and nothing else: a
module imported by `tf_cartola`, `beam_jobs` or `serving` whose distribution is only a dev
requirement (or only arrives through another package's dependencies) crashes the worker, not the
tests.
"""

import ast
import importlib.metadata
import importlib.util
import pathlib
import re
import subprocess
import sys

from tests.helpers import ROOT

SHIPPED = ("tf_cartola", "beam_jobs", "serving")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(package: str):
    """(module, file:line) of every absolute import in a package's sources."""
    for path in sorted(pathlib.Path(ROOT, package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                yield name, f"{path.relative_to(ROOT)}:{node.lineno}"


def _distribution_of(module: str, providers: dict) -> str:
    """The distribution that installs `module`: the one providing its top-level name, or, in a
    namespace package such as `google` that several provide, the one whose files hold its first
    subpackage."""
    parts = module.split(".")
    candidates = providers.get(parts[0], [])
    assert candidates, f"{module} is not installed"
    if len(candidates) > 1:
        spec = importlib.util.find_spec(".".join(parts[:2]))
        assert spec is not None and spec.origin, f"{module} is not installed"
        origin = pathlib.Path(spec.origin).resolve()
        candidates = [
            name
            for name in candidates
            if any(
                pathlib.Path(importlib.metadata.distribution(name).locate_file(f)).resolve()
                == origin
                for f in importlib.metadata.files(name) or ()
            )
        ]
        assert len(candidates) == 1, f"{module}: installed by {candidates}"
    return _normal(candidates[0])


def _install_requires(tmp_path) -> set:
    """The distributions setup.py declares, as a built package's metadata carries them."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    [requires] = tmp_path.glob("*.egg-info/requires.txt")
    names = set()
    for line in requires.read_text().splitlines():
        if line.startswith("["):  # Extras follow; they are not installed by a worker.
            break
        if line.strip():
            names.add(_normal(re.split(r"[\s<>=!~;\[]", line.strip(), maxsplit=1)[0]))
    return names


def test_every_third_party_import_of_the_shipped_packages_is_a_declared_requirement(tmp_path):
    stdlib = set(sys.stdlib_module_names)
    providers = importlib.metadata.packages_distributions()
    required = _install_requires(tmp_path)
    missing = {}
    for package in SHIPPED:
        for module, where in _imports(package):
            if module.split(".")[0] in stdlib or module.split(".")[0] in SHIPPED:
                continue
            dist = _distribution_of(module, providers)
            if dist not in required:
                missing.setdefault(dist, []).append(f"{module} ({where})")
    assert not missing, "imported but not in install_requires: " + "; ".join(
        f"{dist}: {', '.join(places)}" for dist, places in sorted(missing.items())
    )
