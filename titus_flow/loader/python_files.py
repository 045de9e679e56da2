"""Python job files: run as throw-away modules, their objects of a kind collected.

A file's objects come from a factory function if it defines one (``jobs()``,
``capacity_groups()``), else from its module-level objects and lists of them, in
definition order, each object once; names starting with ``_`` are skipped. The
user's exceptions become message lines pointing at the line in their file.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pydantic

from titus_flow.errors import format_validation_error

_T = TypeVar("_T")

_module_numbers = itertools.count()


def load_python(
    path: Path,
    collect: Callable[[ModuleType, Path], tuple[list[_T], list[str]]],
) -> tuple[list[_T], list[str]]:
    """Run the file as a throw-away module and ``collect`` its jobs (or capacity groups).

    While it runs, the module is in ``sys.modules`` (dataclasses and pydantic look
    their module up there) and its directory is first on ``sys.path`` (for sibling
    imports). Afterwards both are undone, and sibling modules it imported are
    forgotten, so that another directory's ``helpers.py`` is not mistaken for this
    one's. Not thread-safe: ``sys.path`` and ``sys.modules`` are process-wide.
    """
    name = f"_titus_flow_job_file_{next(_module_numbers)}"
    # An explicit loader: spec_from_file_location guesses one from the suffix (".PY").
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None  # always made when a loader is given
    module = importlib.util.module_from_spec(spec)
    directory = path.parent.resolve()
    modules_before = set(sys.modules)
    sys.modules[name] = module
    sys.path.insert(0, str(directory))
    try:
        loader.exec_module(module)
        return collect(module, path)
    except (Exception, SystemExit) as err:  # the user's code may raise anything
        return [], _describe_exception(err, path)
    finally:
        if str(directory) in sys.path:
            sys.path.remove(str(directory))
        _forget_modules(set(sys.modules) - modules_before, name, directory)


def _forget_modules(added: set[str], job_module: str, directory: Path) -> None:
    """Drop the job module and the sibling modules (with their submodules) it imported.

    Only top-level modules found in ``directory`` itself count as siblings: a
    library imported for the first time (even from a virtualenv inside the
    directory) stays imported, since re-importing some libraries breaks them.
    """
    siblings = {job_module}
    for name in added:
        file = getattr(sys.modules.get(name), "__file__", None)
        if "." in name or not isinstance(file, str):
            continue
        found = Path(file).resolve()
        if found.parent == directory or (
            found.name == "__init__.py" and found.parent.parent == directory
        ):
            siblings.add(name)
    for name in added:
        if name.partition(".")[0] in siblings:
            sys.modules.pop(name, None)


def collect(
    module: ModuleType, path: Path, factory_name: str, kinds: tuple[type[_T], ...], noun: str
) -> tuple[list[tuple[_T, str]], list[str]]:
    """The module's objects of ``kinds``, each with where it is defined.

    From the function ``factory_name`` if the module has one; otherwise every
    module-level object of ``kinds`` and every list or tuple of them, in
    definition order, each object once.
    """
    factory = vars(module).get(factory_name)
    if callable(factory):
        return _from_factory(factory, factory_name, path, kinds, noun)
    found: list[tuple[_T, str]] = []
    seen: set[int] = set()  # the same object under two names counts once

    def add(obj: _T, where: str) -> None:
        if id(obj) not in seen:
            seen.add(id(obj))
            found.append((obj, where))

    for var, value in vars(module).items():
        if var.startswith("_"):
            continue
        if isinstance(value, kinds):
            add(value, f"{path} (variable {var})")
        elif (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(item, kinds) for item in value)
        ):
            for index, item in enumerate(value):
                add(item, f"{path} (variable {var}[{index}])")
    return found, []


def _from_factory(
    factory: Callable[[], Any], name: str, path: Path, kinds: tuple[type[_T], ...], noun: str
) -> tuple[list[tuple[_T, str]], list[str]]:
    result = factory()
    items = [result] if isinstance(result, kinds) else result
    if not isinstance(items, list | tuple):
        return [], [
            f"{path}: {name}() returned {type(result).__name__};"
            f" return a {noun} or a list of {noun}s"
        ]
    found: list[tuple[_T, str]] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, kinds):
            found.append((item, f"{path} ({name}()[{index}])"))
        else:
            errors.append(
                f"{path}: {name}()[{index}] is a {type(item).__name__}, not a {noun};"
                f" return {' or '.join(kind.__name__ for kind in kinds)} objects"
            )
    return found, errors


def _describe_exception(err: BaseException, path: Path) -> list[str]:
    """The user's exception as message lines pointing at the line in their file."""
    if isinstance(err, SyntaxError):
        where = f"{err.filename or path}:{err.lineno}" if err.lineno else str(path)
        return [f"{where}: {type(err).__name__}: {err.msg}"]
    line = None
    for frame, lineno in traceback.walk_tb(err.__traceback__):
        if Path(frame.f_code.co_filename).resolve() == path.resolve():
            line = lineno  # keep the deepest: closest to where it went wrong
    where = f"{path}:{line}" if line else str(path)
    if isinstance(err, pydantic.ValidationError):
        # A job built with bad values: show the fields, as for YAML.
        return format_validation_error(err, where, prefix=err.title)
    text = str(err).strip()
    first_line = text.splitlines()[0] if text else ""
    return [f"{where}: {type(err).__name__}" + (f": {first_line}" if first_line else "")]
