"""Activities, signals, queries, updates and workflows are invoked by typed reference (issue #17).

The package (``titus_flow/``, ``workflows/``, ``activities/``) calls
``workflow.execute_activity_method(AgentActivityInterface.launch, ...)``,
``handle.signal(SchedulerWorkflow.drain_agent, ...)``, never
``execute_activity("launch", ...)`` or ``handle.signal("drain_agent", ...)``: a
name typed again at a call can drift from its definition unnoticed, and the
reference lets mypy check the argument and result types.

The test reads the source with :mod:`ast` (docstrings and comments do not
count) and finds each call of an invoking API (:data:`INVOKING`). The argument
naming what is invoked (the first positional one, or the keyword of
:data:`NAME_KEYWORDS`) must be a reference to a definition:

* ``Class.method``: an attribute of a CapWords name (not an ALL_CAPS one);
* a name that is a parameter of the enclosing function, annotated with a type
  that is not ``str``, ``Any`` or ``object`` (a helper taking a reference);
* a function defined in, or imported into, the module, by a lowercase name;
* ``a if cond else b`` of references;
* for ``start_signal=`` (the API takes only a string): ``signal_name(reference)``.

Anything else (a string literal, an f-string, a constant, a variable) fails the
test with ``file:line``, except the sites of :data:`ALLOWED`, where the name is
genuinely the user's. An entry of :data:`ALLOWED` that matches no site fails
too, so the list stays exactly the dynamic sites.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio import activity, workflow

from titus_flow.activities.agent import AgentActivities
from titus_flow.activities.control import ControlActivities
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
from titus_flow.workflows.dag import JobDagWorkflow
from titus_flow.workflows.requester import PlacementRequester
from titus_flow.workflows.scheduler import SchedulerWorkflow
from titus_flow.workflows.service import ServiceJobWorkflow

REPO = Path(__file__).resolve().parents[2]
# titus_flow/workflows and titus_flow/activities are symlinks to these: read each file once.
SOURCE_DIRS = ("titus_flow", "workflows", "activities")
SYMLINKED = ("titus_flow/workflows", "titus_flow/activities")

INVOKING = frozenset(
    {
        # activities, from a workflow
        "execute_activity",
        "start_activity",
        "execute_activity_method",
        "start_activity_method",
        "execute_activity_class",
        "start_activity_class",
        "execute_local_activity",
        "start_local_activity",
        "execute_local_activity_method",
        "start_local_activity_method",
        "execute_local_activity_class",
        "start_local_activity_class",
        # signals, queries and updates, from a client or a workflow handle
        "signal",
        "query",
        "execute_update",
        "start_update",
        "signal_with_start",
        # workflows
        "start_workflow",
        "execute_workflow",
        "execute_child_workflow",
        "start_child_workflow",
        "get_workflow_handle_for",
        "get_external_workflow_handle_for",
        "ScheduleActionStartWorkflow",
        "execute_update_with_start_workflow",
        "start_update_with_start_workflow",
        "WithStartWorkflowOperation",
    }
)
NAME_KEYWORDS = ("activity", "workflow", "signal", "query", "update")
NAME_HELPERS = {"start_signal": "signal_name"}
NOT_A_REFERENCE_TYPE = frozenset({"str", "Any", "object"})

ALLOWED: dict[tuple[str, str, str, str], str] = {
    # (file, enclosing function, called API, the name argument's source): why
    ("titus_flow/cli/flow_commands.py", "start.go", "start_workflow", "name"): (
        "`titus-flow start PATH:Workflow`: the user's own workflow class, loaded from their"
        " file; started by the name its @workflow.defn gives it"
    ),
    (
        "titus_flow/cli/flow_commands.py",
        "_schedule_action",
        "ScheduleActionStartWorkflow",
        "workflow",
    ): "`titus-flow schedule create NAME PATH:Workflow`: the user's workflow, as for `start`",
    ("titus_flow/flow/services.py", "canary", "execute_activity", "check_activity"): (
        "canary(check=...): the user's own check activity, a function or the name they"
        " registered it under"
    ),
}


@dataclass(frozen=True)
class Site:
    """One invoking call whose name argument is not a reference."""

    path: str
    line: int
    function: str
    api: str
    argument: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.path, self.function, self.api, self.argument)

    def __str__(self) -> str:
        where = f" in {self.function}" if self.function else ""
        return f"{self.path}:{self.line}{where}: {self.api}({self.argument}, ...)"


def _union_members(annotation: ast.expr) -> list[ast.expr]:
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _union_members(annotation.left) + _union_members(annotation.right)
    if isinstance(annotation, ast.Subscript) and _dotted(annotation.value) in (
        "Optional",
        "Union",
        "typing.Optional",
        "typing.Union",
    ):
        inner = annotation.slice
        elements = inner.elts if isinstance(inner, ast.Tuple) else [inner]
        return [m for e in elements for m in _union_members(e)]
    return [annotation]


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_reference_type(annotation: ast.expr | None) -> bool:
    if annotation is None:
        return False
    for member in _union_members(annotation):
        if isinstance(member, ast.Constant):  # a quoted annotation, or None
            return False
        if _dotted(member).rpartition(".")[2] in NOT_A_REFERENCE_TYPE:
            return False
    return True


class _Checker(ast.NodeVisitor):
    """Collects the invoking calls of one module whose name argument is no reference."""

    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.sites: list[Site] = []
        self._scopes: list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = []
        # Functions a module can pass as activity references: its own and imported ones.
        self._functions = {
            n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self._modules: set[str] = set()  # names bound by `import x` (e.g. the signal module)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                self._functions |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                self._modules |= {
                    (a.asname or a.name).partition(".")[0]
                    for a in node.names
                    if not a.name.startswith("temporalio")
                }

    def _visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self._scopes.append(node)
        self.generic_visit(node)
        self._scopes.pop()

    visit_FunctionDef = _visit_scope
    visit_AsyncFunctionDef = _visit_scope
    visit_ClassDef = _visit_scope

    def _function(self) -> str:
        functions = [s for s in self._scopes if not isinstance(s, ast.ClassDef)]
        if not functions:
            return ""
        start = self._scopes.index(functions[0])
        return ".".join(s.name for s in self._scopes[start:])

    def _parameter_types(self) -> dict[str, ast.expr | None]:
        types: dict[str, ast.expr | None] = {}
        for scope in self._scopes:
            if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
                a = scope.args
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                    types[arg.arg] = arg.annotation
        return types

    def _is_reference(self, node: ast.expr) -> bool:
        if isinstance(node, ast.IfExp):
            return self._is_reference(node.body) and self._is_reference(node.orelse)
        if isinstance(node, ast.Attribute):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            return (
                isinstance(root, ast.Name)
                and root.id[:1].isupper()
                and not root.id.isupper()
                and not node.attr.isupper()
            )
        if isinstance(node, ast.Name):
            parameters = self._parameter_types()
            if node.id in parameters:
                return _is_reference_type(parameters[node.id])
            return node.id in self._functions and not node.id.isupper()
        return False

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute):
            api = func.attr
            if isinstance(func.value, ast.Name) and func.value.id in self._modules:
                return  # e.g. signal.signal(SIGTERM, ...): the standard library's
        elif isinstance(func, ast.Name):
            api = func.id
        else:
            return
        if api not in INVOKING:
            return
        checks: list[tuple[ast.expr, str | None]] = []
        if node.args and not isinstance(node.args[0], ast.Starred):
            checks.append((node.args[0], None))
        for keyword in node.keywords:
            if keyword.arg in NAME_KEYWORDS:
                checks.append((keyword.value, None))
            elif keyword.arg in NAME_HELPERS:
                checks.append((keyword.value, NAME_HELPERS[keyword.arg]))
        for argument, helper in checks:
            if helper is not None:
                ok = (
                    isinstance(argument, ast.Call)
                    and _dotted(argument.func).rpartition(".")[2] == helper
                    and len(argument.args) == 1
                    and self._is_reference(argument.args[0])
                )
            else:
                ok = self._is_reference(argument)
            if not ok:
                site = Site(self.path, node.lineno, self._function(), api, ast.unparse(argument))
                self.sites.append(site)


def unreferenced_sites(source: str, path: str) -> list[Site]:
    """The invoking calls in ``source`` whose name argument is not a reference."""
    tree = ast.parse(source, filename=path)
    checker = _Checker(path, tree)
    checker.visit(tree)
    return checker.sites


def _package_files() -> list[Path]:
    files = []
    for folder in SOURCE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if not relative.startswith(SYMLINKED):
                files.append(path)
    return files


def _package_sites() -> list[Site]:
    return [
        site
        for path in _package_files()
        for site in unreferenced_sites(path.read_text(), path.relative_to(REPO).as_posix())
    ]


def test_the_scan_reads_the_whole_package() -> None:
    files = {p.relative_to(REPO).as_posix() for p in _package_files()}
    for expected in (
        "titus_flow/client.py",
        "titus_flow/cli/fleet_commands.py",
        "titus_flow/flow/jobs.py",
        "workflows/attempts.py",
        "workflows/scheduler.py",
        "activities/fleet.py",
    ):
        assert expected in files


def test_nothing_is_invoked_by_a_string_name() -> None:
    sites = _package_sites()
    unexpected = [str(s) for s in sites if s.key not in ALLOWED]
    assert not unexpected, (
        "invoked by name, not by typed reference (use the decorated method, e.g."
        " execute_activity_method(AgentActivityInterface.launch, ...), handle.signal("
        "SchedulerWorkflow.drain_agent, ...); see titus_flow.refs for APIs that take only a"
        " name):\n" + "\n".join(unexpected)
    )


def test_the_allow_list_names_exactly_the_dynamic_sites() -> None:
    found = {s.key for s in _package_sites()}
    stale = [key for key in ALLOWED if key not in found]
    assert not stale, f"allow-list entries that match no call any more: {stale}"


@pytest.mark.parametrize(
    "call",
    [
        'workflow.execute_activity("launch", request, start_to_close_timeout=t)',
        'workflow.start_activity("stop", request)',
        'await handle.signal("kill")',
        'await handle.query("describe")',
        'await handle.execute_update("scale", bounds, id=i)',
        'await client.start_workflow("Scheduler", id=i, task_queue=q)',
        'await client.start_workflow(SchedulerWorkflow.run, None, id=i, start_signal="renew")',
        "await client.start_workflow(SchedulerWorkflow.run, None, id=i, start_signal=RENEW)",
        'await workflow.start_child_workflow(f"Batch{kind}", request, id=i)',
        'workflow.get_external_workflow_handle(r).signal("placement_update", update)',
        "await handle.signal(KILL)",
        "await handle.query(names.DESCRIBE)",
        'await handle.execute_update(update="scale", arg=bounds)',
        'ScheduleActionStartWorkflow("JobDag", dag, id=i, task_queue=q)',
    ],
)
def test_a_name_at_an_invoking_call_is_found(call: str) -> None:
    source = f'KILL = "kill"\n\nasync def go() -> None:\n    {call}\n'
    sites = unreferenced_sites(source, "example.py")
    assert [(s.path, s.line, s.function) for s in sites] == [("example.py", 4, "go")]


def test_references_docstrings_and_definitions_are_not_flagged() -> None:
    source = '''
"""Call ``execute_activity("launch", ...)`` as documented here."""
import signal

from temporalio import workflow

from somewhere import check_passed


@workflow.defn(name="Example")
class Example:
    @workflow.signal(name="kill")  # a definition, not an invocation
    def kill(self) -> None:
        """handle.signal("kill") in a docstring."""

    async def go(self, update: UpdateMethodMultiParam[..., T], run: Callable[[W], R]) -> None:
        # handle.query("describe") in a comment
        await workflow.execute_activity_method(AgentActivityInterface.launch, request)
        await workflow.execute_activity(check_passed, request)
        await handle.signal(SchedulerWorkflow.renew if fresh else SchedulerWorkflow.release)
        await handle.execute_update(update, args=args)
        await workflow.start_child_workflow(run, request, id=i)
        await client.start_workflow(
            SchedulerWorkflow.run, None, id=i, start_signal=signal_name(SchedulerWorkflow.renew)
        )
        signal.signal(signal.SIGTERM, handler)
'''
    assert unreferenced_sites(source, "example.py") == []


def test_a_helper_taking_a_name_as_str_is_found() -> None:
    source = """
async def _update(self, workflow_id: str, name: str, *args: Any) -> Any:
    return await handle.execute_update(name, args=args)

async def _signal(self, signal: Any, arg: object) -> None:
    await handle.signal(signal, arg)
"""
    assert [s.line for s in unreferenced_sites(source, "example.py")] == [3, 6]


# -- the names that reach Temporal did not change -------------------------------------------


def _activity_names(cls: type) -> dict[str, str]:
    """Method name -> activity name of every @activity.defn method defined on ``cls``."""
    names = {}
    for attribute, member in vars(cls).items():
        if callable(member) and activity._Definition.from_callable(member) is not None:
            names[attribute] = activity_name(member)
    return names


@pytest.mark.parametrize(
    ("interface", "implementation", "expected"),
    [
        (
            AgentActivityInterface,
            AgentActivities,
            {
                "launch": "launch",
                "supervise": "supervise",
                "stop": "stop",
                "read_logs": "read_logs",
            },
        ),
        (
            FleetActivityInterface,
            FleetActivities,
            {
                "launch": "fleet_launch",
                "describe": "fleet_describe",
                "terminate": "fleet_terminate",
                "observe": "fleet_observe",
                "observe_own": "fleet_observe_own",
            },
        ),
        (
            ServiceActivityInterface,
            ServiceActivities,
            {"rollout": "service_rollout", "wait": "service_wait"},
        ),
    ],
)
def test_each_declared_activity_is_implemented_under_its_name(
    interface: type, implementation: type, expected: dict[str, str]
) -> None:
    assert issubclass(implementation, interface)
    assert _activity_names(interface) == expected
    assert _activity_names(implementation) == expected


def test_the_control_activities_keep_their_names() -> None:
    assert _activity_names(ControlActivities) == {
        "closed_workflows": "closed_workflows",
        "agent_pollers": "agent_pollers",
    }


def test_names_read_from_definitions() -> None:
    assert BATCH_JOB_WORKFLOW == workflow_name(BatchJobWorkflow.run) == "BatchJob"
    assert SERVICE_JOB_WORKFLOW == workflow_name(ServiceJobWorkflow.run) == "ServiceJob"
    assert workflow_name(JobDagWorkflow.run) == "JobDag"
    assert signal_name(SchedulerWorkflow.register_agent) == "register_agent"
    assert signal_name(SchedulerWorkflow.renew) == "renew"
    assert query_name(SchedulerWorkflow.demand) == "demand"
    assert update_name(ServiceJobWorkflow.scale) == "scale"
    assert update_name(BatchJobWorkflow.kill_task) == "kill_task"


def test_both_job_workflows_answer_the_schedulers_placement_update() -> None:
    assert signal_name(PlacementRequester.placement_update) == "placement_update"
    for cls in (BatchJobWorkflow, ServiceJobWorkflow):
        defn = workflow._Definition.must_from_class(cls)
        assert "placement_update" in defn.signals
