#!/usr/bin/env bash
# Install what the engine tests need on Debian 12 and prepare this host's
# cgroups for crun. Idempotent; quiet when everything is already there.
#
# Usage (as root): integration-tests/setup.sh
#
# Installs: podman, conmon, containerd (ctr and the runc v2 shim),
# golang-github-containers-common (seccomp.json, containers.conf defaults),
# crun and runc (the reference runtimes), busybox-static (the image's
# rootfs), util-linux (unshare, script). Changes nothing in /etc/containers,
# starts no service: every test brings its own store, config and daemon.
set -euo pipefail

pkgs=(podman conmon containerd golang-github-containers-common crun runc
      busybox-static util-linux tar)
# No recommends: they would pull in buildah, slirp4netns, fuse-overlayfs,
# dbus and CNI, none of which the tests use.
"$(dirname "$0")/../hack/apt-ensure.sh" --no-recommends setup "${pkgs[@]}"

# crun 1.8.1 refuses a hybrid cgroup host whose cgroup2 mount still holds a
# controller ("cgroups in hybrid mode not supported"); on Debian 12 VMs
# without systemd that controller is hugetlb. Mounting hugetlb as v1 frees
# the cgroup2 mount. Only on hybrid hosts, once per boot, as root.
if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null &&
	grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "setup: need root to mount the hugetlb cgroup as v1 for crun" >&2
		exit 1
	fi
	mkdir -p /sys/fs/cgroup/hugetlb
	mountpoint -q /sys/fs/cgroup/hugetlb ||
		mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi
