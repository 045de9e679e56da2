"""CPU of each workflow task of recorded histories, replayed on this checkout's workflows.

Issue #11: no workflow task of a titus-flow workflow may take over 1 s of CPU.
A history's wall times (``titus_flow/history_stats.py``) include the wait for a
CPU on a loaded machine; this replays histories (JSON, as ``temporal workflow
show -o json`` or ``bench/scale.py --profile DIR`` writes them) through the
worker's workflows and data converter, and times each activation of the
workflow code (``time.thread_time``: CPU of the workflow's thread only). One
activation is one workflow task of the history, as the worker ran it when it
had the workflow cached; the sum is what a workflow task costs when the worker
has to replay the whole history first (after an eviction or a timeout).

Run: ``.venv/bin/python bench/workflow_tasks.py HISTORY.json [...] [--top 5]``
(``.json.gz`` too; ``--profile``: a cProfile of the workflow code over all of
them). Prints, per history: events, activations, the longest
activation's CPU, and the whole replay's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gzip
import json
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowInstance
from temporalio.worker._workflow_instance import WorkflowInstanceDetails

from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.worker import CONTROL_WORKFLOWS, SANDBOX


@dataclass
class Costs:
    """CPU seconds of each activation of one workflow run, in order."""

    seconds: list[float] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # what each activation carried

    @property
    def longest(self) -> float:
        """The CPU of the costliest activation."""
        return max(self.seconds, default=0.0)

    @property
    def total(self) -> float:
        """The CPU of every activation: a replay of the whole history."""
        return sum(self.seconds)


class TimingRunner(UnsandboxedWorkflowRunner):
    """The unsandboxed runner, timing each activation of each instance it creates."""

    def __init__(self, profile: cProfile.Profile | None = None) -> None:
        super().__init__()
        self.costs: dict[str, Costs] = {}
        self.profile = profile  # enabled around each activation, in its thread

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        """The SDK's instance, with ``activate`` timed."""
        instance = super().create_instance(det)
        costs = self.costs.setdefault(det.info.run_id, Costs())
        activate: Callable[[WorkflowActivation], WorkflowActivationCompletion] = instance.activate

        def timed(act: WorkflowActivation) -> WorkflowActivationCompletion:
            if self.profile is not None:
                self.profile.enable()
            started = time.thread_time()
            try:
                return activate(act)
            finally:
                costs.seconds.append(time.thread_time() - started)
                if self.profile is not None:
                    self.profile.disable()
                kinds = {job.WhichOneof("variant") or "" for job in act.jobs}
                costs.jobs.append(",".join(sorted(kinds)))

        instance.activate = timed  # type: ignore[method-assign]
        return instance


def load_history(path: Path) -> WorkflowHistory:
    """A history file: JSON, or gzipped JSON."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    events: dict[str, Any] = json.loads(raw)
    started = events["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started.get("workflowId", path.stem), events)


async def replay_costs(
    history: WorkflowHistory,
    workflows: Sequence[type] = CONTROL_WORKFLOWS,
    profile: cProfile.Profile | None = None,
) -> Costs:
    """Replay ``history`` once; the CPU of each of its activations (profiled into ``profile``)."""
    runner = TimingRunner(profile)
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=SANDBOX,
        unsandboxed_workflow_runner=runner,
        data_converter=WORKER_DATA_CONVERTER,
    )
    await replayer.replay_workflow(history)
    return next(iter(runner.costs.values()), Costs())


async def main() -> None:
    """Replay each history given and print its costs."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("histories", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=3, help="costliest activations to name")
    parser.add_argument("--profile", action="store_true", help="cProfile the workflow code")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    for path in args.histories:
        history = load_history(path)
        costs = await replay_costs(history, profile=profile)
        worst = sorted(range(len(costs.seconds)), key=lambda i: -costs.seconds[i])[: args.top]
        named = ", ".join(f"#{i} {costs.seconds[i] * 1000:.0f} ms ({costs.jobs[i]})" for i in worst)
        print(
            f"{path.name}: {len(history.events)} events, {len(costs.seconds)} activations,"
            f" longest {costs.longest * 1000:.0f} ms, whole replay {costs.total:.2f} s; {named}",
            flush=True,
        )
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
