"""Translate job definitions of other systems to titus-flow jobs, and back.

Pure: no I/O. A source (``titus``, ``aws-batch``, ``k8s``) is a module of this
package with two functions:

``import_document(document: dict) -> Translation``
    The other system's parsed definition as a titus-flow job mapping, with
    every field it could not carry (and why).
``export_job(job: BatchJob | ServiceJob) -> Translation``
    A titus-flow job as the other system's definition, with every titus-flow
    field that system cannot express.

Input is parsed here (JSON or YAML, at most :data:`MAX_INPUT_BYTES`, no YAML
aliases), and an imported mapping is validated by the loader ``titus-flow
validate`` uses, so a translation that yields an invalid job is refused.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import yaml

from titus_flow.errors import SpecError
from titus_flow.loader.validation import AnyJob, job_entries, validate_jobs
from titus_flow.migrate.report import Dropped, MigrateInputError, Translation

MAX_INPUT_BYTES = 1 << 20
"""Largest definition accepted (1 MiB); a larger one is refused before it is parsed."""


@dataclass(frozen=True)
class Source:
    """A system jobs migrate from and to; ``module`` implements it."""

    name: str
    title: str
    module: str
    detect: Callable[[Mapping[str, Any]], bool]

    def load(self) -> ModuleType:
        """The module that translates this source."""
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as err:
            if err.name != self.module:
                raise
            raise MigrateInputError("", f"{self.title} is not supported by this build") from err


def _is_titus(doc: Mapping[str, Any]) -> bool:
    if isinstance(doc.get("jobDescriptor"), Mapping):  # a Titus Job, as its API returns it
        return True
    return isinstance(doc.get("container"), Mapping) and (
        "applicationName" in doc or "jobGroupInfo" in doc or "batch" in doc or "service" in doc
    )


def _is_aws_batch(doc: Mapping[str, Any]) -> bool:
    # A bare RegisterJobDefinition, or aws_batch's {jobDefinition(s), submitJob(s)} pair.
    keys = ("jobDefinitionName", "containerProperties", "nodeProperties", "jobDefinition")
    return any(key in doc for key in (*keys, "jobDefinitions", "submitJob", "submitJobs"))


def _is_k8s(doc: Mapping[str, Any]) -> bool:
    return "apiVersion" in doc and "kind" in doc


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "titus", "Titus (v3 JobDescriptor, proto3 JSON)", "titus_flow.migrate.titus", _is_titus
        ),
        Source(
            "aws-batch", "AWS Batch job definition", "titus_flow.migrate.aws_batch", _is_aws_batch
        ),
        Source("k8s", "Kubernetes Job / Deployment", "titus_flow.migrate.k8s", _is_k8s),
    )
}
"""Every source by the name ``--from`` / ``--to`` take."""


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a few aliases can expand to gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise MigrateInputError(
                f"line {mark.line + 1}", "YAML aliases (*name) are not accepted in an import"
            )
        return super().compose_node(parent, index)


def parse_document(data: bytes) -> dict[str, Any]:
    """``data`` (JSON or YAML text) parsed into one mapping, within the size limit."""
    if len(data) > MAX_INPUT_BYTES:
        raise MigrateInputError(
            "", f"the document is over {MAX_INPUT_BYTES} bytes: no job definition is that large"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MigrateInputError("", f"not UTF-8 text (byte {err.start})") from err
    try:
        if text.lstrip().startswith(("{", "[")):
            parsed = json.loads(text)
        else:
            parsed = yaml.load(text, Loader=_NoAliasLoader)
    except json.JSONDecodeError as err:
        raise MigrateInputError(f"line {err.lineno}", f"invalid JSON: {err.msg}") from err
    except yaml.YAMLError as err:
        raise MigrateInputError("", f"invalid YAML: {str(err).splitlines()[0]}") from err
    except RecursionError as err:
        raise MigrateInputError("", "nested too deeply") from err
    if not isinstance(parsed, dict):
        raise MigrateInputError("", "expected one definition (a mapping) at the top level")
    return cast(dict[str, Any], parsed)


def detect_source(document: Mapping[str, Any]) -> Source:
    """The source whose shape ``document`` has; an error naming ``--from`` if unclear."""
    matches = [source for source in SOURCES.values() if source.detect(document)]
    if len(matches) != 1:
        names = "|".join(SOURCES)
        raise MigrateInputError("", f"cannot tell which system this is from: pass --from {names}")
    return matches[0]


def source_named(name: str) -> Source:
    """The source called ``name`` (a ``--from`` / ``--to`` value)."""
    if name not in SOURCES:
        raise MigrateInputError("", f"unknown source: use one of {', '.join(SOURCES)}")
    return SOURCES[name]


@dataclass(frozen=True)
class Imported:
    """An imported definition: its source, the job mapping and report, the validated job."""

    source: Source
    translation: Translation
    job: AnyJob

    @property
    def dropped(self) -> list[Dropped]:
        """Every input field not carried, with its reason."""
        return self.translation.dropped


def import_definition(data: bytes, source: str | None = None, label: str = "import") -> Imported:
    """Translate ``data`` (from ``source``, detected when None) into a validated job.

    Raises :class:`MigrateInputError` for input that cannot be translated and
    :class:`~titus_flow.errors.SpecError` (fields named, prefixed by ``label``)
    when the translation is not a valid job.
    """
    document = parse_document(data)
    chosen = source_named(source) if source else detect_source(document)
    translate: Callable[[dict[str, Any]], Translation] = chosen.load().import_document
    translation = translate(document)
    found, errors = validate_jobs(job_entries([translation.document], label), label)
    if errors:
        raise SpecError(errors)
    return Imported(chosen, translation, found[0].job)


def export_job(job: AnyJob, target: str) -> Translation:
    """``job`` as a definition of ``target``, with what that system cannot express."""
    convert: Callable[[AnyJob], Translation] = source_named(target).load().export_job
    return convert(job)


__all__ = [
    "MAX_INPUT_BYTES",
    "SOURCES",
    "Dropped",
    "Imported",
    "MigrateInputError",
    "Source",
    "Translation",
    "detect_source",
    "export_job",
    "import_definition",
    "parse_document",
    "source_named",
]
