"""The house's shape, checked on the import graph (parsed with ``ast``, lazy imports included):
no circles, imports only point down, and every module is imported by some test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

#: Floors from the ground up: a module may import its own floor and the floors below.
FLOORS = ("data_prep", "methods", "metrics", "reports", "animbench")
#: Inside methods/: the parts and the contract, then the models, then the engine that drives them.
METHODS_FLOORS = {"engine": 2, "models": 1}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p for package in FLOORS for p in sorted((REPO / package).rglob("*.py"))
    }


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports that never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Repository modules ``path`` imports (``from a import b`` counts b when b is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            subs = {f"{base}.{alias.name}" for alias in node.names} & set(modules)
            found.update(subs or {base})
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def floor(module: str) -> tuple[int, int]:
    parts = module.split(".")
    inner = METHODS_FLOORS.get(parts[1], 0) if parts[0] == "methods" and len(parts) > 1 else 0
    return FLOORS.index(parts[0]), inner


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if floor(b) > floor(a)
    )


def test_the_checks_see_a_circle_and_an_upward_import():
    # The checks themselves can fail: a two-module circle and an import from data_prep upwards.
    graph = {"data_prep.a": {"methods.b"}, "methods.b": {"data_prep.a"}, "reports.c": set()}
    assert circles(graph) == [["data_prep.a", "methods.b"]]
    assert upward_imports(graph) == ["data_prep.a -> methods.b"]
    assert floor("methods.engine.train") > floor("methods.models.fomm") > floor("methods.blocks")


def test_no_circles():
    assert circles(import_graph()) == []


def test_imports_only_point_down():
    assert upward_imports(import_graph()) == []


def test_nothing_imports_the_cli():
    graph = import_graph()
    assert [a for a, targets in graph.items() if "animbench.cli" in targets and not a.startswith("animbench")] == []


def test_every_module_is_imported_by_a_test():
    modules = _modules()
    tested: set[str] = set()
    for path in sorted((REPO / "tests").rglob("*.py")):
        tested |= imports_of(path, modules)
    untested = sorted(
        name for name, path in modules.items()
        if name not in tested and path.name not in ("__init__.py", "__main__.py")
    )
    assert untested == [], f"modules no test imports: {untested}"


@pytest.mark.parametrize("rules", sorted((REPO / "workflow/rules").glob("*.smk")), ids=lambda p: p.name)
def test_rules_name_no_method(rules):
    # The workflow asks the registries: no rule file spells a method's name.
    from methods.registry import list_methods

    text = rules.read_text()
    assert [m for m in list_methods() if f'"{m}"' in text or f"'{m}'" in text] == []
