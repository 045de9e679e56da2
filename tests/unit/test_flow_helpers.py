"""Workflow-as-code without a server: helpers, finding user workflows, CLI input checks."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_fork import run_cli

from titus_flow import BatchJob, Container, flow
from titus_flow.errors import SpecError, UserError
from titus_flow.flow import JobFailedError, failure_reasons, outputs, safe_id
from titus_flow.lifecycle import FinishReason, JobState, TaskState
from titus_flow.loader import load_jobs
from titus_flow.userflows import find_workflow, load_workflows, split_ref, workflow_name
from titus_flow.views import JobView, TaskView

EXAMPLES = Path(__file__).parents[2] / "examples"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, pointed at a port nothing listens on: these checks must fail before connecting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITUS_FLOW_")}
    env["TITUS_FLOW_ADDRESS"] = "127.0.0.1:9"
    return run_cli(args, timeout=60, env=env)


def view(*tasks: tuple[FinishReason, object]) -> JobView:
    return JobView(
        id="j-1",
        name="j",
        type="batch",
        state=JobState.FAILED,
        tasks=[
            TaskView(
                id=f"j-1-{i}",
                index=i,
                state=TaskState.FINISHED,
                reason=reason,
                message="" if reason is FinishReason.NORMAL else "exited with code 3",
                output=output,
            )
            for i, (reason, output) in enumerate(tasks)
        ],
    )


# --- flow helpers -----------------------------------------------------------------------


def test_outputs_by_task_index_and_failure_reasons() -> None:
    v = view((FinishReason.NORMAL, ["a", "b"]), (FinishReason.FAILED, None))
    assert outputs(v) == [["a", "b"], None]
    assert failure_reasons(v) == {1: "failed: exited with code 3"}


def test_job_failed_error_names_job_and_task_reasons_and_is_not_retried() -> None:
    err = JobFailedError(view((FinishReason.NORMAL, None), (FinishReason.FAILED, None)))
    assert err.message == "job j-1 (j) Failed: task 1: failed: exited with code 3"
    assert err.non_retryable and err.type == "JobFailed"
    assert err.reasons == {1: "failed: exited with code 3"}
    many = JobFailedError(err.view, views=[err.view, err.view], failed_count=2)
    assert many.message.startswith("2 of 2 jobs failed; first: job j-1")


def test_safe_id_keeps_container_name_characters_only() -> None:
    assert safe_id("nightly-2025-01-01T02:00:00Z") == "nightly-2025-01-01T02-00-00Z"
    assert safe_id("a_b.c-D9") == "a_b.c-D9"


# --- depends_on cycles ------------------------------------------------------------------

CYCLE = """
jobs:
  - {name: a, depends_on: [c], container: {image: busybox}}
  - {name: b, depends_on: [a], container: {image: busybox}}
  - {name: c, depends_on: [b], container: {image: busybox}}
  - {name: d, container: {image: busybox}}
"""


def test_dependency_cycle_is_rejected_naming_the_cycle(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text(CYCLE)
    with pytest.raises(SpecError) as caught:
        load_jobs(path)
    assert caught.value.messages == [f"{path}: dependency cycle: a -> c -> b -> a"]
    result = cli("run", str(path))  # nothing is submitted: exit 2 before connecting
    assert result.returncode == 2, result
    assert "dependency cycle: a -> c -> b -> a" in result.stderr


def test_examples_validate_as_jobs_except_the_pipeline_workflow() -> None:
    assert [j.name for j in load_jobs(EXAMPLES / "dag.yaml")] == [
        "extract",
        "transform",
        "report",
        "archive",
    ]
    assert [j.name for j in load_jobs(EXAMPLES / "nightly.py")] == ["nightly-report"]
    with pytest.raises(SpecError, match="no jobs found"):
        load_jobs(EXAMPLES / "pipeline.py")  # a workflow module: the demo skips it


# --- finding user workflows -------------------------------------------------------------

FLOWS = """
from temporalio import workflow


@workflow.defn
class First:
    @workflow.run
    async def run(self) -> None: ...


@workflow.defn(name="Renamed")
class Second:
    @workflow.run
    async def run(self) -> None: ...


class Plain:
    pass
"""


@pytest.fixture
def flows_file(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    # A unique module name per test: modules stay imported (the sandbox needs them).
    path = tmp_path / f"flows_{request.node.name.replace('[', '_').rstrip(']')}.py"
    path.write_text(FLOWS)
    return path


def test_find_workflow_by_class_or_workflow_name(flows_file: Path) -> None:
    assert workflow_name(find_workflow(f"{flows_file}:First")) == "First"
    assert find_workflow(f"{flows_file}:Renamed").__name__ == "Second"
    assert workflow_name(find_workflow(f"{flows_file}:Second")) == "Renamed"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Nope", "no workflow 'Nope' (workflows there: First, Renamed)"),
        ("Plain", "Plain is not a workflow: decorate the class with @workflow.defn"),
    ],
)
def test_find_workflow_explains_what_is_wrong(flows_file: Path, name: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        find_workflow(f"{flows_file}:{name}")


def test_bad_references(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="PATH:Name"):
        split_ref("examples/pipeline.py")
    with pytest.raises(UserError, match="no such Python file"):
        find_workflow(f"{tmp_path / 'missing.py'}:X")
    with pytest.raises(UserError, match="no such file or module"):
        find_workflow("no_such_module_xyz:X")
    clash = tmp_path / "json.py"  # would shadow the standard library's json
    clash.write_text("")
    with pytest.raises(UserError, match="already imported"):
        find_workflow(f"{clash}:X")


def test_load_workflows_refuses_name_clashes_with_titus_flow(flows_file: Path) -> None:
    assert [workflow_name(c) for c in load_workflows([flows_file])] == ["First", "Renamed"]
    with pytest.raises(UserError, match=r"'First' .* is already used by titus-flow itself"):
        load_workflows([flows_file], reserved=["First"])


def test_load_workflows_of_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "flows_folder_pkg"
    folder.mkdir()
    (folder / "flows_folder_a.py").write_text(FLOWS)
    (folder / "_helpers.py").write_text("raise RuntimeError('never imported')")
    assert len(load_workflows([folder])) == 2


# --- CLI input checks (exit 2 before anything is sent) ----------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--workflows", "missing_flows.py"], "no such Python file"),
        (["worker", "--workflows", str(EXAMPLES / "nightly.py")], "no @workflow.defn classes"),
        (["start", f"{EXAMPLES / 'pipeline.py'}:Nope"], "no workflow 'Nope'"),
        (["start", f"{EXAMPLES / 'pipeline.py'}:Pipeline", "--input", "{bad"], "not valid JSON"),
        (
            ["start", f"{EXAMPLES / 'pipeline.py'}:Pipeline", "--input", '{"chunks": 0}', "--wait"],
            "--input: chunks: must be greater than or equal to 1 (got 0)",
        ),
        (
            ["start", f"{EXAMPLES / 'pipeline.py'}:Pipeline", "--input", '{"chunks": "many"}'],
            "--input: chunks: must be a valid integer",
        ),
        (
            ["start", f"{EXAMPLES / 'pipeline.py'}:Pipeline"],
            "workflow Pipeline needs an input (a PipelineInput): give it as --input JSON",
        ),
        (
            [
                *("schedule", "create", "n", "--every", "1h"),
                *(f"{EXAMPLES / 'pipeline.py'}:Pipeline", "--input", '{"max_concurrent": 0}'),
            ],
            "--input: max_concurrent: must be greater than or equal to 1 (got 0)",
        ),
        (
            ["schedule", "create", "n", str(EXAMPLES / "nightly.py")],
            "exactly one of --cron EXPR or --every DURATION",
        ),
        (
            ["schedule", "create", "n", "--every", "soon", str(EXAMPLES / "nightly.py")],
            "--every: invalid duration",
        ),
        (["replay", "missing.json", f"{EXAMPLES / 'pipeline.py'}:Pipeline"], "cannot read"),
    ],
)
def test_cli_rejects_bad_input_with_exit_2(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2, result
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_jobs_in_examples_build(tmp_path: Path) -> None:
    # The pipeline's job templates are valid specs (built in functions, not at module level).
    module = find_workflow(f"{EXAMPLES / 'pipeline.py'}:Pipeline").__module__
    pipeline = sys.modules[module]
    assert isinstance(pipeline.split_job(3), BatchJob)
    encode = pipeline.encode_job("chunk-1", 1.0)
    assert encode.name == "encode-chunk-1" and isinstance(encode.container, Container)


def test_every_public_flow_function_and_class_documents_an_example() -> None:
    missing = [
        name
        for name in flow.__all__
        if callable(getattr(flow, name))
        and "Example::" not in (inspect.getdoc(getattr(flow, name)) or "")
    ]
    assert missing == []
