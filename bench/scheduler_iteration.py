"""CPU of the scheduler workflow's handling of a 10,000-task job on 1,000 agents, without a server.

What one scheduler workflow task does when a partitioned job asks for capacity:
decode 20 partitions' placement requests (500 grouped items each, as their
mailboxes send them), run one scheduling iteration (``Ledger.iterate``) that
places them all, encode the 20 answers; then a steady iteration that places
one partition's 50 retried tasks. CPU seconds (``time.process_time``).

Run: ``.venv/bin/python bench/scheduler_iteration.py [--agents 1000] [--tasks 10000]``.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from titus_flow import Resources
from titus_flow.contracts import (
    AgentInfo,
    ItemGroup,
    PlacementItem,
    PlacementRequest,
    ReleaseRequest,
)
from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.ledger import Ledger
from titus_flow.spec import BatchJob, Container

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PARTITION = 500


def main() -> None:
    """Build the cluster and the requests, time the iterations, print the CPU."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    converter = WORKER_DATA_CONVERTER.payload_converter
    job = BatchJob(
        name="scale",
        container=Container(image="busybox:latest", command="sleep 1"),
        resources=Resources(cpu=0.1, memory=64, disk=0, network_mbps=0),
        instances=args.tasks,
    )
    ledger = Ledger()
    for n in range(args.agents):
        info = AgentInfo(
            agent_id=f"hollow-{n:04d}",
            task_queue=f"titus-agent-hollow-{n:04d}",
            resources=Resources(cpu=2, memory="16Gi"),
            attributes={"zone": f"z{n % 3}"},
        )
        ledger.register(info, NOW)
    payloads = []
    for part in range(args.tasks // PARTITION):
        keys = range(part * PARTITION, (part + 1) * PARTITION)
        items = [PlacementItem.for_task(f"job-{k}", "job", job) for k in keys]
        request = PlacementRequest(requester=f"job-p{part}", groups=ItemGroup.of(items))
        payloads.append(converter.to_payloads([request])[0])

    started = time.process_time()
    for payload in payloads:
        ledger.request(converter.from_payloads([payload], [PlacementRequest])[0])
    decoded = time.process_time()
    updates = ledger.iterate()
    iterated = time.process_time()
    answers = [converter.to_payloads([update])[0] for update in updates.values()]
    encoded = time.process_time()
    placed = sum(len(u.placed) for u in updates.values())
    print(
        f"{args.tasks} tasks on {args.agents} agents: decode+request {decoded - started:.3f} s,"
        f" iterate {iterated - decoded:.3f} s, encode {encoded - iterated:.3f} s CPU;"
        f" placed {placed}, largest answer {max(a.ByteSize() for a in answers)} B"
    )
    for _ in range(3):
        retried = [f"job-{k}" for k in range(50)]
        started = time.process_time()
        ledger.release(ReleaseRequest(requester="job-p0", keys=retried))
        items = [PlacementItem.for_task(key, "job", job) for key in retried]
        ledger.request(PlacementRequest(requester="job-p0", groups=ItemGroup.of(items)))
        ledger.iterate()
        print(f"steady: 50 retried tasks placed in {time.process_time() - started:.4f} s CPU")


if __name__ == "__main__":
    main()
