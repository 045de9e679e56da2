"""The capacity ledger: agents, reservations and pending requests of one cluster.

The ledger (:mod:`.core`) is pure and deterministic: the scheduler workflow
owns one and carries its state (:mod:`.state`) across continue-as-new. Its
records (:mod:`.records`) become snapshots of the pure scheduler
(:mod:`titus_flow.scheduler`) in :mod:`.placement`, the adapter between them.
"""

from titus_flow.ledger.core import Ledger
from titus_flow.ledger.records import AgentRecord, PendingRequest, Reservation
from titus_flow.ledger.state import CarriedLedger, LedgerState

__all__ = [
    "AgentRecord",
    "CarriedLedger",
    "Ledger",
    "LedgerState",
    "PendingRequest",
    "Reservation",
]
