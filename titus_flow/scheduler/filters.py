"""Feasibility filters: each answers "may this task go on this agent?" for one rule.

They are pure functions of plain values so they can be table-tested and shared
by the scheduler, the first-fit baseline and the test oracle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Matchers = tuple[tuple[str, frozenset[str]], ...]


def matches(attributes: Mapping[str, str], matchers: Matchers) -> bool:
    """Whether every ``(key, allowed values)`` pair holds for an agent's attributes."""
    return all(attributes.get(key) in allowed for key, allowed in matchers)


def fits(free: Sequence[int], demand: Sequence[int]) -> bool:
    """Whether ``demand`` fits in ``free`` in every (of the six) dimensions."""
    # Unrolled: this is the innermost test of the scheduler, run per agent per run.
    return (
        free[0] >= demand[0]
        and free[1] >= demand[1]
        and free[2] >= demand[2]
        and free[3] >= demand[3]
        and free[4] >= demand[4]
        and free[5] >= demand[5]
    )


def free_of_job(jobs: Mapping[str, int], job_id: str) -> bool:
    """``unique_host``: whether no task of ``job_id`` runs on the agent."""
    return not jobs.get(job_id)


def fewest_tasks_zones(counts: Mapping[str, int], zones: Iterable[str]) -> frozenset[str]:
    """Hard ``zone_balance``: of ``zones``, those holding the fewest tasks of the job."""
    per_zone = {zone: counts.get(zone, 0) for zone in zones}
    if not per_zone:
        return frozenset()
    fewest = min(per_zone.values())
    return frozenset(zone for zone, count in per_zone.items() if count == fewest)


def admits(
    free: Sequence[int],
    jobs: Mapping[str, int],
    demand: Sequence[int],
    job_id: str,
    unique_host: bool,
) -> bool:
    """The filters that change as tasks are placed: resources, and ``unique_host`` if set."""
    return fits(free, demand) and (not unique_host or free_of_job(jobs, job_id))
