"""Names and timings every process of a titus-flow cluster must agree on.

Agents, control workers, the client, fleets and the workflows all derive the
same workflow ids and task queues from these, and size their heartbeats and
liveness checks by them. A leaf module (it imports nothing from the package),
so any of them may import it, workflows included (it is deterministic).

Example::

    scheduler_workflow_id(CONTROL_TASK_QUEUE)  # "titus-control-scheduler"
    agent_task_queue("a1")                     # "titus-agent-a1"
"""

from __future__ import annotations

from datetime import timedelta

CONTROL_TASK_QUEUE = "titus-control"
"""The default control task queue: the scheduler, job and fleet workflows run on it."""

PARTITION_SIZE = 500
"""Default most tasks of one batch workflow history (``partition_size``): ~10 events a
task keeps a partition far below Temporal's 10,240-event warning; a 10,000-task job is
20 partitions. Inputs of releases before the setting read as this."""


def scheduler_workflow_id(control_task_queue: str) -> str:
    """Id of the scheduler workflow of the cluster served on ``control_task_queue``.

    One scheduler per control queue, so several clusters (or test runs) can share
    one Temporal namespace without sharing capacity.
    """
    return f"{control_task_queue}-scheduler"


def fleet_workflow_id(control_task_queue: str, name: str) -> str:
    """Id of the workflow of fleet ``name`` in the cluster on ``control_task_queue``."""
    return f"{control_task_queue}-fleet-{name}"


def agent_task_queue(agent_id: str) -> str:
    """The task queue an agent serves."""
    return f"titus-agent-{agent_id}"


AGENT_HEARTBEAT = timedelta(minutes=5)
"""How often an agent registers again (a signal, so its history cost is ~1,000
agents / 5 min). Liveness does not depend on it: see :data:`AGENT_SILENCE`."""

AGENT_SILENCE = timedelta(seconds=70)
"""An agent whose task queue has had no activity poll for this long is lost.
An idle worker long-polls for up to a minute, so the server's last poll time of
a live agent is up to ~60 s old. Checked every :data:`LIVENESS_EVERY`: a dead
agent is marked lost within 85 s."""

LIVENESS_EVERY = timedelta(seconds=15)
"""How often the scheduler asks which agents still poll their task queues."""

AGENT_LOST_AFTER = timedelta(seconds=30)
"""An agent that does not pick up an activity for this long is presumed gone."""

SUPERVISE_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
"""A supervising agent that stops heartbeating for this long is presumed gone;
the supervise activity is then retried (re-adopting the container) on the
agent's queue until :data:`AGENT_LOST_AFTER` passes with nobody picking it up."""
