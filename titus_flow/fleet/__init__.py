"""Agents on EC2: a fleet of instances grown and shrunk with the scheduler's demand.

:mod:`.spec` is the fleet file, :mod:`.planner` the pure scale decisions,
:mod:`.shapes` what the scheduler knows of a fleet's instance types,
:mod:`.ec2` the boto3 calls, :mod:`.userdata` the instance bootstrap script.
The durable loop is :class:`titus_flow.workflows.fleet.FleetWorkflow`.
"""

from titus_flow.fleet.load import load_fleet, parse_fleet
from titus_flow.fleet.spec import FleetSpec, InstanceType, Subnet

__all__ = ["FleetSpec", "InstanceType", "Subnet", "load_fleet", "parse_fleet"]
