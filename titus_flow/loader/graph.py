"""The ``depends_on`` graph of one job file: unknown targets, service targets, cycles."""

from __future__ import annotations

from collections.abc import Sequence
from graphlib import CycleError, TopologicalSorter

from titus_flow.spec import BatchJob, ServiceJob


def dependency_errors(jobs: Sequence[BatchJob | ServiceJob], source: str) -> list[str]:
    """Unknown or service-job ``depends_on`` targets, uneven n_to_n pairs, and cycles."""
    by_name = {job.name: job for job in jobs}
    errors = []
    graph: dict[str, list[str]] = {}
    for job in jobs:
        if not isinstance(job, BatchJob):
            continue
        graph[job.name] = []
        for index, dependency in enumerate(job.depends_on):
            dep = dependency.job
            where = f"{source}: {job.name}.depends_on[{index}]"
            target = by_name.get(dep)
            if target is None:
                errors.append(
                    f"{where}: no job named {dep!r} in this file (jobs: {', '.join(by_name)})"
                )
            elif not isinstance(target, BatchJob):
                errors.append(
                    f"{where}: {dep!r} is a service job, which never completes;"
                    " depend on batch jobs only"
                )
            elif dependency.mode == "n_to_n" and target.instances != job.instances:
                errors.append(
                    f"{where}: mode n_to_n pairs task i with task i of {dep!r}, which has"
                    f" {target.instances} instances, not {job.instances}; give both jobs the"
                    " same instances or use mode all"
                )
            else:
                graph[job.name].append(dep)
    errors += [f"{source}: dependency cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return errors


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The cycles of ``graph`` (job -> the jobs it depends on), each as ``[a, b, ..., a]``.

    :mod:`graphlib` finds one cycle at a time, searching depth first from the
    jobs in order along ``depends_on``. Without the edge that closed it, the
    same search goes on past that point: so each cycle is reported once, in
    the order one depth-first search meets them.
    """
    edges = {job: list(deps) for job, deps in graph.items()}
    found: list[list[str]] = []
    while True:
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for job in edges:
            sorter.add(job)  # first, so the search starts from the jobs in file order
        for job, deps in edges.items():
            for dep in deps:
                # The job as the dependency's predecessor: graphlib's search for a
                # cycle follows successors, so it walks along depends_on.
                sorter.add(dep, job)
        try:
            sorter.prepare()
        except CycleError as err:
            cycle: list[str] = err.args[1]
            found.append(cycle)
            edges[cycle[-2]].remove(cycle[-1])
        else:
            return found
