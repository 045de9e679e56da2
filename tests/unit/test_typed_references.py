"""No activity, signal, query or update is invoked by a string name in the package (issue #17).

The package calls ``workflow.execute_activity_method(AgentActivityInterface.launch, ...)``
and ``handle.signal(SchedulerWorkflow.drain_agent, ...)``, never
``execute_activity("launch", ...)`` or ``handle.signal("drain_agent", ...)``: a
name typed again at a call drifts from its definition unnoticed, a reference
makes a rename a type error.

The scan reads the source with :mod:`ast` (comments and docstrings do not
count) and flags each call of an invoking API (:data:`INVOKING`) whose name
argument (the first positional one, or the keyword of :data:`NAME_KEYWORDS`)
is a string literal, an f-string or a module-level string constant (defined in
the module or imported from another module of the package). A name the user
gives at run time (``canary(check=...)``) is a variable, not a constant, and
passes.

The workflows and activities each side needs to agree on names with are also
checked here: the scheduler answers batch and service jobs through one signal,
:class:`~titus_flow.workflows.requester.PlacementRequester`'s.
"""

from __future__ import annotations

import ast
from pathlib import Path

from temporalio import workflow

from titus_flow.activities.agent import AgentActivities
from titus_flow.activities.fleet import FleetActivities
from titus_flow.activities.interfaces import (
    AgentActivityInterface,
    FleetActivityInterface,
    ServiceActivityInterface,
)
from titus_flow.activities.services import ServiceActivities
from titus_flow.flow import BATCH_JOB_WORKFLOW, SERVICE_JOB_WORKFLOW
from titus_flow.refs import activity_name, query_name, signal_name, update_name, workflow_name
from titus_flow.workflows.batch import BatchJobWorkflow
from titus_flow.workflows.fleet import FleetWorkflow
from titus_flow.workflows.requester import PlacementRequester
from titus_flow.workflows.scheduler import SchedulerWorkflow
from titus_flow.workflows.service import ServiceJobWorkflow

REPO = Path(__file__).resolve().parents[2]
# titus_flow/workflows and titus_flow/activities are symlinks to the top-level
# workflows/ and activities/: each file is read once, under its real path.
SOURCE_DIRS = ("titus_flow", "workflows", "activities")

INVOKING = frozenset(
    {
        "execute_activity",
        "start_activity",
        "execute_local_activity",
        "start_local_activity",
        "execute_child_workflow",
        "start_child_workflow",
        "signal",
        "query",
        "execute_update",
        "start_update",
        "signal_with_start",
    }
)
NAME_KEYWORDS = frozenset({"activity", "workflow", "signal", "query", "update"})
NAME_ONLY_KEYWORDS = frozenset({"start_signal"})
"""Keywords that take a name wherever they appear (``start_workflow(start_signal=...)``)."""


def source_files() -> list[Path]:
    """Every ``.py`` file of the package, once each (the symlinked folders skipped)."""
    files: set[Path] = set()
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            if not any(p.is_symlink() for p in [path, *path.parents] if REPO in p.parents):
                files.add(path)
    return sorted(files)


def module_name(path: Path) -> str:
    """The dotted name a file is imported under (``workflows/x.py``: ``titus_flow.workflows.x``)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] != "titus_flow":
        parts.insert(0, "titus_flow")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def string_constants(tree: ast.Module) -> set[str]:
    """Names a module binds, at module level, to a string (``X = "a"``, ``X: str = "a"``)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and _is_string(node.value):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.value is not None
            and _is_string(node.value)
        ):
            names.add(node.target.id)
    return names


def _is_string(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    )


def imported_constants(tree: ast.Module, constants: dict[str, set[str]]) -> set[str]:
    """Local names of string constants imported from other modules of the package."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in constants:
            names.update(
                alias.asname or alias.name
                for alias in node.names
                if alias.name in constants[node.module]
            )
    return names


def _called_api(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _str_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Parameters annotated ``str``: a helper taking a name instead of a reference."""
    params = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
    return {
        a.arg for a in params if a.annotation is not None and ast.unparse(a.annotation) == "str"
    }


class _Scan(ast.NodeVisitor):
    """Collects the string-named invocations of one module, with the constants it sees."""

    def __init__(self, where: str, constants: set[str]) -> None:
        self.where = where
        self.scopes = [constants]
        self.found: list[tuple[int, int, str]] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(self.scopes[-1] | _str_parameters(node))
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Call(self, call: ast.Call) -> None:
        api = _called_api(call)
        named = [k.value for k in call.keywords if k.arg in NAME_ONLY_KEYWORDS]
        if api in INVOKING:
            named += [k.value for k in call.keywords if k.arg in NAME_KEYWORDS]
            named += call.args[:1]
        for arg in named:
            if _is_string(arg) or (isinstance(arg, ast.Name) and arg.id in self.scopes[-1]):
                site = f"{self.where}:{arg.lineno}: {api}({ast.unparse(arg)}, ...)"
                self.found.append((arg.lineno, arg.col_offset, site))
        self.generic_visit(call)


def string_named_calls(source: str, where: str, all_constants: dict[str, set[str]]) -> list[str]:
    """``where:line: api(name)`` for each call in ``source`` that invokes by a string name.

    A string name is a literal, an f-string, a module-level string constant
    (the module's own or imported from the package) or a ``str`` parameter of
    the enclosing function.
    """
    tree = ast.parse(source, filename=where)
    scan = _Scan(where, string_constants(tree) | imported_constants(tree, all_constants))
    scan.visit(tree)
    return [site for *_, site in sorted(scan.found)]


def scan() -> list[str]:
    """Every string-named invocation in the package."""
    sources = {p: p.read_text() for p in source_files()}
    all_constants = {module_name(p): string_constants(ast.parse(s)) for p, s in sources.items()}
    return [
        site
        for path, source in sources.items()
        for site in string_named_calls(source, path.relative_to(REPO).as_posix(), all_constants)
    ]


def test_the_scan_reads_the_real_folders_once() -> None:
    files = source_files()
    relative = {p.relative_to(REPO).as_posix() for p in files}
    assert "workflows/batch.py" in relative and "activities/control.py" in relative
    assert "titus_flow/cluster.py" in relative
    assert not any(
        r.startswith(("titus_flow/workflows/", "titus_flow/activities/")) for r in relative
    )


def test_nothing_is_invoked_by_a_string_name() -> None:
    sites = scan()
    assert not sites, "invoked by name, not by reference:\n" + "\n".join(sites)


def test_the_scan_finds_literals_constants_and_imported_constants() -> None:
    """The scan itself: each way of naming by string is found with its line, references are not."""
    source = """
from titus_flow.activities.fleet import DEMAND_QUERY
KILL = "kill"
async def f(handle, check, name: str):
    await workflow.execute_activity("launch", 1)
    await handle.signal(KILL)
    await handle.query(DEMAND_QUERY)
    await handle.execute_update(update=f"scale")
    await client.start_workflow(Scheduler.run, start_signal="renew")
    await handle.signal(Batch.kill)
    await workflow.execute_activity(check, 1)
    await handle.signal(name)
"""
    imported = {"titus_flow.activities.fleet": {"DEMAND_QUERY"}}
    found = string_named_calls(source, "probe.py", imported)
    assert found == [
        "probe.py:5: execute_activity('launch', ...)",
        "probe.py:6: signal(KILL, ...)",
        "probe.py:7: query(DEMAND_QUERY, ...)",
        "probe.py:8: execute_update(f'scale', ...)",
        "probe.py:9: start_workflow('renew', ...)",
        "probe.py:12: signal(name, ...)",
    ]


def test_batch_and_service_jobs_share_the_schedulers_answer_signal() -> None:
    """The scheduler signals every requester by ``PlacementRequester.placement_update``."""
    name = signal_name(PlacementRequester.placement_update)
    for cls in (BatchJobWorkflow, ServiceJobWorkflow):
        assert issubclass(cls, PlacementRequester)  # one handler, not two of one name
        defn = workflow._Definition.must_from_class(cls)
        assert name in defn.signals, f"{cls.__name__} has no {name!r} signal"


def test_names_read_from_definitions_are_the_wire_names() -> None:
    """``titus_flow.refs`` reads what reaches Temporal; histories depend on these strings."""
    assert signal_name(SchedulerWorkflow.renew) == "renew"
    assert signal_name(SchedulerWorkflow.register_agent) == "register_agent"
    assert query_name(SchedulerWorkflow.demand) == "demand"
    assert update_name(ServiceJobWorkflow.kill_task) == update_name(BatchJobWorkflow.kill_task)
    assert update_name(FleetWorkflow.apply) == "apply"
    assert workflow_name(BatchJobWorkflow.run) == BATCH_JOB_WORKFLOW == "BatchJob"
    assert workflow_name(ServiceJobWorkflow.run) == SERVICE_JOB_WORKFLOW == "ServiceJob"
    declared = {
        AgentActivityInterface.launch: "launch",
        AgentActivityInterface.read_logs: "read_logs",
        FleetActivityInterface.observe_own: "fleet_observe_own",
        ServiceActivityInterface.rollout: "service_rollout",
    }
    for ref, name in declared.items():
        assert activity_name(ref) == name


def test_implementations_register_the_declared_activity_names() -> None:
    """Each implementation's activities carry the names their interface declares."""
    pairs = [
        (AgentActivityInterface, AgentActivities),
        (FleetActivityInterface, FleetActivities),
        (ServiceActivityInterface, ServiceActivities),
    ]
    for interface, implementation in pairs:
        for attr, member in vars(interface).items():
            if callable(member) and not attr.startswith("_"):
                assert activity_name(getattr(implementation, attr)) == activity_name(member)
