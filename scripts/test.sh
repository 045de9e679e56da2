#!/usr/bin/env bash
# The one test command: set up, lint, type-check, run every test.
# Extra arguments go to pytest (e.g. `scripts/test.sh -k stack -x`).
# Exits with pytest's status, or 1 when only ruff or mypy failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

"$ROOT/scripts/setup.sh"

# Lint and types first, but run the tests even when they fail: one run, all findings.
lint=0
.venv/bin/ruff check . || lint=1
.venv/bin/ruff format --check . || lint=1
.venv/bin/mypy || lint=1

status=0
.venv/bin/pytest "$@" || status=$?
case $status in
    0) ;;
    5) say "pytest collected no tests (exit 5): that is a failure, not a pass" ;;
    *) say "pytest failed (exit $status)" ;;
esac
if [ "$status" = 0 ] && [ "$lint" != 0 ]; then
    say "tests passed, but ruff or mypy found problems (above)"
    status=1
fi
exit "$status"
