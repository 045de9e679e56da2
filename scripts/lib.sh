# Helpers shared by the scripts in this folder; source it, do not run it.
# shellcheck shell=bash

# The script's name prefixes every message, so output of nested scripts stays clear.
_SCRIPT=$(basename "$0" .sh)

# say MSG: progress of a step that does real work (quiet steps say nothing).
say() { echo "$_SCRIPT: $*" >&2; }

# die MSG: explain and stop.
die() {
    echo "$_SCRIPT: error: $*" >&2
    exit 1
}

# quietly LOG CMD...: run CMD with its output in LOG; on failure show LOG's tail.
# VERBOSE=1 shows the output instead.
quietly() {
    local log=$1
    shift
    if [ -n "${VERBOSE:-}" ]; then
        "$@" 2>&1 | tee "$log"
        return "${PIPESTATUS[0]}"
    fi
    if ! "$@" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "$_SCRIPT: (full output in $log)" >&2
        return 1
    fi
}

# can_apt: whether we may install Debian/Ubuntu packages here (root with apt-get).
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

# apt_install PKG...: non-interactive install; runs `apt-get update` once per script.
_APT_UPDATED=
apt_install() {
    local log=/tmp/titus-flow-apt.log
    say "installing $* (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$_APT_UPDATED" ]; then
        quietly "$log" apt-get update -q || die "apt-get update failed"
        _APT_UPDATED=1
    fi
    # With recommends: docker.io needs apparmor's parser where the kernel enables AppArmor.
    quietly "$log" apt-get install -y -q "$@" || die "apt-get install $* failed"
}
