#!/usr/bin/env bash
# Install what building, testing and demonstrating phantom needs on a fresh
# Debian 12 machine. Idempotent; quiet when everything is already there.
set -euo pipefail

pkgs=(busybox-static runc crun hyperfine strace jq pkg-config libseccomp-dev python3 golang-go
      golang-github-containers-common iproute2 util-linux procps file protobuf-compiler
      nftables openssl)
"$(dirname "$0")/apt-ensure.sh" install-deps "${pkgs[@]}"
# CRIU >= 4.0 for checkpoint/restore (Debian 12's 3.17 fails on new kernels).
"$(dirname "$0")/install-criu.sh"

if ! command -v cargo >/dev/null 2>&1; then
	if [[ -x $HOME/.cargo/bin/cargo ]]; then
		echo "install-deps: cargo is in ~/.cargo/bin: add it to PATH" >&2
	else
		echo "install-deps: no Rust toolchain: install one with rustup (https://rustup.rs)" >&2
	fi
	exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
