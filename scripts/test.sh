#!/usr/bin/env bash
# The one test command: set up, lint, type-check, run every test.
#
#   scripts/test.sh                       everything (what CI runs)
#   scripts/test.sh tests/unit            the unit tests alone
#   scripts/test.sh tests/integration     the integration tests alone
#   scripts/test.sh tests/unit/test_cli.py -k help   one file, some tests
#
# Coverage of the pure modules (scheduler, retry delays, ledger rules, ...: the
# [tool.coverage.run] list in pyproject.toml) by the unit tests alone is measured
# in the same run when it holds every unit test (no arguments, or tests/unit),
# reported after the tests, and fails the run when a module is under 95%
# (scripts/pure_coverage.py). COVERAGE=0 skips it.
#
# Extra arguments go to pytest. Tests run in parallel (pytest-xdist, WORKERS=N to
# change, WORKERS=0 for one process): integration tests mostly wait on servers
# and containers, so several run at once even on 2 cores. pytest runs under
# scripts/reaper.py, so no process or container a test started outlives the run,
# even when this script is killed; anything left behind fails the run.
# Exits with pytest's status, or 1 when only ruff or mypy failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

started=$SECONDS
"$ROOT/scripts/setup.sh"

# Lint and types run beside the tests (which mostly wait); their findings are
# printed after the tests, and fail the run even when every test passed.
lint_log=$(mktemp)
trap 'rm -f "$lint_log"' EXIT
(
    lint=0
    .venv/bin/ruff check . || lint=1
    .venv/bin/ruff format --check . || lint=1
    .venv/bin/mypy || lint=1
    exit "$lint"
) >"$lint_log" 2>&1 &
lint_pid=$!

# tests/conftest.py pauses coverage outside tests/unit: only unit tests count.
coverage_args=()
if [ "${COVERAGE:-1}" != 0 ] && { [ $# = 0 ] || [ "$*" = tests/unit ] || [ "$*" = tests/unit/ ]; }; then
    rm -f .coverage .coverage.*
    coverage_args=(--cov --cov-report=)
fi

status=0
.venv/bin/python scripts/reaper.py -- \
    .venv/bin/pytest -n "${WORKERS:-6}" --dist load --maxschedchunk 2 --durations=15 --durations-min=1 \
    ${coverage_args[@]+"${coverage_args[@]}"} "$@" || status=$?
case $status in
    0) ;;
    5) say "pytest collected no tests (exit 5): that is a failure, not a pass" ;;
    *) say "pytest failed (exit $status)" ;;
esac

if [ ${#coverage_args[@]} != 0 ] && ! .venv/bin/python scripts/pure_coverage.py; then
    say "coverage of the pure modules by the unit tests is under 95% (above)"
    [ "$status" != 0 ] || status=1
fi

lint=0
wait "$lint_pid" || lint=1
if [ "$lint" != 0 ]; then
    cat "$lint_log" >&2
    say "ruff or mypy found problems (above)"
    [ "$status" != 0 ] || status=1
fi
say "wall time $((SECONDS - started)) s (set-up included)"
exit "$status"
