"""No import cycle between the modules of the ``titus_flow`` package (issue #17).

The test reads every ``.py`` file under ``titus_flow/`` (following the
``workflows`` and ``activities`` symlinks, so ``workflows/batch.py`` is
``titus_flow.workflows.batch``) with :mod:`ast`, without importing anything, and
builds the graph "module A imports module B" over the package's own modules.

What counts as an import of B by A:

* ``import titus_flow.x.y`` and ``from titus_flow.x import y``, absolute or
  relative (``from . import y``, ``from ..x import y``), wherever the statement
  sits: at module level, inside a function or method, inside a
  ``with workflow.unsafe.imports_passed_through():`` block, a ``try`` or an
  ``if``. A deferred import inside a function still ties the two modules
  together; it only hides the cycle until the function runs.
* ``from titus_flow.x import name`` imports ``titus_flow.x.name`` when that is
  a module of the package, and ``titus_flow.x`` (its ``__init__``) in any case.
* Importing ``titus_flow.x.y`` first runs the ``__init__`` of the package
  ``titus_flow.x``, so A also imports ``titus_flow.x`` - except when A is itself
  inside ``titus_flow.x``: a package is always being imported before any of its
  submodules, so that edge says nothing. This is what makes a cycle through a
  package ``__init__`` visible (``a.x`` imports ``b.y``, whose package
  ``b/__init__`` imports ``b.z``, which imports ``a.x``).

What does not count: imports under ``if TYPE_CHECKING:`` (or
``if typing.TYPE_CHECKING:``). They never run; they exist for the type checker
only, which is what they are for when two modules need each other's names only
in annotations. The ``else`` branch of such an ``if`` does run and counts.

On failure the test lists every cycle: each strongly connected component of
more than one module (or a module importing itself), with one concrete cycle
through it spelled out.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "titus_flow"


def _package_root() -> Path:
    # Found without importing the package: a cycle must fail the test, not its import.
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))).resolve()


ROOT = _package_root()


def _module_files() -> dict[str, Path]:
    """Map each dotted module name of the package to its file (symlinks followed)."""
    modules: dict[str, Path] = {}
    # ROOT itself is the real directory; its workflows/ and activities/ entries are
    # symlinks to top-level folders: walk with followlinks and name files by the
    # path *under the package*, not by where they really live.
    for dirpath, dirnames, filenames in os.walk(ROOT, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
        rel = Path(dirpath).relative_to(ROOT)
        if rel != Path(".") and not (Path(dirpath) / "__init__.py").is_file():
            dirnames[:] = []  # not a package: nothing below is importable as titus_flow.*
            continue
        parts = [PACKAGE, *(p for p in rel.parts if p != ".")]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            stem = name[:-3]
            dotted = ".".join(parts if stem == "__init__" else [*parts, stem])
            modules[dotted] = Path(dirpath) / name
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return False


def _import_nodes(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth; skips ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def imports_of(module: str, source: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """The modules in ``known`` that ``module`` imports (see the module docstring)."""
    tree = ast.parse(source)
    targets: set[str] = set()
    for node in _import_nodes(tree.body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        if node.level:
            # Relative: level 1 is the package the module is in (itself for __init__).
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join([*base, node.module] if node.module else base)
        else:
            origin = node.module or ""
        targets.add(origin)
        targets.update(f"{origin}.{alias.name}" for alias in node.names)

    imported: set[str] = set()
    for target in targets:
        if target != PACKAGE and not target.startswith(PACKAGE + "."):
            continue
        # The target and every package above it run; keep the known modules, but not
        # the packages that contain the importer (they are already being imported).
        parts = target.split(".")
        for end in range(2, len(parts) + 1):
            name = ".".join(parts[:end])
            if name in known and not (module + ".").startswith(name + "."):
                imported.add(name)
    imported.discard(module)  # importing itself: harmless, it is in sys.modules already
    return imported


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (read once per test session)."""
    files = _module_files()
    known = set(files)
    return {
        module: imports_of(
            module,
            path.read_text(encoding="utf-8"),
            known,
            is_package=path.name == "__init__.py",
        )
        for module, path in sorted(files.items())
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components)


def _one_cycle(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    inside = set(members)
    start = members[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & inside):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start, start]


def import_cycles(graph: dict[str, set[str]]) -> list[str]:
    """One line per cycle: the modules involved and one concrete path through them."""
    found = []
    for members in strongly_connected(graph):
        if len(members) == 1 and members[0] not in graph[members[0]]:
            continue
        found.append(f"{{{', '.join(members)}}}: {' -> '.join(_one_cycle(graph, members))}")
    return found


def test_package_modules_are_found_through_the_symlinks() -> None:
    graph = import_graph()
    for module in (
        "titus_flow",
        "titus_flow.ledger",
        "titus_flow.scheduler",
        "titus_flow.scheduler.state",
        "titus_flow.workflows.scheduler",
        "titus_flow.activities.agent",
    ):
        assert module in graph
    # Under workflow.unsafe.imports_passed_through() in workflows/scheduler.py.
    assert "titus_flow.ledger" in graph["titus_flow.workflows.scheduler"]


def test_imports_are_read_wherever_they_run_and_only_if_they_run() -> None:
    known = {
        "titus_flow",
        "titus_flow.a",
        "titus_flow.b",
        "titus_flow.b.c",
        "titus_flow.b.x",
        "titus_flow.b.y",
        "titus_flow.d",
        "titus_flow.e",
        "titus_flow.f",
        "titus_flow.g",
        "titus_flow.h",
    }
    source = """
from typing import TYPE_CHECKING
import typing

import os
from titus_flow import a
from . import c as renamed
from .x import thing

if TYPE_CHECKING:
    from titus_flow import d
else:
    from titus_flow import e
if typing.TYPE_CHECKING:
    import titus_flow.d

with workflow.unsafe.imports_passed_through():
    from titus_flow.f import Something

def later():
    import titus_flow.g

class Holder:
    def method(self):
        try:
            from ..h import name
        except ImportError:
            pass
"""
    # No edge to titus_flow.b: it is the importer's own package, always imported first.
    assert imports_of("titus_flow.b.y", source, known) == {
        "titus_flow.a",
        "titus_flow.b.c",
        "titus_flow.b.x",
        "titus_flow.e",
        "titus_flow.f",
        "titus_flow.g",
        "titus_flow.h",
    }
    # Importing a submodule of another package runs that package's __init__ first.
    assert imports_of("titus_flow.a", "from titus_flow.b.x import thing", known) == {
        "titus_flow.b",
        "titus_flow.b.x",
    }
    # Relative imports in a package's __init__ start from the package itself.
    init = "from . import x\nfrom .y import z"
    assert imports_of("titus_flow.b", init, known, is_package=True) == {
        "titus_flow.b.x",
        "titus_flow.b.y",
    }


def test_cycle_finder_sees_a_cycle_and_ignores_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert import_cycles(graph) == ["{a, b, c}: a -> b -> c -> a", "{e}: e -> e"]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_package_modules() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles between titus_flow modules:\n" + "\n".join(cycles)
