"""Helpers of the AWS Batch and Kubernetes migration tests: validate, compare what is carried."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from titus_flow.errors import SpecError
from titus_flow.loader.validation import AnyJob, job_entries, validate_jobs
from titus_flow.migrate import import_definition
from titus_flow.migrate.exit_codes import decisions_of
from titus_flow.migrate.report import Translation
from titus_flow.spec import BatchJob


def jobs_of(translation: Translation) -> list[AnyJob]:
    """Every job of an imported document, validated as ``titus-flow validate`` does."""
    found, errors = validate_jobs(job_entries([translation.document], "test"), "test")
    if errors:
        raise SpecError(errors)
    return [item.job for item in found]


def paths(translation: Translation) -> dict[str, str]:
    """The dropped fields of a translation: path -> reason."""
    return {item.path: item.reason for item in translation.dropped}


def mounted(job: AnyJob) -> list[tuple[str, bool, str, Any]]:
    """A job's mounts by what they mount (volume names may differ across a round trip)."""
    volumes = {volume.name: volume for volume in job.volumes}
    result = []
    for mount in job.container.mounts:
        volume = volumes[mount.volume]
        result.append((mount.path, mount.read_only, volume.kind, volume.source.model_dump()))
    return sorted(result)


def retry_rule(job: AnyJob) -> Any:
    """What a batch job decides for each failure code, and its attempts."""
    assert isinstance(job, BatchJob)
    retry = job.retry
    decisions = decisions_of(retry.retry_on_exit_codes, retry.never_retry_on_exit_codes)
    return retry.attempts, decisions


def assert_carried(
    before: AnyJob, after: AnyJob, fields: dict[str, Callable[[AnyJob], Any]]
) -> None:
    """Field by field: each carried field of ``before`` equals that of ``after``."""
    for name, read in fields.items():
        assert read(before) == read(after), name


def expectation(fixture: Path) -> dict[str, Any]:
    """The sidecar ``<name>.expect.yaml`` of a corpus fixture (tests/fixtures/import/README.md)."""
    loaded: dict[str, Any] = yaml.safe_load(fixture.with_suffix(".expect.yaml").read_text())
    return loaded


def assert_as_expected(fixture: Path, source: str) -> None:
    """The import of ``fixture`` gives the sidecar's job mapping and dropped paths."""
    expected = expectation(fixture)
    imported = import_definition(fixture.read_bytes(), source)
    assert imported.translation.document == expected["job"]
    assert sorted(item.path for item in imported.dropped) == sorted(expected["dropped"])
    assert all(item.reason for item in imported.dropped)
