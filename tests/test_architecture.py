"""The house rules a maintainer can hold in their head, checked on the source (no import, no torch):
no module over 700 lines, no function over 100 lines (docstring included), and an import graph
without a cycle (top-level and function-level imports alike), in which ``weights`` imports no
network and ``training``, ``data`` and ``device`` import no detector."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skad_transfer"
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 100


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its code."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            elif (node.module or "").startswith("skad_transfer"):
                base = node.module
            else:
                continue
            candidates = [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names if alias.name.startswith("skad_transfer")]
        else:
            continue
        for target in candidates:
            while target and target not in modules:  # an imported name: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported_modules(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_module_is_over_700_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in long.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_is_over_100_lines():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append((name, node.name, lines))
    assert long == []


def test_the_import_graph_has_no_cycle():
    assert _cycle(_import_graph()) is None


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("lower, upper", [
    ("skad_transfer.weights", "skad_transfer.nn"),  # records are data; each network declares its own
    ("skad_transfer.training", "skad_transfer.detectors"),  # the loop knows no detector
    ("skad_transfer.training", "skad_transfer.losses"),
    ("skad_transfer.data", "skad_transfer.training"),
    ("skad_transfer.data", "skad_transfer.detectors"),
    ("skad_transfer.device", "skad_transfer.training"),
])
def test_lower_layers_import_no_upper_one(lower, upper):
    graph = _import_graph()
    reach, todo = set(), [name for name in graph if name == lower or name.startswith(lower + ".")]
    while todo:
        name = todo.pop()
        for target in graph[name]:
            if target not in reach:
                reach.add(target)
                todo.append(target)
    assert sorted(name for name in reach if name == upper or name.startswith(upper + ".")) == []
