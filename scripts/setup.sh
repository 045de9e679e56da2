#!/usr/bin/env bash
# Prepare this checkout for development, tests and the demo. Safe to re-run.
#
#   1. .venv with the package installed editable, with dev extras;
#   2. a Docker engine that answers (started here when root on Debian/Ubuntu);
#   3. Debian's docker-registry, for tests that pull from a registry on 127.0.0.1, and
#      chromium, for the tests that read the Web UI (headless);
#   4. the busybox:latest example image (scripts/build-image.sh).
#
# Quiet when there is nothing to do; VERBOSE=1 shows every step.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

STATE=${TITUS_FLOW_HOME:-$HOME/.titus-flow}
mkdir -p "$STATE/logs"

# --- 1. virtualenv ------------------------------------------------------------------------

venv_ok() { .venv/bin/python -m pip --version >/dev/null 2>&1; }

if [ ! -e .venv ]; then
    say "creating .venv"
    if ! python3 -m venv .venv >/dev/null 2>&1; then
        # Debian's python3 ships without ensurepip; it lives in python3-venv.
        rm -rf .venv  # the half-made one we just created, without pip
        can_apt || die "python3 -m venv failed; install your distribution's python3-venv package"
        apt_install python3-venv
        python3 -m venv .venv || die "python3 -m venv failed even with python3-venv installed"
    fi
fi
# Never delete a venv we did not just make: it may be someone's working environment.
venv_ok || die ".venv exists but its python/pip does not work; remove .venv and re-run"

# Reinstall only when pyproject.toml changed since the last successful install.
stamp=.venv/.titus-flow-installed
want=$(cksum <pyproject.toml)
if [ ! -x .venv/bin/titus-flow ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing titus-flow and its dev tools into .venv"
    quietly "$STATE/logs/pip-install.log" \
        .venv/bin/python -m pip install --disable-pip-version-check --no-compile -e '.[dev]' \
        || die "pip install failed"
    echo "$want" > "$stamp"
fi
# Bytecode for everything the tests import, made once here (a few seconds when up to
# date): with PYTHONDONTWRITEBYTECODE set (as some sandboxes and CI images do) every
# CLI, worker and agent process would otherwise compile its imports again, 2-3x the
# CPU of each start. workflows/ and activities/ by their own names: compileall does
# not follow titus_flow's symlinks to them.
.venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages \
    titus_flow workflows activities tests scripts bench examples >/dev/null \
    || die "compiling the bytecode of .venv and the project failed"

# --- 2. Docker engine ---------------------------------------------------------------------

docker_ok() { docker info >/dev/null 2>&1; }

wait_for_docker() {
    local deadline=$((SECONDS + 60))
    until docker_ok; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
}

if ! docker_ok; then
    if can_apt; then
        if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
            apt_install docker.io busybox-static
        fi
        # One may already be starting (another run of this script, a service manager).
        if ! pgrep -x dockerd >/dev/null 2>&1; then
            say "starting dockerd (log: $STATE/logs/dockerd.log)"
            # No bridge or iptables: containers use host or no networking here, and this
            # also works inside containers and VMs without NAT rights. live-restore:
            # tasks keep running through an engine restart (docs/faults.md).
            setsid dockerd --bridge=none --iptables=false --ip6tables=false --live-restore \
                </dev/null >>"$STATE/logs/dockerd.log" 2>&1 &
        fi
        wait_for_docker || {
            tail -n 20 "$STATE/logs/dockerd.log" >&2 2>/dev/null || true
            die "dockerd did not answer within 60 s; see $STATE/logs/dockerd.log"
        }
    else
        cat >&2 <<'EOF'
setup: error: no Docker engine answers (`docker info` failed).
  - Docker Desktop / Colima / Rancher Desktop: start it, then re-run this script.
  - Linux: install Docker (e.g. `sudo apt-get install docker.io`), start the service
    (`sudo systemctl start docker`) and make sure your user may use it
    (`sudo usermod -aG docker $USER`, then log in again).
  - Or run this script as root on Debian/Ubuntu: it installs and starts dockerd.
EOF
        exit 1
    fi
fi

# --- 3. a local image registry (tests that pull use one on 127.0.0.1, never a public one) ---

if ! command -v docker-registry >/dev/null 2>&1 && can_apt; then
    apt_install docker-registry
fi

# --- 3b. headless Chromium, for the tests that read the Temporal Web UI as a user would ---

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && can_apt; then
    apt_install chromium
fi

# --- 4. example image ---------------------------------------------------------------------

"$ROOT/scripts/build-image.sh"
