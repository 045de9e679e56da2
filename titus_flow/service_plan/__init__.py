"""A service job's decisions as pure functions: snapshot in, plan out.

:mod:`~titus_flow.service_plan.model` holds the values (what a decision reads,
what it decides), :mod:`~titus_flow.service_plan.reconcile` the reconcile pass,
:mod:`~titus_flow.service_plan.requests` the answers to scale, update, canary,
promote, rollback and kill requests and the rules between passes. No Temporal
and no clock here: ``workflows/service.py`` builds the snapshot, applies the
plan and does the I/O.
"""
