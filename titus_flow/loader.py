"""Load job files (Python, YAML, JSON) into validated jobs.

Formats:

``.py``
    The file is run as a module (not as ``__main__``). If it defines a function
    ``jobs()``, its return value (a job or a list of jobs) is the file's jobs.
    Otherwise every module-level :class:`~titus_flow.spec.BatchJob` /
    :class:`~titus_flow.spec.ServiceJob` object, and every module-level list or
    tuple of them, is a job, in definition order, each object once. Names
    starting with ``_`` are skipped: use them for templates. The file's directory
    is importable while it loads, so it can import sibling modules.
``.yaml`` / ``.yml`` / ``.json``
    A job mapping, a list of job mappings, ``{"jobs": [...]}``, or (YAML only)
    several ``---`` documents, each of those shapes. Next to ``jobs``, top-level
    keys starting with ``x-`` are ignored (as in Docker Compose), a place for YAML
    anchors. Duplicate keys in a mapping are errors, not silently overwritten.

A job mapping without ``kind`` is a service job if it has a field only service
jobs have (``capacity``, ``health_check``, ``update``, ``disruption_budget``),
otherwise a batch job.

Every problem is a :class:`~titus_flow.errors.SpecError` whose messages are single
lines naming the file (and line where known) and the field, never a traceback.
Job names must be unique (across files too, for :func:`load_many`), and each
``depends_on`` must name a batch job of the same file, without cycles.

Capacity groups (for ``titus-flow apply``) live in files of their own, read by
:func:`load_capacity_groups`: in YAML / JSON a top-level ``capacity_groups:``
list (``x-`` keys beside it are ignored); in Python, module-level
:class:`~titus_flow.spec.CapacityGroup` objects (or lists of them) or a
``capacity_groups()`` function returning them.
"""

from __future__ import annotations

import bisect
import difflib
import importlib.machinery
import importlib.util
import itertools
import json
import json.decoder
import json.scanner
import sys
import traceback
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pydantic
import yaml

from titus_flow.errors import SpecError, format_validation_error
from titus_flow.spec import BatchJob, CapacityGroup, ServiceJob

AnyJob = BatchJob | ServiceJob
"""A job of either kind, as the loader returns them."""

SUPPORTED_SUFFIXES = (".py", ".yaml", ".yml", ".json")

_JOB_TYPES: tuple[type[AnyJob], ...] = (BatchJob, ServiceJob)
_KINDS: dict[str, type[AnyJob]] = {"batch": BatchJob, "service": ServiceJob}
# Derived from the models, so a new field of either kind is classified automatically.
_SERVICE_ONLY = sorted(set(ServiceJob.model_fields) - set(BatchJob.model_fields))
_BATCH_ONLY = sorted(set(BatchJob.model_fields) - set(ServiceJob.model_fields))
_GROUPS_KEY = "capacity_groups"  # top-level key of a capacity group file; its .py factory

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Found:
    """A loaded job and where it was defined, for messages that point at it."""

    job: AnyJob
    where: str  # "jobs.yaml:12", "jobs.py (variable hello)"


# -- public API ---------------------------------------------------------------------------


def load_jobs(path: Path) -> list[AnyJob]:
    """The validated jobs in the file at ``path``.

    Raises :class:`SpecError` with every problem found in the file.
    """
    return [found.job for found in _load_file(Path(path))]


def load_many(paths: Iterable[Path]) -> list[AnyJob]:
    """The jobs of several files, in order; one :class:`SpecError` lists every problem.

    Each file is checked on its own (so one bad file does not hide another's
    errors), then job names must be unique across the files. A file given twice
    is read once.
    """
    errors: list[str] = []
    found: list[_Found] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            found += _load_file(path)
        except SpecError as err:
            errors += err.messages
    errors += _duplicate_names(found)
    if errors:
        raise SpecError(errors)
    return [item.job for item in found]


def select_job(jobs: Sequence[AnyJob], name: str | None) -> list[AnyJob]:
    """The job named ``name`` (for ``--job NAME``) as a one-item list; all jobs if None.

    Raises :class:`SpecError` listing the available names if there is no such job.
    Dependencies of the selected job are not added: callers decide whether to run them.
    """
    if name is None:
        return list(jobs)
    chosen = [job for job in jobs if job.name == name]
    if not chosen:
        names = [job.name for job in jobs]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"no job named {name!r}{hint} (jobs: {', '.join(names) or 'none'})")
    return chosen


def load_capacity_groups(path: Path) -> list[CapacityGroup]:
    """The validated capacity groups in the file at ``path``, in file order.

    Raises :class:`SpecError` with every problem found (names must be unique).
    """
    path = Path(path)
    suffix = _check_file(path)
    found: list[tuple[CapacityGroup, str]] = []
    if suffix == ".py":
        found, errors = _load_python(path, _groups_of_module)
    else:
        documents = _read_documents(path, json_syntax=suffix == ".json")
        errors = []
        for raw, where in _group_entries(documents, str(path)):
            try:
                found.append((_validate_group(raw, where, str(path)), where))
            except SpecError as err:
                errors += err.messages
    if not found and not errors:
        how = (
            "define CapacityGroup objects at module level, or a capacity_groups() function"
            if suffix == ".py"
            else "write capacity_groups: [{name: ..., tier: ...}, ...]"
        )
        errors.append(f"{path}: no capacity groups found; {how}")
    errors += _duplicates([(group.name, where) for group, where in found], "capacity group")
    if errors:
        raise SpecError(errors)
    return [group for group, _ in found]


def holds_capacity_groups(path: Path) -> bool:
    """Whether ``path`` is a capacity group file rather than a job file.

    A YAML / JSON file with a top-level ``capacity_groups`` key, or a Python file
    that defines capacity groups. Unreadable files are not: the job loader
    reports their problems.
    """
    path = Path(path)
    try:
        suffix = _check_file(path)
        if suffix == ".py":
            return bool(_load_python(path, _groups_of_module)[0])
        documents = _read_documents(path, json_syntax=suffix == ".json")
    except SpecError:
        return False
    return any(isinstance(d, dict) and _GROUPS_KEY in d for d in documents)


# -- one file -----------------------------------------------------------------------------


def _check_file(path: Path) -> str:
    """The lower-case suffix of ``path``, once it is known to be a readable kind of file."""
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory; give a job file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SpecError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}:"
            f" use {', '.join(SUPPORTED_SUFFIXES[:-1])} or {SUPPORTED_SUFFIXES[-1]}"
        )
    return suffix


def _load_file(path: Path) -> list[_Found]:
    suffix = _check_file(path)
    if suffix == ".py":
        found, errors = _load_python(path, _jobs_of_module)
    else:
        found, errors = _validate_all(_read_data(path, json_syntax=suffix == ".json"), str(path))
    if not found and not errors:
        how = _HOW_TO_DEFINE_IN_PYTHON if suffix == ".py" else _HOW_TO_DEFINE_IN_DATA
        errors.append(f"{path}: no jobs found; {how}")
    errors += _duplicate_names(found)
    errors += _dependency_errors([item.job for item in found], str(path))
    if errors:
        raise SpecError(errors)
    return found


_HOW_TO_DEFINE_IN_PYTHON = (
    "define BatchJob/ServiceJob objects at module level, or a jobs() function returning them"
)
_HOW_TO_DEFINE_IN_DATA = "write a job mapping, a list of them, or jobs: [...]"


def _duplicate_names(found: list[_Found]) -> list[str]:
    return _duplicates([(item.job.name, item.where) for item in found], "job")


def _duplicates(named: list[tuple[str, str]], noun: str) -> list[str]:
    """A message for each ``(name, where)`` whose name came earlier."""
    first: dict[str, str] = {}
    errors = []
    for name, where in named:
        if name in first:
            errors.append(
                f"{where}: {noun} name {name!r} is already used at {first[name]};"
                f" {noun} names must be unique"
            )
        else:
            first[name] = where
    return errors


def _dependency_errors(jobs: list[AnyJob], source: str) -> list[str]:
    """Unknown or service-job ``depends_on`` targets, and dependency cycles."""
    by_name = {job.name: job for job in jobs}
    errors = []
    graph: dict[str, list[str]] = {}
    for job in jobs:
        if not isinstance(job, BatchJob):
            continue
        graph[job.name] = []
        for index, dep in enumerate(job.depends_on):
            where = f"{source}: {job.name}.depends_on[{index}]"
            target = by_name.get(dep)
            if target is None:
                errors.append(
                    f"{where}: no job named {dep!r} in this file (jobs: {', '.join(by_name)})"
                )
            elif not isinstance(target, BatchJob):
                errors.append(
                    f"{where}: {dep!r} is a service job, which never completes;"
                    " depend on batch jobs only"
                )
            else:
                graph[job.name].append(dep)
    errors += [f"{source}: dependency cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return errors


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Cycles found by a depth-first search, each as ``[a, b, ..., a]``.

    Iterative, so a long chain of dependencies cannot hit the recursion limit.
    """
    done: set[str] = set()
    cycles = []
    for start in graph:
        if start in done:
            continue
        path = [start]
        pending = [iter(graph[start])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                done.add(path.pop())
                pending.pop()
            elif nxt in path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in done:
                path.append(nxt)
                pending.append(iter(graph[nxt]))
    return cycles


# -- YAML and JSON ------------------------------------------------------------------------


class _Mapping(dict[Any, Any]):
    """A parsed mapping that remembers the line it started on."""

    __slots__ = ("line",)

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line


class _DuplicateKeyError(Exception):
    def __init__(self, key: Any, line: int) -> None:
        self.key = key
        self.line = line


def _read_data(path: Path, json_syntax: bool) -> list[tuple[Any, str]]:
    """The raw job mappings in a YAML or JSON file, each with where it is."""
    return _job_entries(_read_documents(path, json_syntax), str(path))


def _read_documents(path: Path, json_syntax: bool) -> list[Any]:
    """The parsed documents of a YAML or JSON file (JSON: exactly one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise SpecError(f"{path}: cannot read: {err.strerror or err}") from err
    return [_parse_json(text, path)] if json_syntax else _parse_yaml(text, path)


def _parse_yaml(text: str, path: Path) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_YamlLoader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = f" ({err.context})" if err.context else ""
        raise SpecError(f"{where}: invalid YAML: {err.problem}{context}") from err
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: invalid YAML: {err}") from err


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with mapping lines recorded and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *base" then overriding a merged key is allowed
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in lines:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {lines[key]}); keep one",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _construct_located_map(loader: _YamlLoader, node: yaml.MappingNode) -> Iterable[_Mapping]:
    data = _Mapping(node.start_mark.line + 1)
    yield data  # first, so that recursive anchors can refer to it (as PyYAML does)
    data.update(loader.construct_mapping(node))


_YamlLoader.add_constructor("tag:yaml.org,2002:map", _construct_located_map)


def _parse_json(text: str, path: Path) -> Any:
    try:
        return _LineDecoder(text).decode(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from err
    except _DuplicateKeyError as err:
        raise SpecError(
            f"{path}:{err.line}: duplicate key {err.key!r} in this object; keep one"
        ) from err


class _LineDecoder(json.JSONDecoder):
    """A JSON decoder whose objects are :class:`_Mapping` with their line.

    The C scanner does not say where an object starts, so this uses the pure
    Python scanner with a ``parse_object`` that knows the offset: slower, and
    job files are small.
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        newlines = [i for i, char in enumerate(text) if char == "\n"]

        def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
            line = bisect.bisect_left(newlines, s_and_end[1]) + 1

            def build(pairs: list[tuple[str, Any]]) -> _Mapping:
                mapping = _Mapping(line)
                for key, value in pairs:
                    if key in mapping:
                        raise _DuplicateKeyError(key, line)
                    mapping[key] = value
                return mapping

            strict, scan_once, object_hook, _, *memo = args
            result: tuple[Any, int] = json.decoder.JSONObject(  # type: ignore[attr-defined]
                s_and_end, strict, scan_once, object_hook, build, *memo
            )
            return result

        self.parse_object = parse_object
        # Neither py_make_scanner nor JSONObject is in typeshed; both are stable stdlib.
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]


def _job_entries(documents: list[Any], source: str) -> list[tuple[Any, str]]:
    """Flatten the accepted top-level shapes into ``(raw job, where)`` pairs."""
    entries: list[tuple[Any, str]] = []
    for document in documents:
        if document is None:  # an empty YAML document, e.g. after a trailing ---
            continue
        items: Any = document
        if isinstance(document, dict) and "jobs" in document:
            items = _listed(document, "jobs", "job", source)
        elif isinstance(document, dict) and _GROUPS_KEY in document:
            raise SpecError(
                f"{_where(document, source)}: holds capacity groups, not jobs;"
                f" apply them with `titus-flow apply {source}`"
            )
        elif isinstance(document, dict):
            items = [document]
        elif not isinstance(document, list):
            raise SpecError(
                f"{source}: expected a job mapping, a list of jobs or jobs: [...],"
                f" got {type(document).__name__} {document!r:.40}"
            )
        entries += [(item, _where(item, source, index)) for index, item in enumerate(items)]
    return entries


def _listed(document: dict[Any, Any], key: str, noun: str, source: str) -> list[Any]:
    """The list under ``key`` of a top-level mapping; other keys must start with ``x-``."""
    extra = sorted(k for k in map(str, document) if k != key and not k.startswith("x-"))
    if extra:
        raise SpecError(
            f"{_where(document, source)}: unexpected top-level key(s) {', '.join(extra)}"
            f" next to {key!r}; put every {noun} in the {key} list (or name the key x-...)"
        )
    items = document[key]
    if not isinstance(items, list):
        raise SpecError(f"{_where(document, source)}: {key!r} must be a list of {noun}s")
    return items


def _group_entries(documents: list[Any], source: str) -> list[tuple[Any, str]]:
    """The raw capacity group mappings under each document's ``capacity_groups``."""
    entries: list[tuple[Any, str]] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict) or _GROUPS_KEY not in document:
            hint = (
                "jobs run with `titus-flow run`"
                if isinstance(document, dict | list)
                else "it is not a mapping"
            )
            raise SpecError(
                f"{_where(document, source)}: expected a top-level capacity_groups: [...] list"
                f" ({hint})"
            )
        items = _listed(document, _GROUPS_KEY, "capacity group", source)
        entries += [
            (item, _where(item, source, index, _GROUPS_KEY)) for index, item in enumerate(items)
        ]
    return entries


def _named_mapping(raw: Any, where: str, source: str, expected: str) -> tuple[str, str]:
    """Check that ``raw`` is a mapping; the (source, field prefix) its messages use.

    The name identifies the item in messages; without a usable one, the line does.
    """
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a {expected}, got {type(raw).__name__} {raw!r:.40}")
    name = raw.get("name")
    return (source, name) if isinstance(name, str) and name else (where, "")


def _validate_group(raw: Any, where: str, source: str) -> CapacityGroup:
    """One raw capacity group mapping as a validated group."""
    source, prefix = _named_mapping(
        raw, where, source, "capacity group mapping (name, tier, guarantee, limit)"
    )
    try:
        return CapacityGroup.model_validate(dict(raw))
    except pydantic.ValidationError as err:
        raise SpecError(format_validation_error(err, source, prefix)) from err


def _where(raw: Any, source: str, index: int | None = None, key: str = "jobs") -> str:
    if isinstance(raw, _Mapping):
        return f"{source}:{raw.line}"
    return source if index is None else f"{source}: {key}[{index}]"


def _validate_all(entries: list[tuple[Any, str]], source: str) -> tuple[list[_Found], list[str]]:
    found: list[_Found] = []
    errors: list[str] = []
    for raw, where in entries:
        try:
            found.append(_Found(_validate(raw, where, source), where))
        except SpecError as err:
            errors += err.messages
    return found, errors


def _validate(raw: Any, where: str, source: str) -> AnyJob:
    """One raw job mapping as a validated job; ``kind`` inferred when missing."""
    source, prefix = _named_mapping(raw, where, source, "job mapping (name, container, ...)")
    field = f"{prefix}.kind" if prefix else "kind"
    kind = raw["kind"] if "kind" in raw else _infer_kind(raw)
    if kind is None and "kind" not in raw:
        raise SpecError(
            f"{source}: {field}: missing, and the fields fit neither kind"
            f" ({', '.join(_present(raw, _BATCH_ONLY))} are batch,"
            f" {', '.join(_present(raw, _SERVICE_ONLY))} are service);"
            " set kind: batch or kind: service"
        )
    if not isinstance(kind, str) or kind not in _KINDS:
        raise SpecError(f"{source}: {field}: unknown kind {kind!r}: use 'batch' or 'service'")
    try:
        return _KINDS[kind].model_validate(dict(raw))
    except pydantic.ValidationError as err:
        raise SpecError(format_validation_error(err, source, prefix)) from err


def _present(raw: dict[Any, Any], fields: list[str]) -> list[str]:
    return [field for field in fields if field in raw]


def _infer_kind(raw: dict[Any, Any]) -> str | None:
    """``service`` if ``raw`` has service-only fields, else ``batch``; None if both kinds'."""
    if _present(raw, _SERVICE_ONLY):
        return None if _present(raw, _BATCH_ONLY) else "service"
    return "batch"


# -- Python -------------------------------------------------------------------------------

_module_numbers = itertools.count()


def _load_python(
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


def _jobs_of_module(module: ModuleType, path: Path) -> tuple[list[_Found], list[str]]:
    found, errors = _collect(module, path, "jobs", _JOB_TYPES, "job")
    if _collect(module, path, _GROUPS_KEY, (CapacityGroup,), "capacity group")[0]:
        errors.append(
            f"{path}: defines capacity groups; keep them in a file of their own"
            " and apply it with `titus-flow apply`"
            if found
            else f"{path}: holds capacity groups, not jobs;"
            f" apply them with `titus-flow apply {path}`"
        )
    return [_Found(job, where) for job, where in found], errors


def _groups_of_module(
    module: ModuleType, path: Path
) -> tuple[list[tuple[CapacityGroup, str]], list[str]]:
    found, errors = _collect(module, path, _GROUPS_KEY, (CapacityGroup,), "capacity group")
    if found and _collect(module, path, "jobs", _JOB_TYPES, "job")[0]:
        errors.append(
            f"{path}: defines jobs; keep them in a file of their own and run it with"
            " `titus-flow run`"
        )
    return found, errors


def _collect(
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
