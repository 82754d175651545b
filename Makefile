# Phantom: build, test, demo. Run as root for anything that makes containers.
CARGO    ?= cargo
PREFIX   ?= /usr/local
BUILD    := $(CURDIR)/build
HOST     := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
# make release: static-pie, built for the host target (hack/build-release.sh).
RELEASE  := $(CURDIR)/target/$(HOST)/release
PHANTOM  := $(RELEASE)/phantom
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all build release deps test unit integration lint demo install clean

all: build

deps:
	hack/install-deps.sh

build:
	$(CARGO) build --workspace

release:
	hack/build-release.sh

# Every test (as root): unit tests, real containers from the busybox rootfs,
# the OCI conformance suite, Podman and containerd driving phantom, and the
# systemd + pure cgroup v2 VM (vm-test, docs/vm-test.md).
# Host set-up that changes the host (hugetlb as cgroup v1 on a hybrid host,
# for crun) runs first, once: a test that drives a controller through
# cgroup v2 would otherwise make that mount fail later (EBUSY).
test: deps build
	hack/prepare-host.sh
	crates/phantom-mcp/tests/setup-venv.sh
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2
	$(MAKE) conformance RUNTIME=phantom
	$(MAKE) engines RUNTIME=phantom
	$(MAKE) vm-test

unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Build phantom, run a sandboxed command from a profile, then an OCI
# container from a bundle made by `phantom spec`.
demo: deps release
	@echo '$$ phantom run --profile python-dev -- python3 -c ...'
	@$(PHANTOM) --root $(BUILD)/state run --profile python-dev -- \
		python3 -c 'import os, platform; print("hello from python", platform.python_version(), "as pid", os.getpid(), "in", os.getcwd())'
	@rm -rf $(BUILD)/demo && mkdir -p $(BUILD)/demo
	@hack/make-rootfs.sh $(BUILD)/demo >/dev/null
	@cd $(BUILD)/demo && $(PHANTOM) spec
	@jq '.process.terminal = false | .process.args = ["sh", "-c", "echo hello from $$(hostname): pid $$$$, uid $$(id -u); grep CapEff /proc/self/status"]' \
		$(BUILD)/demo/config.json > $(BUILD)/demo/config.json.new && mv $(BUILD)/demo/config.json.new $(BUILD)/demo/config.json
	@echo '$$ phantom run --bundle build/demo demo'
	@$(PHANTOM) --root $(BUILD)/state run --bundle $(BUILD)/demo demo-$$$$

install: release
	install -D -m 0755 $(PHANTOM) $(DESTDIR)$(PREFIX)/bin/phantom
	install -D -m 0755 $(RELEASE)/phantom-server $(DESTDIR)$(PREFIX)/bin/phantom-server

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# Podman and containerd drive phantom (or RUNTIME=crun|runc) unchanged: see docs/engines.md.
RUNTIME ?= phantom
.PHONY: engines
engines:
	integration-tests/setup.sh
	$(if $(filter phantom,$(RUNTIME)),$(CARGO) build -p phantom)
	RUNTIME=$(RUNTIME) $(CARGO) test -p phantom-integration-tests --no-fail-fast -- --test-threads=1

# phantom against crun, runc and youki, interleaved; table, results.json and
# start.svg in target/bench (see docs/bench.md). bench-smoke: a few iterations,
# exits non-zero if a runtime command failed. As root.
.PHONY: bench bench-smoke
bench:
	benches/bench.sh

bench-smoke:
	benches/bench.sh --smoke

# Checkpoint/restore time and image size, phantom vs runc (docs/checkpoint.md;
# root and a working CRIU: hack/install-criu.sh).
.PHONY: bench-checkpoint
bench-checkpoint: build
	benches/checkpoint.sh -w sleep
	benches/checkpoint.sh -w mem100 -n 5

# OCI runtime-spec conformance (runtime-spec-tests/README.md), as root:
# `make conformance` (phantom) or `make conformance RUNTIME=crun|runc|/path/to/runtime`.
# rst-checker runs inside busybox containers, so it is linked statically: musl when
# that rustup target is installed, else glibc with crt-static (no download needed).
CHECKER_TARGET ?= $(shell rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl && echo x86_64-unknown-linux-musl || echo x86_64-unknown-linux-gnu)
.PHONY: conformance
conformance:
	$(CARGO) build -p phantom
	$(CARGO) build -p runtime-spec-tests --bin rst
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build -p runtime-spec-tests --bin rst-checker --target $(CHECKER_TARGET)
	RUNTIME=$(or $(RUNTIME),phantom) RST_CHECKER=$(CURDIR)/target/$(CHECKER_TARGET)/debug/rst-checker $(CURDIR)/target/debug/rst

# The VM test bed (docs/vm-test.md), as root: a Debian 12 guest with systemd
# as PID 1 and pure cgroup v2, booted under qemu (TCG), runs the conformance
# suite, Podman, containerd (ctr and the CRI suite) and phantom's sandboxes
# and daemon against phantom, crun and runc with the systemd cgroup driver
# and with cgroupfs; fails on a regression against hack/vm/expected.tsv.
# The image is built once and cached under target/vm/.
.PHONY: vm-test
vm-test:
	hack/build-release.sh >/dev/null
	$(CARGO) build -p runtime-spec-tests --bin rst
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build -p runtime-spec-tests --bin rst-checker --target $(CHECKER_TARGET)
	PHANTOM=$(PHANTOM) CHECKER_TARGET=$(CHECKER_TARGET) \
		CRI_TESTS=$$($(CARGO) test -p phantom-integration-tests --test cri --no-run --message-format=json | \
			jq -r 'select(.target.name == "cri" and .executable != null) | .executable') \
		hack/vm/run.sh
