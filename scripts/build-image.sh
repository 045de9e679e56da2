#!/usr/bin/env bash
# Make sure the example image exists: pull it, or build it from Debian's busybox-static
# where Docker Hub is unreachable. Safe to re-run.
#
#   IMAGE=busybox:latest   the tag to provide
#   PULL=0                 skip the pull attempt (straight to the local build)
#   BUSYBOX=/bin/busybox   the static busybox binary to put in the image
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

IMAGE=${IMAGE:-busybox:latest}
PULL=${PULL:-1}
BUSYBOX=${BUSYBOX:-/bin/busybox}

docker image inspect "$IMAGE" >/dev/null 2>&1 && exit 0

if [ "$PULL" = 1 ] && timeout 20 docker pull -q "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

say "building $IMAGE locally from busybox-static"
[ "$(uname -s)" = Linux ] || die "cannot pull $IMAGE, and the local build needs Linux"

is_static() { [ -x "$1" ] && ! ldd "$1" >/dev/null 2>&1; }

if ! is_static "$BUSYBOX"; then
    # Debian's plain `busybox` package is dynamically linked: useless in an empty rootfs.
    can_apt || die "$BUSYBOX is missing or not static; install busybox-static (as root: apt-get install busybox-static) or set BUSYBOX"
    apt_install busybox-static
    is_static "$BUSYBOX" || die "$BUSYBOX is still not a static binary after installing busybox-static"
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    # A link named busybox would replace the binary itself with a self-link.
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

tar -C "$rootfs" --owner=0 --group=0 --numeric-owner -c . \
    | docker import \
        -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' \
        -c 'CMD ["/bin/sh"]' \
        - "$IMAGE" >/dev/null \
    || die "docker import of $IMAGE failed"

docker run --rm --network none "$IMAGE" true \
    || die "built $IMAGE, but \`docker run --rm $IMAGE true\` fails"
