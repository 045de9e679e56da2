"""What a job looks like from outside: the describe/list views and the job result.

Views are plain data, JSON-ready, and ignore unknown fields (:mod:`.base`): task
rows and their bounds (:mod:`.tasks`), job views (:mod:`.jobs`), questions
about tasks and their pages (:mod:`.paging`), and a batch workflow's tasks in
the compact form carried across continue-as-new (:mod:`.carried`).
"""

from titus_flow.views.carried import CARRIED_BYTES, TRUNCATED, CarriedTasks, Row, TaskCarry
from titus_flow.views.jobs import JobProgress, JobView, PartitionSummary, ServiceStatus
from titus_flow.views.paging import TaskPage, TaskQuery, page_tasks
from titus_flow.views.tasks import (
    PAGE_MAX_TASKS,
    VIEW_TASK_BYTES,
    AttemptView,
    LogRef,
    TaskView,
    bounded_tasks,
)

__all__ = [
    "CARRIED_BYTES",
    "PAGE_MAX_TASKS",
    "TRUNCATED",
    "VIEW_TASK_BYTES",
    "AttemptView",
    "CarriedTasks",
    "JobProgress",
    "JobView",
    "LogRef",
    "PartitionSummary",
    "Row",
    "ServiceStatus",
    "TaskCarry",
    "TaskPage",
    "TaskQuery",
    "TaskView",
    "bounded_tasks",
    "page_tasks",
]
