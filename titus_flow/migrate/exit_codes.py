"""Exit-code retry rules between titus-flow and the ordered rule lists of other systems.

AWS Batch ``evaluateOnExit`` and Kubernetes ``podFailurePolicy`` both hold
ordered rules (the first that matches decides) over a failed attempt's exit
code. titus-flow holds two lists on :class:`~titus_flow.spec.Retry`:
``never_retry_on_exit_codes`` and ``retry_on_exit_codes``. Exit codes of a
failed attempt are 1-255, so every rule set is a finite decision per code;
both directions go through that decision table, never through the rules'
text. Patterns are matched by prefix comparison, never compiled as a regular
expression or a template.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FAILURE_CODES = range(1, 256)
"""The exit codes of a failed attempt (0 is success and never retried)."""

_GLOB = re.compile(r"^[0-9]*\*?$")  # digits, optionally ending in '*' (AWS Batch's rule)

Decisions = dict[int, bool]
"""Exit code -> whether a failed attempt with it is retried."""


def expand_exit_code_glob(pattern: str) -> frozenset[int] | None:
    """The failure codes an AWS Batch ``onExitCode`` glob matches, or None if it is not one.

    ``"137"`` matches 137, ``"13*"`` matches 13 and 130-139, ``"*"`` every code.
    """
    if len(pattern) > 512 or not pattern or not _GLOB.match(pattern):
        return None
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return frozenset(code for code in FAILURE_CODES if str(code).startswith(prefix))
    return frozenset(code for code in FAILURE_CODES if str(code) == pattern)


def decide(rules: Sequence[tuple[Iterable[int], bool]], default: bool = True) -> Decisions:
    """Apply ordered ``(codes, retry)`` rules: the first rule holding a code decides it."""
    decisions: Decisions = {}
    for codes, retry in rules:
        for code in codes:
            decisions.setdefault(code, retry)
    return {code: decisions.get(code, default) for code in FAILURE_CODES}


def retry_fields(decisions: Mapping[int, bool]) -> dict[str, Any]:
    """The fewest titus-flow ``Retry`` fields that give ``decisions``.

    Empty when every failure is retried; else the shorter of the list of codes
    never retried and the list of the only codes retried.
    """
    never = sorted(code for code, retry in decisions.items() if not retry)
    if not never:
        return {}
    only = sorted(code for code, retry in decisions.items() if retry)
    if len(only) < len(never):
        return {"retry_on_exit_codes": only}
    return {"never_retry_on_exit_codes": never}


def decisions_of(retry_on: Sequence[int] | None, never: Sequence[int]) -> Decisions:
    """What titus-flow decides for each failure code (``Retry.retries_exit_code``'s rule)."""
    return {
        code: code not in never and (retry_on is None or code in retry_on) for code in FAILURE_CODES
    }


def exit_code_globs(codes: Iterable[int]) -> list[str]:
    """Few AWS Batch globs that match exactly ``codes`` among the failure codes.

    ``{13, 130..139}`` gives ``["13*"]``; every failure code gives ``["*"]``.
    """
    wanted = frozenset(codes) & frozenset(FAILURE_CODES)
    if wanted == frozenset(FAILURE_CODES):
        return ["*"]
    patterns: list[str] = []

    def cover(prefix: str) -> None:
        matched = expand_exit_code_glob(prefix + "*") or frozenset()
        if not matched & wanted:
            return
        if matched <= wanted:
            patterns.append(prefix + "*")
            return
        if prefix and int(prefix) in wanted:
            patterns.append(prefix)
        for digit in "0123456789":
            if prefix or digit != "0":
                cover(prefix + digit)

    cover("")
    return patterns
