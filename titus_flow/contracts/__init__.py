"""Small typed messages between workflows, activities and the scheduler.

Kept free of I/O imports so workflow code can import them inside the sandbox.
Grouped by the boundary they cross: job workflows' inputs and the requests
users send them (:mod:`.jobs`, with a service's carried tasks in
:mod:`.service_carry`), the agent activities (:mod:`.agents`), and the
scheduler's placement (:mod:`.placement`).
"""

from titus_flow.contracts.agents import (
    LOGS_MAX_WAIT_SECONDS,
    LOGS_PAGE_BYTES,
    AttemptExit,
    CpuReporting,
    LaunchInput,
    LaunchResult,
    LogsChunk,
    LogsInput,
    StopInput,
    SuperviseInput,
    TaskHealth,
)
from titus_flow.contracts.base import Message
from titus_flow.contracts.jobs import (
    AutoscalingPauseInput,
    BatchJobInput,
    CanaryCheckInput,
    CanaryRequest,
    KillTaskRequest,
    PutMetricInput,
    ScaleRequest,
    ServiceJobInput,
    ServiceRolloutInput,
    ServiceWaitInput,
)
from titus_flow.contracts.placement import (
    AgentInfo,
    AgentView,
    CapacityGroupView,
    CompactKey,
    ItemGroup,
    Placed,
    PlacementItem,
    PlacementRequest,
    PlacementUpdate,
    PutCapacityGroup,
    ReleaseRequest,
    Unplaced,
    compact_key,
    full_key,
)
from titus_flow.contracts.service_carry import CarriedService, ServiceTaskRecord

__all__ = [
    "LOGS_MAX_WAIT_SECONDS",
    "LOGS_PAGE_BYTES",
    "AgentInfo",
    "AgentView",
    "AttemptExit",
    "AutoscalingPauseInput",
    "BatchJobInput",
    "CanaryCheckInput",
    "CanaryRequest",
    "CapacityGroupView",
    "CarriedService",
    "CompactKey",
    "CpuReporting",
    "ItemGroup",
    "KillTaskRequest",
    "LaunchInput",
    "LaunchResult",
    "LogsChunk",
    "LogsInput",
    "Message",
    "Placed",
    "PlacementItem",
    "PlacementRequest",
    "PlacementUpdate",
    "PutCapacityGroup",
    "PutMetricInput",
    "ReleaseRequest",
    "ScaleRequest",
    "ServiceJobInput",
    "ServiceRolloutInput",
    "ServiceTaskRecord",
    "ServiceWaitInput",
    "StopInput",
    "SuperviseInput",
    "TaskHealth",
    "Unplaced",
    "compact_key",
    "full_key",
]
