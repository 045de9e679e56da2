"""Volumes, mounts, security and array dependencies of issue #16: spec and loader checks.

Field-by-field cases live in test_spec_fields.py; these are the checks across
fields (mounts against volumes, n_to_n pairs across jobs) and the round trips.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from titus_flow.errors import SpecError, format_validation_error
from titus_flow.loader import load_jobs
from titus_flow.spec import (
    BatchJob,
    Container,
    Dependency,
    Mount,
    ScratchVolume,
    SecurityProfile,
    ServiceJob,
    TmpfsVolume,
    Volume,
)
from titus_flow.spec.jobs import job_file_json_schema

SPEC_ADDITIONS = """\
name: train
kind: batch
instances: 4
security:
  iam_role: arn:aws:iam::123456789012:role/app
  security_groups: [sg-0123abcd]
volumes:
  - name: data
    host_path: {path: /srv/data}
  - name: scratch
    scratch: {}
  - name: fast
    tmpfs: {size: 64Mi}
  - name: models
    efs: {file_system_id: fs-12345678, path: /models}
container:
  image: busybox:latest
  shm_size: 128Mi
  mounts:
    - {volume: data, path: /data, read_only: true}
    - {volume: scratch, path: /scratch}
depends_on:
  - prepare
  - {job: split, mode: n_to_n}
task_order: sequential
"""


def test_the_agreed_example_loads_and_round_trips() -> None:
    job = BatchJob.model_validate(yaml.safe_load(SPEC_ADDITIONS))
    assert job.security.iam_role == "arn:aws:iam::123456789012:role/app"
    assert [volume.kind for volume in job.volumes] == ["host_path", "scratch", "tmpfs", "efs"]
    assert job.volumes[2].tmpfs == TmpfsVolume(size=64)
    assert job.container.shm_size == 128
    assert job.container.mounts[0] == Mount(volume="data", path="/data", read_only=True)
    assert job.depends_on == [Dependency(job="prepare"), Dependency(job="split", mode="n_to_n")]
    assert job.dependency_names() == ["prepare", "split"]
    assert job.task_order == "sequential"
    dumped = job.model_dump(mode="json")
    # A bare name stays a bare name: recorded jobs serialize as before.
    assert dumped["depends_on"] == ["prepare", {"job": "split", "mode": "n_to_n"}]
    assert BatchJob.model_validate(dumped) == job
    assert BatchJob.model_validate_json(job.model_dump_json()) == job


def test_defaults_keep_todays_jobs_unchanged() -> None:
    job = BatchJob(name="a", container=Container(image="busybox"), depends_on=["b"])  # type: ignore[list-item]
    assert job.volumes == [] and job.container.mounts == [] and job.container.shm_size is None
    assert job.security == SecurityProfile()
    assert job.task_order == "parallel"
    assert job.model_dump(mode="json")["depends_on"] == ["b"]


def test_json_schema_accepts_the_new_fields() -> None:
    schema = job_file_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(SPEC_ADDITIONS), schema)
    jsonschema.validate({"name": "a", "container": {"image": "b"}, "depends_on": ["x"]}, schema)
    bad = {"name": "a", "container": {"image": "b"}, "depends_on": [{"job": "x", "mode": "some"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    json.dumps(BatchJob.model_json_schema(mode="serialization"))


def test_a_mount_of_an_unknown_volume_names_the_mount() -> None:
    data = {
        "name": "a",
        "container": {"image": "b", "mounts": [{"volume": "data", "path": "/d"}]},
        "volumes": [{"name": "scratch", "scratch": {}}],
    }
    with pytest.raises(ValidationError) as info:
        BatchJob.model_validate(data)
    assert format_validation_error(info.value, "jobs.yaml", "a") == [
        "jobs.yaml: a: container.mounts[0].volume: no volume named 'data' in volumes"
        " (scratch); declare it or fix the name"
    ]
    with pytest.raises(ValidationError, match="none declared"):
        ServiceJob.model_validate({**data, "volumes": []})


def test_python_api() -> None:
    volume = Volume(name="s", scratch=ScratchVolume())
    assert volume.source == ScratchVolume() and volume.kind == "scratch"
    job = BatchJob(
        name="a",
        container=Container(image="b", mounts=[Mount(volume="s", path="/s")]),
        volumes=[volume],
        depends_on=[Dependency(job="b", mode="n_to_n")],
    )
    assert job.dependency_names() == ["b"]


def write_jobs(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_n_to_n_needs_equal_instances(tmp_path: Path) -> None:
    path = write_jobs(
        tmp_path,
        """\
        - {name: split, instances: 3, container: {image: busybox}}
        - name: work
          instances: 4
          container: {image: busybox}
          depends_on: [{job: split, mode: n_to_n}]
        """,
    )
    with pytest.raises(SpecError) as info:
        load_jobs(path)
    assert info.value.messages == [
        f"{path}: work.depends_on[0]: mode n_to_n pairs task i with task i of 'split', which"
        " has 3 instances, not 4; give both jobs the same instances or use mode all"
    ]


def test_n_to_n_and_bare_names_load(tmp_path: Path) -> None:
    path = write_jobs(
        tmp_path,
        """\
        - {name: prepare, container: {image: busybox}}
        - {name: split, instances: 3, container: {image: busybox}}
        - name: work
          instances: 3
          task_order: sequential
          container: {image: busybox}
          depends_on: [prepare, {job: split, mode: n_to_n}]
        """,
    )
    work = load_jobs(path)[2]
    assert isinstance(work, BatchJob)
    assert work.depends_on[1] == Dependency(job="split", mode="n_to_n")


def test_unknown_and_service_targets_in_the_mapping_form(tmp_path: Path) -> None:
    path = write_jobs(
        tmp_path,
        """\
        - {name: web, kind: service, container: {image: busybox}}
        - name: work
          container: {image: busybox}
          depends_on: [{job: web, mode: n_to_n}, {job: nope}]
        """,
    )
    with pytest.raises(SpecError) as info:
        load_jobs(path)
    assert info.value.messages == [
        f"{path}: work.depends_on[0]: 'web' is a service job, which never completes;"
        " depend on batch jobs only",
        f"{path}: work.depends_on[1]: no job named 'nope' in this file (jobs: web, work)",
    ]
