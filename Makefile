# Phantom: build, test, demo. Run as root for anything that makes containers.
CARGO    ?= cargo
PREFIX   ?= /usr/local
BUILD    := $(CURDIR)/build
PHANTOM  := $(CURDIR)/target/release/phantom
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all build release deps test unit integration lint demo install clean

all: build

deps:
	hack/install-deps.sh

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p phantom

# Every test: unit tests (no root) and real containers (as root).
test: deps build
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2

unit:
	$(CARGO) test --workspace --lib --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Build phantom and run an OCI container from a bundle made by `phantom spec`.
demo: deps release
	@rm -rf $(BUILD)/demo && mkdir -p $(BUILD)/demo
	@hack/make-rootfs.sh $(BUILD)/demo >/dev/null
	@cd $(BUILD)/demo && $(PHANTOM) spec
	@jq '.process.terminal = false | .process.args = ["sh", "-c", "echo hello from $$(hostname): pid $$$$, uid $$(id -u); grep CapEff /proc/self/status"]' \
		$(BUILD)/demo/config.json > $(BUILD)/demo/config.json.new && mv $(BUILD)/demo/config.json.new $(BUILD)/demo/config.json
	@echo '$$ phantom run --bundle build/demo demo'
	@$(PHANTOM) --root $(BUILD)/state run --bundle $(BUILD)/demo demo-$$$$

install: release
	install -D -m 0755 $(PHANTOM) $(DESTDIR)$(PREFIX)/bin/phantom

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
