"""Temporal names read from their definitions, for the few places that need the name itself.

Workflows, clients and activities invoke each other through typed references
(``handle.signal(SchedulerWorkflow.drain_agent, agent_id)``,
``workflow.execute_activity_method(AgentActivityInterface.launch, ...)``), never
through a name written again at the call (issue 17; a unit test checks it). A
few APIs take only a string, e.g. ``Client.start_workflow(start_signal=...)``,
and an update's id is derived from its name: these helpers read that name from
the decorator that defines it, so each name is written once, where it is defined.

Example::

    start_signal=signal_name(SchedulerWorkflow.renew)  # "renew"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity, workflow


def _named(name: str | None, kind: str, ref: Callable[..., Any]) -> str:
    if not name:
        what = getattr(ref, "__qualname__", repr(ref))
        raise ValueError(f"{what} is a dynamic {kind}: it has no name to read")
    return name


def activity_name(ref: Callable[..., Any]) -> str:
    """The activity type name of an ``@activity.defn`` function or method."""
    return _named(activity._Definition.must_from_callable(ref).name, "activity", ref)


def signal_name(ref: Callable[..., Any]) -> str:
    """The name of a ``@workflow.signal`` method."""
    defn = workflow._SignalDefinition.from_fn(ref)
    if defn is None:
        raise TypeError(f"{ref.__qualname__} is not decorated with @workflow.signal")
    return _named(defn.name, "signal", ref)


def query_name(ref: Callable[..., Any]) -> str:
    """The name of a ``@workflow.query`` method."""
    defn = workflow._QueryDefinition.from_fn(ref)
    if defn is None:
        raise TypeError(f"{ref.__qualname__} is not decorated with @workflow.query")
    return _named(defn.name, "query", ref)


def update_name(ref: workflow.UpdateMethodMultiParam[..., Any]) -> str:
    """The name of a ``@workflow.update`` method."""
    if not isinstance(ref, workflow.UpdateMethodMultiParam):
        raise TypeError(f"{ref!r} is not decorated with @workflow.update")
    return _named(ref._defn.name, "update", ref)


def workflow_name(run: Callable[..., Awaitable[Any]]) -> str:
    """The workflow type name of a ``@workflow.defn`` class, given its ``@workflow.run`` method."""
    return _named(workflow._Definition.must_from_run_fn(run).name, "workflow", run)
