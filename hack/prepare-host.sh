#!/usr/bin/env bash
# Host set-up that the tests need and that changes the host: run once,
# before any test (`make test` calls it before `cargo test`, and the
# engine tests' integration-tests/setup.sh calls it too). Idempotent.
#
# crun 1.8.1 refuses a hybrid cgroup host whose cgroup2 mount still holds a
# controller ("cgroups in hybrid mode not supported"); on Debian 12 VMs
# without systemd that controller is hugetlb. Mounting hugetlb as v1 frees
# the cgroup2 mount. This must come first: once a controller is enabled in
# the cgroup2 root's cgroup.subtree_control (by any runtime that drives it
# there), mounting it as v1 fails with EBUSY.
set -euo pipefail

unified=/sys/fs/cgroup/unified
mountpoint -q "$unified" 2>/dev/null || exit 0 # not hybrid
# A v1 hugetlb hierarchy that is not mounted here (unmounted while another
# mount namespace keeps it alive) is mounted again; so is hugetlb on v2.
v1_hierarchy=$(awk '$1 == "hugetlb" { print $2 }' /proc/cgroups)
if ! grep -qw hugetlb "$unified/cgroup.controllers" 2>/dev/null &&
	{ [[ ${v1_hierarchy:-0} == 0 ]] || mountpoint -q /sys/fs/cgroup/hugetlb; }; then
	exit 0 # hugetlb is mounted as v1 already (or the kernel lacks it)
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "prepare-host: need root to mount the hugetlb cgroup as v1 for crun" >&2
	exit 1
fi
mkdir -p /sys/fs/cgroup/hugetlb
mountpoint -q /sys/fs/cgroup/hugetlb && exit 0
if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null; then
	# Enabled in the cgroup2 root's subtree_control (and unused below, or
	# this fails too): give it back, then mount.
	if grep -qw hugetlb "$unified/cgroup.subtree_control" &&
		echo -hugetlb >"$unified/cgroup.subtree_control" 2>/dev/null &&
		mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
		echo "prepare-host: hugetlb was enabled in $unified/cgroup.subtree_control; disabled it and mounted hugetlb as v1" >&2
		exit 0
	fi
	echo "prepare-host: cannot mount hugetlb as cgroup v1: it is in use in cgroup v2" \
		"($unified/cgroup.subtree_control: $(cat "$unified/cgroup.subtree_control"));" \
		"remove the cgroups below $unified that use it, or reboot" >&2
	exit 1
fi
