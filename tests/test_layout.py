"""The house: packages that show the architecture, and dependencies that go one way.

Reads every module of `bodycam/` (as source, with `ast`: nothing is imported) and checks
what docs/architecture.md promises: no import cycle, every import goes to the same layer
or a lower one, no import of bodycam hidden inside a function or behind TYPE_CHECKING, no
module at the top besides the entry points and foundations, and a docstring on each package
saying what it holds and what it may import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "bodycam"

# Highest first: a module may import its own layer or any layer below it.
LAYERS: list[tuple[str, set[str]]] = [
    ("entry points", {"__main__", "cli", "cli_evidence", "demo"}),
    ("the running server", {"gateway", "ui"}),
    ("domains", {"media", "live", "geo", "users", "devices"}),
    ("evidence", {"evidence"}),
    ("the store", {"store"}),
    (
        "foundations",
        {"__init__", "config", "models", "errors", "clock", "access", "logs", "metrics", "heap"},
    ),
]
TOP_MODULES = {
    name
    for _, names in LAYERS
    for name in names
    if name not in {"gateway", "ui", "media", "live", "geo", "evidence", "store"}
}
# The one place the gateway reaches into the console: create_app mounts it.
SERVER_MOUNT = ("bodycam.gateway.app", "bodycam.ui")


def module_name(path: Path) -> str:
    parts = ["bodycam", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    first = module.split(".")[1] if "." in module else "__init__"
    for rank, (_, names) in enumerate(LAYERS):
        if first in names:
            return rank
    raise AssertionError(f"{module} is in no layer of this test: give it one")


def resolve(module: str, node: ast.ImportFrom) -> Iterator[str]:
    """The bodycam modules an import statement reaches (a package's submodules included)."""
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target != "bodycam" and not target.startswith("bodycam."):
        return
    for alias in node.names:
        full = f"{target}.{alias.name}"
        yield full if full in MODULES else target


def imports(module: str) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(imported module, statement, at module level) for every bodycam import."""
    tree = ast.parse(MODULES[module].read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bodycam"):
                    yield alias.name, node, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            for target in resolve(module, node):
                yield target, node, id(node) in top


GRAPH = {m: sorted({t for t, _, _ in imports(m) if t != m}) for m in MODULES}


def test_no_module_at_the_top_but_entry_points_and_foundations() -> None:
    top = {p.stem for p in ROOT.glob("*.py")}
    assert top <= TOP_MODULES, f"modules at the top of bodycam/: {sorted(top - TOP_MODULES)}"


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycle() -> None:
    assert not find_cycles(GRAPH), f"import cycles: {find_cycles(GRAPH)}"


def test_the_checks_would_see_a_cycle_and_an_edge() -> None:
    """A check that reads nothing would pass everything: the cycle finder finds a planted
    cycle, and the graph holds an edge the code has."""
    planted = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert find_cycles(planted) == [["a", "b", "c"]]
    assert "bodycam.store.base" in GRAPH["bodycam.store"]
    assert "bodycam.models" in GRAPH["bodycam.store.base"]


def test_dependencies_go_one_way() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            if layer_of(target) < layer_of(module):
                up = LAYERS[layer_of(target)][0]
                wrong.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({up})")
            elif (
                target.startswith("bodycam.ui")
                and module.startswith("bodycam.gateway")
                and (module, target.split(".")[0] + ".ui") != SERVER_MOUNT
            ):
                wrong.append(f"{module} imports the console ({target}): only gateway.app mounts it")
    assert not wrong, "\n".join(wrong)


def test_no_import_hidden_in_a_function_or_behind_type_checking() -> None:
    hidden = []
    for module in MODULES:
        tree = ast.parse(MODULES[module].read_text())
        guarded = {
            id(stmt)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in ast.walk(node)
        }
        for target, node, at_top in imports(module):
            if not at_top or id(node) in guarded:
                hidden.append(f"{module}:{node.lineno} imports {target}")
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize(
    "package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py" and m != "bodycam")
)
def test_each_package_says_what_it_holds_and_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    assert len(doc) > 80, f"{package} has no docstring saying what it holds"
    assert "May import" in doc, f"{package}'s docstring does not say what it may import"


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in helpers.py (and a few named helper modules), fixtures in
    conftest.py: a test module never imports a test module or conftest."""
    tests = Path(__file__).resolve().parent
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                # relative (from .test_x), or absolute (tests.test_x, or test_x on the path)
                names = [("." * node.level) + node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.lstrip(".").split(".")
                ours = name.startswith(".") or parts[0] == "tests" or len(parts) == 1
                if ours and (parts[-1].startswith("test_") or parts[-1] == "conftest"):
                    wrong.append(f"{path.relative_to(tests)}:{node.lineno} imports {name}")
    assert not wrong, "\n".join(wrong)
