"""The shape docs/architecture.md describes, kept true: no import cycles between the modules of
`chat` (imports only for type checking aside), no module over MAX_LINES (nor any browser module
in static/), no module at the top of `chat/` that belongs in a folder, and the live folder knows
no broker and no store."""

from __future__ import annotations

import ast
from pathlib import Path

import chat

ROOT = Path(chat.__file__).parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `chat` this one imports when it runs (at the top or in a function)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for other in node.orelse:
                visit(other)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                out.add(node.module)
            for alias in node.names:  # `from chat.live import protocol`: a module
                if f"{node.module}.{alias.name}" in modules:
                    out.add(f"{node.module}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    # Packages' __init__ modules hold docstrings only: an edge to one is no dependency.
    return {m for m in out if modules[m].name != "__init__.py"}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_package_has_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # So that the test above cannot pass by finding nothing at all.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_no_browser_module_is_over_the_size_limit() -> None:
    scripts = sorted((ROOT.parent / "static").glob("*.js"))
    assert scripts, "static/ has the browser client's modules"
    sizes = {path.name: len(path.read_text().splitlines()) for path in scripts}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_live_folder_knows_no_broker_and_no_store() -> None:
    graph = import_graph()
    for name, imported in graph.items():
        if name.startswith("chat.live"):
            assert not {m for m in imported if m.startswith(("chat.fanout", "chat.storage"))}, name
