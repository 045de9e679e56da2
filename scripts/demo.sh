#!/usr/bin/env bash
# The demo: set up, start the local stack, run every example job, show the Web UI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

"$ROOT/scripts/setup.sh"
TF=.venv/bin/titus-flow
$TF up

failed=0
if $TF run --help >/dev/null 2>&1; then
    shopt -s nullglob
    for file in examples/*.yaml examples/*.yml examples/*.json examples/*.py; do
        # examples/ also holds user workflows and helpers: run only what validates as jobs.
        $TF validate "$file" >/dev/null 2>&1 || continue
        echo
        echo "=== titus-flow run $file"
        $TF run "$file" || { failed=$((failed + 1)); say "$file failed"; }
    done
else
    say "this version has no \`run\` command yet; the stack is up, nothing to run"
fi

echo
$TF status || true
echo
echo "Web UI: $($TF status -o json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["ui_url"])')"
echo "Stop the stack with: $TF down"
[ "$failed" = 0 ] || die "$failed example job(s) failed"
