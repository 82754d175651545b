#!/usr/bin/env bash
# Build phantom and phantom-server for release as static-pie executables
# (glibc linked in, position-independent): at every start the kernel maps
# one file and the binary relocates itself, with no ld.so, no shared
# libraries to open and no symbol lookups (docs/bench.md has the numbers).
# phantom does no NSS lookups (no user, group or host names), the one thing
# a static glibc cannot do well. The target is named explicitly so that the
# flag reaches the binaries but not build scripts and proc-macros.
# Prints the directory the binaries are in.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
	cargo build --release --quiet -p phantom --target "$host" >&2
echo "$PWD/target/$host/release"
