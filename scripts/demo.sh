#!/usr/bin/env bash
# The demo: set up, start the local stack, run the example jobs and the example
# pipeline workflow, leave the example web service running, show the Web UI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

"$ROOT/scripts/setup.sh"
TF=.venv/bin/titus-flow
# The worker also runs the example user workflows (workflow-as-code).
$TF up --workflows examples/pipeline.py --workflows examples/canary.py

failed=0
step() {
    echo
    echo "=== titus-flow $*"
    $TF "$@" || { failed=$((failed + 1)); say "titus-flow $* failed"; }
}

step validate examples/
step run examples/hello.yaml            # a batch job of 3 tasks
step run examples/hello.json            # the same, written as JSON
step run examples/retries.py            # jobs as Python objects, with retries
step run examples/dag.yaml              # jobs that depend on each other
step start examples/pipeline.py:Pipeline --input '{"chunks": 3}' --wait   # a pipeline as code
step run examples/web.yaml              # a service: returns once 3 tasks are healthy
# A canary deploy as code: v2 is promoted, a broken v3 is rolled back by the check.
step start examples/canary.py:DeployWeb --input '{"job_id": "web-canary", "version": "v1"}' --wait
step start examples/canary.py:CanaryWeb --input '{"job_id": "web-canary", "version": "v2"}' --wait
step start examples/canary.py:CanaryWeb --input '{"job_id": "web-canary", "version": "v3", "broken": true}' --wait
step job kill web-canary

echo
$TF jobs list || true
echo
$TF status || true
echo
echo "Web UI: $($TF status -o json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["ui_url"])')"
echo "The web service keeps running: stop it with 'titus-flow job kill <id>' (see 'titus-flow jobs list --type service')."
echo "Stop the stack with: $TF down"
[ "$failed" = 0 ] || die "$failed demo step(s) failed"
