"""Submit-time checks of what a job asks of the agents' isolation."""

from __future__ import annotations

from collections.abc import Sequence

from titus_flow.contracts import AgentView
from titus_flow.errors import UserError
from titus_flow.spec.constraints import HOST_NETWORK_ATTRIBUTE


def refuse_host_network(agents: Sequence[AgentView] | None) -> None:
    """Raise :class:`UserError` unless one of ``agents`` allows ``network: host``.

    ``None`` (the agents are not known yet: no scheduler answers) lets the job
    through; the scheduler then places it only on an agent that allows it.
    """
    if agents is None:
        return
    if any(agent.attributes.get(HOST_NETWORK_ATTRIBUTE) == "allowed" for agent in agents):
        return
    raise UserError(
        "container.network 'host' is refused: no registered agent allows host networking"
        " (an operator starts agents with --allow-host-network); use the default bridge"
        " network and publish named ports instead"
    )
