"""The layout's rule: each package imports only from packages of its own layer or lower ones, and
no module imports itself back through others (no cycles), counting imports inside functions too. A
package's `__main__` (`python -m tf_cartola.train`) is an entry point and sits on the top layer."""

import ast
import pathlib

from tests.helpers import ROOT

# Lowest first. A stage's package may use the packages above it in this list, never those below.
LAYERS = (
    "tf_cartola",
    "tf_cartola.common",
    "tf_cartola.contract",
    "tf_cartola.synthetic",
    "tf_cartola.read",
    "tf_cartola.write",
    "tf_cartola.transform",
    "tf_cartola.export",
    "tf_cartola.validate",
    "tf_cartola.evaluate",
    "tf_cartola.score",
    "tf_cartola.train",
    "tf_cartola.inspect",
    "beam_jobs.shared",
    "beam_jobs.jobs",
    "beam_jobs",
    "serving",
)
PACKAGES = ("tf_cartola", "beam_jobs", "serving")


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict:
    return {
        _module(p): p for package in PACKAGES for p in (pathlib.Path(ROOT) / package).rglob("*.py")
    }


def _imports(path: pathlib.Path, modules) -> set:
    """The project modules a file imports, anywhere in it (`from a import b` counts a.b when it is
    one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                found.add(
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                )
    return {name for name in found if name in modules}


def _layer(module: str) -> int:
    # A package's command line is an entry point, above every library.
    if module.endswith(".__main__"):
        return len(LAYERS) - 1
    return max(
        i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")
    )


def _graph() -> dict:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_package_is_in_a_layer_and_imports_only_its_own_or_lower_ones():
    upward = [
        f"{a} (layer {LAYERS[_layer(a)]}) imports {b} (layer {LAYERS[_layer(b)]})"
        for a, imported in sorted(_graph().items())
        for b in sorted(imported)
        if _layer(b) > _layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_back():
    graph, state, cycles = _graph(), {}, []

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join(path[path.index(imported) :] + [imported]))
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
