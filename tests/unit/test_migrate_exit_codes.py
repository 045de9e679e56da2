"""Exit-code rules between titus-flow and ordered rule lists (AWS Batch, Kubernetes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from titus_flow.migrate.exit_codes import (
    FAILURE_CODES,
    decide,
    decisions_of,
    exit_code_globs,
    expand_exit_code_glob,
    retry_fields,
)

codes = st.frozensets(st.integers(min_value=1, max_value=255))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("137", {137}),
        ("13*", {13, *range(130, 140)}),
        ("2*", {2, *range(20, 30), *range(200, 256)}),
        ("*", set(FAILURE_CODES)),
        ("0", set()),
        ("256", set()),
        ("1?", None),
        ("${x}", None),
        ("*1", None),
        ("", None),
        ("1" * 513, None),
    ],
)
def test_globs_expand_to_failure_codes(pattern: str, expected: set[int] | None) -> None:
    assert expand_exit_code_glob(pattern) == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(
    ("wanted", "globs"),
    [
        (set(FAILURE_CODES), ["*"]),
        ({13, *range(130, 140)}, ["13*"]),
        ({1, 3}, ["1", "3"]),
        ({25, *range(250, 256)}, ["25*"]),
        (set(), []),
    ],
)
def test_codes_compress_to_few_globs(wanted: set[int], globs: list[str]) -> None:
    assert exit_code_globs(wanted) == globs


@given(codes)
def test_globs_match_exactly_the_codes(wanted: frozenset[int]) -> None:
    matched = set().union(*(expand_exit_code_glob(g) or set() for g in exit_code_globs(wanted)))
    assert matched == wanted


@given(st.lists(st.tuples(codes, st.booleans()), max_size=5))
def test_retry_fields_keep_every_decision(rules: list[tuple[frozenset[int], bool]]) -> None:
    decisions = decide(rules)
    fields = retry_fields(decisions)
    again = decisions_of(
        fields.get("retry_on_exit_codes"), fields.get("never_retry_on_exit_codes", [])
    )
    assert again == decisions


def test_the_first_rule_that_matches_decides() -> None:
    decisions = decide([(frozenset({2}), True), (frozenset({2, 3}), False)])
    assert (decisions[2], decisions[3], decisions[4]) == (True, False, True)
