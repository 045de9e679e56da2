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

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

from titus_flow.errors import SpecError
from titus_flow.loader.documents import read_documents
from titus_flow.loader.graph import dependency_errors
from titus_flow.loader.python_files import load_python
from titus_flow.loader.validation import (
    GROUPS_KEY,
    AnyJob,
    Found,
    group_entries,
    groups_of_module,
    job_entries,
    jobs_of_module,
    validate_group,
    validate_jobs,
)
from titus_flow.spec import CapacityGroup

SUPPORTED_SUFFIXES = (".py", ".yaml", ".yml", ".json")

__all__ = [
    "SUPPORTED_SUFFIXES",
    "AnyJob",
    "holds_capacity_groups",
    "is_plain_script",
    "load_capacity_groups",
    "load_jobs",
    "load_many",
    "select_job",
]


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
    found: list[Found] = []
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
        found, errors = load_python(path, groups_of_module)
    else:
        documents = read_documents(path, json_syntax=suffix == ".json")
        errors = []
        for raw, where in group_entries(documents, str(path)):
            try:
                found.append((validate_group(raw, where, str(path)), where))
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


def is_plain_script(path: Path) -> bool:
    """Whether ``path`` is a Python file that imports cleanly and defines no jobs.

    A helper module or a tool (a load generator) beside job files: a folder
    given to ``validate`` may hold such files. Capacity groups and workflows
    are asked about separately.
    """
    path = Path(path)
    if path.suffix.lower() != ".py" or not path.is_file():
        return False
    found, errors = load_python(path, jobs_of_module)
    return not found and not errors


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
            return bool(load_python(path, groups_of_module)[0])
        documents = read_documents(path, json_syntax=suffix == ".json")
    except SpecError:
        return False
    return any(isinstance(d, dict) and GROUPS_KEY in d for d in documents)


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


def _load_file(path: Path) -> list[Found]:
    suffix = _check_file(path)
    if suffix == ".py":
        found, errors = load_python(path, jobs_of_module)
    else:
        found, errors = validate_jobs(
            job_entries(read_documents(path, json_syntax=suffix == ".json"), str(path)),
            str(path),
        )
    if not found and not errors:
        how = _HOW_TO_DEFINE_IN_PYTHON if suffix == ".py" else _HOW_TO_DEFINE_IN_DATA
        errors.append(f"{path}: no jobs found; {how}")
    errors += _duplicate_names(found)
    errors += dependency_errors([item.job for item in found], str(path))
    if errors:
        raise SpecError(errors)
    return found


_HOW_TO_DEFINE_IN_PYTHON = (
    "define BatchJob/ServiceJob objects at module level, or a jobs() function returning them"
)
_HOW_TO_DEFINE_IN_DATA = "write a job mapping, a list of them, or jobs: [...]"


def _duplicate_names(found: list[Found]) -> list[str]:
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
