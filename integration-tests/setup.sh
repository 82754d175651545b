#!/usr/bin/env bash
# Install what the engine tests need on Debian 12 and prepare this host's
# cgroups for crun (hack/prepare-host.sh). Idempotent; quiet when everything
# is already there.
#
# Usage (as root): integration-tests/setup.sh
#
# Installs: podman, conmon, containerd (ctr and the runc v2 shim),
# golang-github-containers-common (seccomp.json, containers.conf defaults),
# crun and runc (the reference runtimes), busybox-static (the image's
# rootfs), util-linux (unshare, script, nsenter), containernetworking-plugins
# (the CRI suite's loopback network), iproute2 (its pod network plugin).
# Changes nothing in /etc/containers, starts no service: every test brings
# its own store, config and daemon.
set -euo pipefail

pkgs=(podman conmon containerd golang-github-containers-common crun runc
      containernetworking-plugins iproute2 busybox-static util-linux tar)
# No recommends: they would pull in buildah, slirp4netns, fuse-overlayfs,
# dbus and more CNI plugins, none of which the tests use.
"$(dirname "$0")/../hack/apt-ensure.sh" --no-recommends setup "${pkgs[@]}"

# The host's cgroups for crun (hugetlb as v1 on a hybrid host): the same
# step `make test` runs before any test.
"$(dirname "$0")/../hack/prepare-host.sh"
