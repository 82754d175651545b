#!/usr/bin/env bash
# make bench / make bench-smoke: build phantom (release), install the peers
# (runc and crun from Debian; youki with cargo, cached in ~/.cargo/bin), then
# run target/release/phantom-bench, which measures and cleans up after itself.
#
# Usage: benches/bench.sh [--smoke] [phantom-bench options...]
# --smoke: a few iterations, and no youki install (youki is used only if
# already installed). Exit status: phantom-bench's (0 all ran, 1 a runtime
# command failed, 2 setup failed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

smoke=0
if [[ ${1:-} == --smoke ]]; then
	smoke=1
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "bench: run as root (it makes containers, mounts and cgroups)" >&2
	exit 2
fi

# runc, crun, busybox-static, libseccomp-dev, pkg-config, containers-common.
hack/install-deps.sh

echo "[bench] building phantom (release, static-pie: make release) and the bench" >&2
release=$(hack/build-release.sh)
cargo build --release --quiet -p phantom-bench

mkdir -p target/bench
youki_args=()
if youki=$(command -v youki); then
	youki_args=(--youki "$youki")
elif ((smoke)); then
	youki_args=(--youki-unavailable "not installed (bench-smoke does not install it; make bench does)")
else
	# youki's default features have no cgroup manager: v1 for this hybrid
	# machine, v2 for others, seccomp (libseccomp-dev, pkg-config).
	log=target/bench/youki-install.log
	echo "[bench] installing youki: cargo install --locked youki --features v1,v2,seccomp (first run only: a few minutes; log: $log)" >&2
	if cargo install --locked youki --features v1,v2,seccomp >"$log" 2>&1; then
		youki_args=(--youki "$HOME/.cargo/bin/youki")
	else
		reason=$(grep -m1 -E '^error' "$log" || tail -n1 "$log")
		reason=${reason#error: }
		echo "[bench] youki install failed: $reason" >&2
		youki_args=(--youki-unavailable "cargo install failed: $reason (see $log)")
	fi
fi

args=()
if ((smoke)); then
	args+=(--smoke)
	shift
fi
exec target/release/phantom-bench --phantom "$release/phantom" "${args[@]}" "${youki_args[@]}" "$@"
