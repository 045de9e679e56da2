"""A canary deploy as code: move one task to a new version, check it, promote or roll back.

Two workflows and one activity:

- ``DeployWeb`` starts the ``web`` service (3 busybox web servers) at a version
  and returns once every task is healthy;
- ``CanaryWeb`` moves one task to a new version, holds it for a few seconds,
  runs the ``serves_ok`` check against the canary's own port, then rolls the
  version out to every task, or rolls it back;
- ``serves_ok`` (an activity, registered by the worker with the workflows of
  this file) asks each canary task for ``/status`` and wants ``ok``.

A "broken" version starts and passes its health check (``/index.html``), but
its ``/status`` says ``error``: only the canary check can catch it, as with a
release that is up but serves errors.

Run it::

    titus-flow up --workflows examples/canary.py
    titus-flow start examples/canary.py:DeployWeb --input '{"version": "v1"}' --wait
    titus-flow start examples/canary.py:CanaryWeb --input '{"version": "v2"}' --wait
    titus-flow start examples/canary.py:CanaryWeb --input '{"version": "v3", "broken": true}' --wait
    titus-flow job describe web-canary      # revision 2 (v2) on every task
"""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from titus_flow import (
        Capacity,
        Container,
        HttpCheck,
        Resources,
        RollingUpdate,
        ServiceJob,
    )
    from titus_flow.contracts import CanaryCheckInput
    from titus_flow.flow import canary, deploy_service

SERVER = (
    'mkdir -p /www && echo "$VERSION" > /www/index.html && echo "$STATUS" > /www/status'
    ' && exec httpd -f -p "$PORT" -h /www'
)


def web(version: str, broken: bool = False, desired: int = 3) -> ServiceJob:
    """The ``web`` service at ``version``; a ``broken`` one answers ``/status`` with error."""
    return ServiceJob(
        name="web",
        container=Container(
            image="busybox:latest",
            command=["sh", "-c", SERVER],
            env={"VERSION": version, "STATUS": "error" if broken else "ok"},
            ports=["http"],
        ),
        resources=Resources(cpu=0.1, memory="32Mi", disk=0),
        capacity=Capacity(min=1, desired=desired, max=desired + 2),
        health_check=HttpCheck(
            port="http", path="/index.html", interval="1s", timeout="1s", healthy_threshold=1
        ),
        update=RollingUpdate(max_surge=1, max_unavailable=0, healthy_deadline="60s"),
    )


class WebVersion(BaseModel):
    """Which service job, at which version."""

    job_id: str = "web-canary"
    version: str = "v1"
    broken: bool = False
    desired: int = Field(default=3, ge=1, le=20)
    hold_seconds: float = Field(default=3.0, ge=0)


@activity.defn
async def serves_ok(request: CanaryCheckInput) -> bool:
    """Every canary task answers ``/status`` with ``ok`` on its host port."""
    canaries = [t for t in request.view.tasks if t.revision == request.revision and t.healthy]

    def fetch(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
            return str(answer.read().decode().strip())

    answers = [await asyncio.to_thread(fetch, t.ports["http"]) for t in canaries]
    activity.logger.info("canary %s answered %s", request.job_id, answers)
    return bool(answers) and all(answer == "ok" for answer in answers)


@workflow.defn
class DeployWeb:
    """Start the ``web`` service at a version; returns once it is healthy."""

    @workflow.run
    async def run(self, request: WebVersion) -> str:
        view = await deploy_service(
            web(request.version, request.broken, request.desired), id=request.job_id
        )
        return f"{view.id}: {view.healthy_tasks()} healthy tasks of {request.version}"


@workflow.defn
class CanaryWeb:
    """Canary a new version of the running ``web`` service; promote or roll back."""

    @workflow.run
    async def run(self, request: WebVersion) -> str:
        result = await canary(
            request.job_id,
            web(request.version, request.broken, request.desired),
            tasks=1,
            hold=timedelta(seconds=request.hold_seconds),
            check=serves_ok,
        )
        verdict = "promoted" if result.promoted else "rolled back"
        return f"{request.version} {verdict} (revision {result.revision}): {result.reason}"
