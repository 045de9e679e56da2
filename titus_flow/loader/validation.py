"""A file's parsed documents or Python objects as validated jobs and capacity groups.

Accepted shapes of a YAML / JSON file: a job mapping, a list of them or
``{"jobs": [...]}`` (a capacity group file: ``{"capacity_groups": [...]}``), with
``x-`` keys beside the list ignored. A job mapping without ``kind`` is a
service job if it has a field only service jobs have, otherwise a batch job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic

from titus_flow.errors import SpecError, format_validation_error
from titus_flow.loader.documents import location
from titus_flow.loader.python_files import collect
from titus_flow.spec import BatchJob, CapacityGroup, ServiceJob

AnyJob = BatchJob | ServiceJob
"""A job of either kind, as the loader returns them."""

GROUPS_KEY = "capacity_groups"
"""The top-level key of a capacity group file; the name of its Python factory."""

_JOB_TYPES: tuple[type[AnyJob], ...] = (BatchJob, ServiceJob)
_KINDS: dict[str, type[AnyJob]] = {"batch": BatchJob, "service": ServiceJob}
# Derived from the models, so a new field of either kind is classified automatically.
_SERVICE_ONLY = sorted(set(ServiceJob.model_fields) - set(BatchJob.model_fields))
_BATCH_ONLY = sorted(set(BatchJob.model_fields) - set(ServiceJob.model_fields))


@dataclass(frozen=True)
class Found:
    """A loaded job and where it was defined, for messages that point at it."""

    job: AnyJob
    where: str  # "jobs.yaml:12", "jobs.py (variable hello)"


# -- YAML and JSON ------------------------------------------------------------------------


def job_entries(documents: list[Any], source: str) -> list[tuple[Any, str]]:
    """Flatten the accepted top-level shapes into ``(raw job, where)`` pairs."""
    entries: list[tuple[Any, str]] = []
    for document in documents:
        if document is None:  # an empty YAML document, e.g. after a trailing ---
            continue
        items: Any = document
        if isinstance(document, dict) and "jobs" in document:
            items = _listed(document, "jobs", "job", source)
        elif isinstance(document, dict) and GROUPS_KEY in document:
            raise SpecError(
                f"{location(document, source)}: holds capacity groups, not jobs;"
                f" apply them with `titus-flow apply {source}`"
            )
        elif isinstance(document, dict):
            items = [document]
        elif not isinstance(document, list):
            raise SpecError(
                f"{source}: expected a job mapping, a list of jobs or jobs: [...],"
                f" got {type(document).__name__} {document!r:.40}"
            )
        entries += [(item, location(item, source, index)) for index, item in enumerate(items)]
    return entries


def _listed(document: dict[Any, Any], key: str, noun: str, source: str) -> list[Any]:
    """The list under ``key`` of a top-level mapping; other keys must start with ``x-``."""
    extra = sorted(k for k in map(str, document) if k != key and not k.startswith("x-"))
    if extra:
        raise SpecError(
            f"{location(document, source)}: unexpected top-level key(s) {', '.join(extra)}"
            f" next to {key!r}; put every {noun} in the {key} list (or name the key x-...)"
        )
    items = document[key]
    if not isinstance(items, list):
        raise SpecError(f"{location(document, source)}: {key!r} must be a list of {noun}s")
    return items


def group_entries(documents: list[Any], source: str) -> list[tuple[Any, str]]:
    """The raw capacity group mappings under each document's ``capacity_groups``."""
    entries: list[tuple[Any, str]] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict) or GROUPS_KEY not in document:
            hint = (
                "jobs run with `titus-flow run`"
                if isinstance(document, dict | list)
                else "it is not a mapping"
            )
            raise SpecError(
                f"{location(document, source)}: expected a top-level capacity_groups: [...] list"
                f" ({hint})"
            )
        items = _listed(document, GROUPS_KEY, "capacity group", source)
        entries += [
            (item, location(item, source, index, GROUPS_KEY)) for index, item in enumerate(items)
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


def validate_group(raw: Any, where: str, source: str) -> CapacityGroup:
    """One raw capacity group mapping as a validated group."""
    source, prefix = _named_mapping(
        raw, where, source, "capacity group mapping (name, tier, guarantee, limit)"
    )
    try:
        return CapacityGroup.model_validate(dict(raw))
    except pydantic.ValidationError as err:
        raise SpecError(format_validation_error(err, source, prefix)) from err


def validate_jobs(entries: list[tuple[Any, str]], source: str) -> tuple[list[Found], list[str]]:
    """The raw job mappings as validated jobs, and the problems of those that are not."""
    found: list[Found] = []
    errors: list[str] = []
    for raw, where in entries:
        try:
            found.append(Found(_validate(raw, where, source), where))
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


def jobs_of_module(module: ModuleType, path: Path) -> tuple[list[Found], list[str]]:
    """The jobs a Python job file defines; defining capacity groups too is an error."""
    found, errors = collect(module, path, "jobs", _JOB_TYPES, "job")
    if collect(module, path, GROUPS_KEY, (CapacityGroup,), "capacity group")[0]:
        errors.append(
            f"{path}: defines capacity groups; keep them in a file of their own"
            " and apply it with `titus-flow apply`"
            if found
            else f"{path}: holds capacity groups, not jobs;"
            f" apply them with `titus-flow apply {path}`"
        )
    return [Found(job, where) for job, where in found], errors


def groups_of_module(
    module: ModuleType, path: Path
) -> tuple[list[tuple[CapacityGroup, str]], list[str]]:
    """The capacity groups a Python file defines; defining jobs too is an error."""
    found, errors = collect(module, path, GROUPS_KEY, (CapacityGroup,), "capacity group")
    if found and collect(module, path, "jobs", _JOB_TYPES, "job")[0]:
        errors.append(
            f"{path}: defines jobs; keep them in a file of their own and run it with"
            " `titus-flow run`"
        )
    return found, errors
