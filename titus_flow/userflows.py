"""Find users' own workflow classes (and their activities) in a file, a folder or a module.

A reference is a ``.py`` file, a folder of them, or a dotted module name; a
single workflow is ``REF:Name``, where ``Name`` is the class name or the name
given to ``@workflow.defn(name=...)``.

A file is imported under its own name (``pipeline.py`` as ``pipeline``) with its
folder added to ``sys.path``, not loaded anonymously: Temporal's sandbox
re-imports a workflow's module by name for every workflow run, so the module
must stay importable for the life of the worker.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
from temporalio import activity, workflow

from titus_flow.errors import UserError, format_validation_error


def workflow_name(cls: type) -> str:
    """The workflow type name of a ``@workflow.defn`` class.

    Example::

        workflow_name(Pipeline)  # "Pipeline"
    """
    defn = workflow._Definition.from_class(cls)
    if defn is None or defn.name is None:
        raise UserError(f"{cls.__qualname__} is not a workflow: decorate it with @workflow.defn")
    return defn.name


def check_workflow_input(cls: type, args: Sequence[Any], source: str = "--input") -> None:
    """Raise :class:`UserError` unless ``args`` decode as the arguments of ``cls``'s run method.

    The check is the worker's own (pydantic, from JSON), so a start that passes
    it cannot leave a workflow that fails on its input. Each problem is one line
    naming the field and the fix, e.g. ``--input: chunks: must be greater than
    or equal to 1 (got 0)``.

    Example::

        check_workflow_input(find_workflow("examples/pipeline.py:Pipeline"), [{"chunks": 0}])
    """
    name = workflow_name(cls)
    defn = workflow._Definition.from_class(cls)
    assert defn is not None
    params = list(inspect.signature(defn.run_fn).parameters.values())[1:]  # after self
    required = [p for p in params if p.default is inspect.Parameter.empty]
    types = defn.arg_types or [Any] * len(params)
    if len(args) > len(params):
        raise UserError(f"{source}: workflow {name} takes no input; leave {source} out")
    if len(args) < len(required):
        wanted = getattr(types[len(args)], "__name__", "its argument")
        raise UserError(f"workflow {name} needs an input (a {wanted}): give it as {source} JSON")
    for arg, arg_type in zip(args, types, strict=False):
        try:
            pydantic.TypeAdapter(arg_type).validate_json(json.dumps(arg))
        except pydantic.ValidationError as err:
            raise UserError(format_validation_error(err, source)) from err


def is_workflow(obj: object) -> bool:
    """Whether ``obj`` is a class decorated with ``@workflow.defn`` (with a name).

    Example::

        is_workflow(Pipeline)  # True
    """
    if not inspect.isclass(obj):
        return False
    defn = workflow._Definition.from_class(obj)
    return defn is not None and defn.name is not None


def import_module(ref: str | Path) -> ModuleType:
    """Import a ``.py`` file (under its stem name) or a dotted module name.

    Raises :class:`UserError` when the file does not exist, does not import,
    or its name is taken by another module.

    Example::

        module = import_module("examples/pipeline.py")
    """
    text = str(ref)
    path = Path(text)
    if text.endswith(".py") or path.exists():
        if not path.is_file() or path.suffix != ".py":
            raise UserError(f"{text}: no such Python file")
        name, folder = path.stem, str(path.parent.resolve())
        loaded = sys.modules.get(name)
        loaded_file = getattr(loaded, "__file__", None)
        if loaded is not None and (
            loaded_file is None or Path(loaded_file).resolve() != path.resolve()
        ):
            raise UserError(
                f"{text}: a module named {name!r} is already imported from"
                f" {loaded_file or 'built-ins'}; rename the file"
            )
        if folder not in sys.path:
            sys.path.insert(0, folder)
    else:
        name = text
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:
            raise UserError(f"{text}: no such file or module") from err
        raise UserError(f"{text}: cannot import: {err}") from err
    except Exception as err:  # the user's module may raise anything at import
        raise UserError(f"{text}: cannot import: {type(err).__name__}: {err}") from err


def workflows_of(module: ModuleType) -> list[type]:
    """The workflow classes defined in ``module`` (not those it imports), in order.

    Example::

        workflows_of(import_module("examples/pipeline.py"))  # [Pipeline]
    """
    return [
        obj
        for obj in vars(module).values()
        if is_workflow(obj) and obj.__module__ == module.__name__
    ]


def activities_of(module: ModuleType) -> list[Callable[..., Any]]:
    """The ``@activity.defn`` functions defined in ``module`` (e.g. canary checks).

    Example::

        activities_of(import_module("examples/canary.py"))  # [serves_expected_version]
    """
    return [
        obj
        for obj in vars(module).values()
        if callable(obj)
        and getattr(obj, "__module__", None) == module.__name__
        and activity._Definition.from_callable(obj) is not None
    ]


def load_activities(refs: Sequence[str | Path]) -> list[Callable[..., Any]]:
    """Every activity function in the files, folders or modules ``refs``.

    A workflow file may define the activities its workflows call (a canary
    check, say); the worker that runs the workflows registers them too.

    Example::

        load_activities(["examples/canary.py"])
    """
    return [fn for ref in refs for module in _modules(ref) for fn in activities_of(module)]


def _modules(ref: str | Path) -> Iterable[ModuleType]:
    path = Path(ref)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        if not files:
            raise UserError(f"{ref}: no .py files in this folder")
        return [import_module(p) for p in files]
    return [import_module(ref)]


def load_workflows(refs: Sequence[str | Path], reserved: Iterable[str] = ()) -> list[type]:
    """Every workflow class in the files, folders or modules ``refs``.

    Raises :class:`UserError` if a reference has no workflows, or two classes
    (or one and a ``reserved`` name, e.g. titus-flow's own) share a workflow name.

    Example::

        classes = load_workflows(["examples/pipeline.py"], reserved=["BatchJob"])
    """
    taken = {name: "titus-flow itself" for name in reserved}
    found: list[type] = []
    for ref in refs:
        classes = [cls for module in _modules(ref) for cls in workflows_of(module)]
        if not classes:
            raise UserError(f"{ref}: no @workflow.defn classes found")
        for cls in classes:
            name = workflow_name(cls)
            where = f"{cls.__module__}.{cls.__qualname__}"
            if name in taken and taken[name] != where:
                raise UserError(
                    f"{ref}: workflow name {name!r} of {where} is already used by {taken[name]};"
                    " give it another name with @workflow.defn(name=...)"
                )
            if name not in taken:
                taken[name] = where
                found.append(cls)
    return found


def split_ref(ref: str) -> tuple[str, str]:
    """Split ``PATH:Name`` into its module reference and workflow name.

    Example::

        split_ref("examples/pipeline.py:Pipeline")  # ("examples/pipeline.py", "Pipeline")
    """
    module, sep, name = ref.rpartition(":")
    if not sep or not module or not name:
        raise UserError(
            f"{ref!r}: name the workflow as PATH:Name, e.g. examples/pipeline.py:Pipeline"
        )
    return module, name


def find_workflow(ref: str) -> type:
    """The workflow class ``PATH:Name`` names (class name or workflow type name).

    Raises :class:`UserError` when there is no such class or it is not a workflow.

    Example::

        cls = find_workflow("examples/pipeline.py:Pipeline")
    """
    module_ref, name = split_ref(ref)
    module = import_module(module_ref)
    obj = getattr(module, name, None)
    if obj is None:
        obj = next((c for c in workflows_of(module) if workflow_name(c) == name), None)
    if obj is None:
        known = ", ".join(workflow_name(c) for c in workflows_of(module)) or "none"
        raise UserError(f"{module_ref}: no workflow {name!r} (workflows there: {known})")
    if not is_workflow(obj):
        raise UserError(
            f"{module_ref}: {name} is not a workflow: decorate the class with @workflow.defn"
        )
    assert isinstance(obj, type)
    return obj
