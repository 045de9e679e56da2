"""The JSON log lines of worker and agent (issue #15): context keys, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from titus_flow.logs_json import JsonFormatter, configure_logging, log_context


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("titus_flow.test_logs_json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_has_time_level_logger_message(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.warning("disk %s is %d%% full", "/var", 91)
    (line,) = lines(stream)
    assert line["level"] == "WARNING" and line["logger"] == "titus_flow.test_logs_json"
    assert line["message"] == "disk /var is 91% full"
    assert str(line["time"]).endswith("+00:00")


def test_activity_extra_becomes_flat_keys_and_the_job_comes_from_the_task(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    temporal_activity = {
        "activity_id": "7",
        "activity_type": "launch",
        "attempt": 2,
        "workflow_id": "hello-1a2b3c4d",
        "workflow_run_id": "run-1",
        "workflow_type": "BatchJob",
        "task_queue": "titus-agent-a",
    }
    logger.info(
        "launched",
        extra={"temporal_activity": temporal_activity, "task_id": "hello-1a2b3c4d-0", "attempt": 1},
    )
    (line,) = lines(stream)
    assert line["task_id"] == "hello-1a2b3c4d-0" and line["job_id"] == "hello-1a2b3c4d"
    assert line["attempt"] == 1 and line["activity_attempt"] == 2
    assert (line["workflow_id"], line["run_id"], line["activity_id"]) == (
        "hello-1a2b3c4d",
        "run-1",
        "7",
    )
    assert "temporal_activity" not in line and "task_queue" not in line


def test_a_job_workflow_s_id_is_the_job_id(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    details = {"workflow_id": "svc-9f", "run_id": "r", "workflow_type": "ServiceJob"}
    logger.info("scaled", extra={"temporal_workflow": details})
    logger.info("placed", extra={"temporal_workflow": {**details, "workflow_type": "Scheduler"}})
    partition = {**details, "workflow_id": "big-1a2b3c4d-p3", "workflow_type": "BatchJob"}
    logger.info("partition", extra={"temporal_workflow": partition})
    first, second, third = lines(stream)
    assert first["job_id"] == "svc-9f" and "job_id" not in second
    assert third["workflow_id"] == "big-1a2b3c4d-p3" and "job_id" not in third


def test_log_context_reaches_every_line_in_the_block(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    with log_context(job_id="j-1", task_id="j-1-3", attempt=2):
        logger.info("inside")
    logger.info("outside")
    inside, outside = lines(stream)
    assert (inside["job_id"], inside["task_id"], inside["attempt"]) == ("j-1", "j-1-3", 2)
    assert "task_id" not in outside


def test_other_extra_values_and_secrets_never_reach_the_line(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info(
        "launching",
        extra={"secret_env": {"TOKEN": "hunter2"}, "api_key": "sk-live-1", "request": {"k": "v"}},
    )
    text = stream.getvalue()
    assert "hunter2" not in text and "sk-live-1" not in text
    assert set(lines(stream)[0]) == {"time", "level", "logger", "message"}


def test_exceptions_are_in_the_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = lines(stream)
    assert "ValueError: boom" in str(line["exception"])


def test_configure_logging_installs_one_json_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("info")
        configure_logging("INFO")
        logging.getLogger("titus_flow.x").info("hello")
        err = capsys.readouterr().err
        assert [json.loads(line)["message"] for line in err.splitlines()] == ["hello"]
    finally:
        for handler in [h for h in root.handlers if type(h).__name__ == "_JsonHandler"]:
            root.removeHandler(handler)
        root.setLevel(level)
