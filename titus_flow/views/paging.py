"""Questions about a job's tasks: filters and pages."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from titus_flow.views.base import View
from titus_flow.views.tasks import PAGE_MAX_TASKS, TaskView, bounded_tasks, failed_first


class TaskQuery(View):
    """Which tasks of a job to list: a filter, failed first then by index, and a page.

    ``states`` holds task states (``Started``), finish reasons (``failed``) or
    progress keys (``Finished/oom_killed``), in any case; a task matches one of
    them. ``failed`` keeps only tasks that finished other than normally (True)
    or only the others (False).
    """

    # A question, not an answer: a filter this release does not know is refused
    # rather than silently dropped (which would list the wrong tasks).
    model_config = ConfigDict(extra="forbid")

    states: list[str] = Field(default_factory=list)
    failed: bool | None = None
    first: int | None = None  # lowest task index
    last: int | None = None  # highest task index
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=PAGE_MAX_TASKS)

    def matches_key(self, key: str) -> bool:
        """Whether tasks counted under progress key ``key`` pass the state filters."""
        if (
            self.failed is not None
            and (key.startswith("Finished/") and key != "Finished/normal") is not self.failed
        ):
            return False
        if not self.states:
            return True
        wanted = {s.lower() for s in self.states}
        state, _, reason = key.lower().partition("/")
        return bool({key.lower(), state, reason} & wanted)

    def matches(self, task: TaskView) -> bool:
        """Whether ``task`` passes every filter."""
        in_range = (self.first is None or task.index >= self.first) and (
            self.last is None or task.index <= self.last
        )
        return in_range and self.matches_key(task.count_key)

    def count(self, counts: dict[str, int]) -> int:
        """Tasks of ``counts`` that pass the state filters (not the index range)."""
        return sum(n for key, n in counts.items() if self.matches_key(key))


class TaskPage(View):
    """One page of a job's tasks: the rows and how many tasks match in all."""

    tasks: list[TaskView] = Field(default_factory=list)
    total: int = 0


def page_tasks(tasks: list[TaskView], query: TaskQuery) -> TaskPage:
    """The page of ``tasks`` that ``query`` asks for, as bounded rows within the byte budget."""
    matching = sorted((t for t in tasks if query.matches(t)), key=failed_first)
    page = matching[query.offset : query.offset + query.limit]
    return TaskPage(tasks=bounded_tasks(page), total=len(matching))
