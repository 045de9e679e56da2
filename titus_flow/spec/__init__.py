"""The job spec: typed, immutable models validated once at the edge."""

from titus_flow.spec.autoscaling import (
    Autoscaling,
    MetricSource,
    Policy,
    PrometheusSource,
    ScheduledAction,
    StepAdjustment,
    StepPolicy,
    TargetTrackingPolicy,
)
from titus_flow.spec.base import SpecModel
from titus_flow.spec.capacity_group import CapacityGroup, CapacityGuarantee, CapacityLimit
from titus_flow.spec.constraints import Constraints, ConstraintSet
from titus_flow.spec.container import Container
from titus_flow.spec.dependencies import Dependency, DependencyMode, TaskOrder
from titus_flow.spec.health import ExecCheck, HealthCheck, HttpCheck, TcpCheck
from titus_flow.spec.jobs import (
    JOB_ADAPTER,
    MAX_BATCH_INSTANCES,
    BatchJob,
    Capacity,
    DisruptionBudget,
    Job,
    RollingUpdate,
    ServiceJob,
)
from titus_flow.spec.quantities import Duration, Mebibytes, parse_duration, parse_mebibytes
from titus_flow.spec.resources import Resources
from titus_flow.spec.retry import ExponentialBackoff, FixedBackoff, ImmediateBackoff, Retry
from titus_flow.spec.security import SecurityProfile
from titus_flow.spec.volumes import (
    EfsVolume,
    HostPathVolume,
    Mount,
    ScratchVolume,
    TmpfsVolume,
    Volume,
)

__all__ = [
    "JOB_ADAPTER",
    "MAX_BATCH_INSTANCES",
    "Autoscaling",
    "BatchJob",
    "Capacity",
    "CapacityGroup",
    "CapacityGuarantee",
    "CapacityLimit",
    "ConstraintSet",
    "Constraints",
    "Container",
    "Dependency",
    "DependencyMode",
    "DisruptionBudget",
    "Duration",
    "EfsVolume",
    "ExecCheck",
    "ExponentialBackoff",
    "FixedBackoff",
    "HealthCheck",
    "HostPathVolume",
    "HttpCheck",
    "ImmediateBackoff",
    "Job",
    "Mebibytes",
    "MetricSource",
    "Mount",
    "Policy",
    "PrometheusSource",
    "Resources",
    "Retry",
    "RollingUpdate",
    "ScheduledAction",
    "ScratchVolume",
    "SecurityProfile",
    "ServiceJob",
    "SpecModel",
    "StepAdjustment",
    "StepPolicy",
    "TargetTrackingPolicy",
    "TaskOrder",
    "TcpCheck",
    "TmpfsVolume",
    "Volume",
    "parse_duration",
    "parse_mebibytes",
]
