"""The local load balancer: a loopback HTTP reverse proxy for a service job's tasks.

``titus-flow lb JOB --name NAME --listen 127.0.0.1:PORT`` plays, on a dev
machine, the load balancer that a job's ``local:NAME`` entry in
``load_balancers`` stands for. It routes each request round-robin to the tasks
registered in that group (:mod:`.targets`), forwards it (:mod:`.proxy`, with
the framing in :mod:`.http`) and reports ``requests_per_task`` to the job for
its autoscaling policies every second (:mod:`.reporter`). :func:`run_local_lb`
(:mod:`.app`) runs the three together.
"""

from titus_flow.lb.app import run_local_lb
from titus_flow.lb.proxy import LocalProxy
from titus_flow.lb.reporter import MetricSink, RequestMeter
from titus_flow.lb.targets import Target, TargetPool, TargetSource

__all__ = [
    "LocalProxy",
    "MetricSink",
    "RequestMeter",
    "Target",
    "TargetPool",
    "TargetSource",
    "run_local_lb",
]
