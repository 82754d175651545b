#!/usr/bin/env bash
# Median of N `podman run --rm IMAGE true` per runtime, each on a private
# Podman store (nothing global changes). As root.
#
# Usage: integration-tests/bench-podman.sh [--runs N] [phantom|crun|runc ...]
#        (default: --runs 20 crun phantom; phantom is target/release/phantom
#        when built, else target/debug/phantom, or $PHANTOM_BIN)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
integration-tests/setup.sh
if [[ -z ${PHANTOM_BIN:-} && -x target/release/phantom ]]; then
	export PHANTOM_BIN=$PWD/target/release/phantom
fi
cargo build -q -p phantom-integration-tests --bin bench-podman
exec target/debug/bench-podman "$@"
