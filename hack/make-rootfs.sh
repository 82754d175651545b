#!/usr/bin/env bash
# Build a minimal OCI bundle rootfs at DIR/rootfs from Debian's busybox-static.
#
# Usage: hack/make-rootfs.sh DIR
#
# The rootfs is deliberately tiny (one static binary plus applet symlinks) so
# integration tests can afford a private copy per bundle. config.json is NOT
# written here: each test generates its own. Re-running on an existing DIR is
# safe and cheap. On success the only output is the rootfs path.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi

dir=$1
rootfs=$dir/rootfs
busybox=/bin/busybox

# busybox-static is required: the rootfs has no dynamic loader or libc, so a
# dynamically linked busybox (Debian's plain "busybox" package, which
# conflicts with busybox-static) would fail to exec inside the container.
is_static() {
	[[ -x $busybox ]] &&
		dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'
}
if ! is_static; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "$0: $busybox missing or not static; install busybox-static (as root)" >&2
		exit 1
	fi
	# Quiet: success must print nothing but the path.
	"$(dirname "$0")/apt-ensure.sh" --quiet "$0" busybox-static
fi

mkdir -p "$rootfs"
for d in bin sbin etc proc sys dev tmp root home/user usr/bin; do
	mkdir -p "$rootfs/$d"
done
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
chown 1000:1000 "$rootfs/home/user"

# Copy only when changed so reruns stay fast and keep mtimes stable.
if ! cmp -s "$busybox" "$rootfs/bin/busybox"; then
	install -m 0755 "$busybox" "$rootfs/bin/busybox"
fi

# One symlink per applet, relative so it resolves inside the container.
# `ln -sfn` makes reruns idempotent; the busybox entry itself is skipped.
applets=$("$rootfs/bin/busybox" --list)
(
	cd "$rootfs/bin"
	for a in $applets; do
		[[ $a == busybox ]] && continue
		[[ -L $a ]] || ln -sfn busybox "$a"
	done
)

printf '%s\n' \
	'root:x:0:0:root:/root:/bin/sh' \
	'user:x:1000:1000:user:/home/user:/bin/sh' \
	'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
	>"$rootfs/etc/passwd"
printf '%s\n' \
	'root:x:0:' \
	'users:x:100:' \
	'user:x:1000:' \
	'nogroup:x:65534:' \
	>"$rootfs/etc/group"
echo phantom >"$rootfs/etc/hostname"

echo "$rootfs"
