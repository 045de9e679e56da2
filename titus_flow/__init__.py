"""titus-flow: container batch and service jobs as code, driven durably by Temporal."""

from titus_flow.spec import (
    BatchJob,
    Capacity,
    CapacityGroup,
    CapacityGuarantee,
    CapacityLimit,
    Constraints,
    ConstraintSet,
    Container,
    DisruptionBudget,
    ExecCheck,
    ExponentialBackoff,
    FixedBackoff,
    HttpCheck,
    ImmediateBackoff,
    Resources,
    Retry,
    RollingUpdate,
    ServiceJob,
    TcpCheck,
)

__version__ = "0.1.0"

__all__ = [
    "BatchJob",
    "Capacity",
    "CapacityGroup",
    "CapacityGuarantee",
    "CapacityLimit",
    "ConstraintSet",
    "Constraints",
    "Container",
    "DisruptionBudget",
    "ExecCheck",
    "ExponentialBackoff",
    "FixedBackoff",
    "HttpCheck",
    "ImmediateBackoff",
    "Resources",
    "Retry",
    "RollingUpdate",
    "ServiceJob",
    "TcpCheck",
    "__version__",
]
