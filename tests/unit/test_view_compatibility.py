"""Views read across releases (issue 11): a client ignores fields a newer control plane adds."""

from __future__ import annotations

import json

import pydantic
import pytest

from titus_flow.lifecycle import JobState, TaskState
from titus_flow.views import JobView, TaskQuery, TaskView


def test_a_view_with_fields_this_release_does_not_know_still_reads() -> None:
    view = JobView(
        id="web-1",
        name="web",
        type="service",
        state=JobState.RUNNING,
        tasks=[TaskView(id="web-1-0", index=0, state=TaskState.STARTED)],
    )
    newer = json.loads(view.model_dump_json())
    newer["shard_count"] = 4  # as a later release might add
    newer["tasks"][0]["zone"] = "us-east-1a"

    read = JobView.model_validate(newer)

    assert read == view


def test_a_task_query_with_an_unknown_filter_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        TaskQuery.model_validate({"states": ["Started"], "zone": "us-east-1a"})
