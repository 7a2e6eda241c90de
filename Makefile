# Build, run and test vault-plugin-secrets-gradient.
#
#   make dev    build everything and run Vault + the Gradient emulator locally
#   make test   vet, unit tests and the acceptance suite against a real Vault
#
# Run `make help` for the other targets.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
VERSION ?= v0.1.0
MODULE := github.com/gradient-vault/vault-plugin-secrets-gradient
PLUGIN_NAME := vault-plugin-secrets-gradient

BIN_DIR := $(CURDIR)/bin
PLUGIN_DIR := $(BIN_DIR)/plugins
PLUGIN_BIN := $(PLUGIN_DIR)/$(PLUGIN_NAME)
EMULATOR_BIN := $(BIN_DIR)/gradient-emulator

# The test build of the plugin, for the tests through a real Vault (the
# acceptance suite, the cluster and chaos tests, the bench): built with the
# build tag gradienttest, its Factory reads the GRADIENT_TEST_* variables that
# `vault plugin register -env=...` passes (the scheduler's tick, the smallest
# rotation_period, the WAL's minimum age; backend/tuning_gradienttest.go), so
# that tests rotate and roll back within seconds. `make build`, `make dev` and
# `make release` leave the tag out: those binaries read no environment
# variable and keep every floor (scripts/release_test.go checks the release).
TEST_TAGS := gradienttest
TEST_PLUGIN_DIR := $(BIN_DIR)/plugins-test
TEST_PLUGIN_BIN := $(TEST_PLUGIN_DIR)/$(PLUGIN_NAME)

# Where scripts/get-vault.sh caches the Vault binary it builds. The Makefile
# owns this directory: `make clean` leaves it alone, `make clean-vault` removes it.
VAULT_CACHE_DIR ?= $(CURDIR)/.cache/vault
export VAULT_CACHE_DIR

LDFLAGS := -X $(MODULE)/backend.Version=$(VERSION)
ACCEPTANCE_TIMEOUT ?= 40m
# Extra `go test` flags for the acceptance suite, e.g. TESTARGS='-run TestDurability'.
TESTARGS ?=

.PHONY: help
help: ## Show this help
	@echo "Usage: make <target>"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Download the Go modules
	$(GO) mod download

.PHONY: build
build: deps ## Build the plugin into bin/plugins and the emulator into bin
	@mkdir -p $(PLUGIN_DIR)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)
	$(GO) build -trimpath -o $(EMULATOR_BIN) ./cmd/gradient-emulator

.PHONY: build-test
build-test: deps ## Build the test plugin (tag gradienttest: reads GRADIENT_TEST_*) into bin/plugins-test
	@mkdir -p $(TEST_PLUGIN_DIR)
	$(GO) build -trimpath -tags $(TEST_TAGS) -ldflags "$(LDFLAGS)" -o $(TEST_PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)

.PHONY: vault
vault: ## Get a Vault binary (one on PATH >= 1.15, else build v1.21.0 into .cache/vault once)
	@scripts/get-vault.sh >/dev/null

.PHONY: dev
dev: build ## Run Vault + emulator with the plugin mounted at gradient/ (Ctrl-C stops everything)
	@VERSION="$(VERSION)" PLUGIN_DIR="$(PLUGIN_DIR)" PLUGIN_NAME="$(PLUGIN_NAME)" \
		EMULATOR_BIN="$(EMULATOR_BIN)" scripts/dev.sh

.PHONY: test
test: vet test-unit test-acceptance test-cluster chaos-short fuzz-ci bench-smoke ## What CI runs: vet, unit tests, the acceptance suite, the cluster test, a short chaos run, brief fuzzing and a bench smoke run
# Within `make test` the cluster test runs once, as its own step (test-cluster).
test: TESTARGS = -skip ^TestCluster$$

.PHONY: test-unit
test-unit: deps ## Unit tests only (race detector on), and the test build's tuning
	$(GO) test -race -count=1 ./...
	$(GO) test -race -count=1 -tags $(TEST_TAGS) -run '^TestTuning' ./backend/

.PHONY: test-acceptance
test-acceptance: build-test ## Acceptance suite against a real Vault through the vault CLI (the test plugin)
	@vault_bin=$$(scripts/get-vault.sh); \
	echo "acceptance: Vault $$vault_bin, plugin $(TEST_PLUGIN_BIN) ($(VERSION))"; \
	VAULT_BIN="$$vault_bin" GRADIENT_PLUGIN_DIR="$(TEST_PLUGIN_DIR)" GRADIENT_PLUGIN_VERSION="$(VERSION)" \
		$(GO) test -tags acceptance -count=1 -timeout $(ACCEPTANCE_TIMEOUT) -v $(TESTARGS) ./acceptance/...

# TestCluster on its own: three raft Vault servers, a failover by SIGKILL,
# rotations and a WAL rollback across it. About 1.5-2 minutes.
CLUSTER_TIMEOUT ?= 10m

.PHONY: test-cluster
test-cluster: build-test ## The Vault cluster test alone (3 raft nodes, failover, rotation, WAL rollback)
	@vault_bin=$$(scripts/get-vault.sh); \
	echo "test-cluster: Vault $$vault_bin, plugin $(TEST_PLUGIN_BIN) ($(VERSION))"; \
	VAULT_BIN="$$vault_bin" GRADIENT_PLUGIN_DIR="$(TEST_PLUGIN_DIR)" GRADIENT_PLUGIN_VERSION="$(VERSION)" \
		$(GO) test -tags acceptance -count=1 -timeout $(CLUSTER_TIMEOUT) -v -run '^TestCluster$$' ./acceptance/...

# The chaos run (acceptance/chaos_test.go): concurrent clients through the
# vault CLI against a raft Vault while the emulator injects faults, the plugin
# is SIGKILLed and Vault restarts once; then rollback and the invariant.
# GRADIENT_CHAOS_SEED=<n> repeats a run's operations and faults.
CHAOS_OPS ?= 500
CHAOS_SHORT_OPS ?= 100

.PHONY: chaos
chaos: ## Chaos run: 500 operations from 8 clients under faults, kills and a restart
	@GRADIENT_CHAOS_OPS=$(CHAOS_OPS) $(MAKE) --no-print-directory test-acceptance TESTARGS='-run ^TestChaos$$'

.PHONY: chaos-short
chaos-short: ## The chaos run for CI: 100 operations
	@GRADIENT_CHAOS_OPS=$(CHAOS_SHORT_OPS) GRADIENT_CHAOS_KILL_EVERY=6s $(MAKE) --no-print-directory test-acceptance TESTARGS='-run ^TestChaos$$'

# The full bulk import (acceptance/bulk_test.go): 1,000 keys through the CLI
# at the platform's real limit of 250 requests a minute, at least 4 minutes.
# The acceptance suite runs the scaled-down one (60 keys at 60 a minute).
.PHONY: bulk-import
bulk-import: ## Import 1,000 keys through the CLI at 250/min against the emulator's real limits
	@GRADIENT_BULK_KEYS=1000 GRADIENT_BULK_RATE=250 $(MAKE) --no-print-directory test-acceptance TESTARGS='-run ^TestBulkImport$$'

FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: deps ## Run every Fuzz test for FUZZTIME each (default 30s)
	@grep -rl --include='*_test.go' --exclude-dir=.cache '^func Fuzz' . | while read -r file; do \
		dir=$$(dirname "$$file"); \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			echo "fuzz: $$dir $$fn ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$dir" || exit 1; \
		done; \
	done

# The short fuzz run for CI: every Fuzz target for a fixed number of inputs
# (about 5 to 20 s each here) rather than 10 s: with a wall-clock -fuzztime,
# Go before 1.27 can fail a target with a bare "context deadline exceeded"
# as the time runs out (golang/go#75804), which a count never triggers.
FUZZ_CI_EXECS ?= 30000x

.PHONY: fuzz-ci
fuzz-ci: ## Run every Fuzz test briefly (FUZZ_CI_EXECS inputs each, for CI)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_CI_EXECS)

# Fixed iteration counts keep the uncached-create benchmark's platform list
# near its seeded size; compare runs with benchstat.
BENCHTIME ?= 500x
BENCHCOUNT ?= 3

.PHONY: bench-backend
bench-backend: deps ## In-process benchmarks of the backend's hot paths (reads, creates with and without the name cache)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./backend/

BENCH_OUT ?= bench/results/latest.md

# The bench registers the test plugin: it rotates keys with a one-second tick.
.PHONY: bench
bench: build-test ## Measure through a real Vault beside KV v2 and a floor plugin (own Vault + emulator); table in BENCH_OUT
	@$(GO) build -trimpath -o $(BIN_DIR)/bench/gradient-bench-floor ./bench/cmd/gradient-bench-floor
	$(GO) run ./bench/cmd/gradient-bench -vault "$$(scripts/get-vault.sh)" -plugin $(TEST_PLUGIN_BIN) \
		-floor $(BIN_DIR)/bench/gradient-bench-floor -size full -out $(BENCH_OUT)

.PHONY: bench-smoke
bench-smoke: build-test ## `make bench` at a small size, as a CI smoke test (table in bin/bench/smoke.md)
	@$(GO) build -trimpath -o $(BIN_DIR)/bench/gradient-bench-floor ./bench/cmd/gradient-bench-floor
	$(GO) run ./bench/cmd/gradient-bench -vault "$$(scripts/get-vault.sh)" -plugin $(TEST_PLUGIN_BIN) \
		-floor $(BIN_DIR)/bench/gradient-bench-floor -size smoke -out $(BIN_DIR)/bench/smoke.md

.PHONY: fmt
fmt: ## Format the Go code
	gofmt -s -w $$(find . -name '*.go' -not -path './.cache/*' -not -path './bin/*')

.PHONY: vet
vet: deps ## go vet, including the acceptance suite; fails on unformatted code
	$(GO) vet ./...
	$(GO) vet -tags $(TEST_TAGS) ./backend/...
	$(GO) vet -tags acceptance ./acceptance/...
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.cache/*' -not -path './bin/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi

# `make release` cross-compiles the plugin, without the gradienttest tag (no
# test tuning; see TEST_TAGS), for each RELEASE_PLATFORMS entry into
# DIST_DIR as $(PLUGIN_NAME)_<version>_<os>_<arch>, with a SHA256SUMS beside them.
# Earlier release binaries in DIST_DIR are removed first, so that SHA256SUMS
# covers everything there. scripts/release_test.go checks the result.
DIST_DIR ?= $(CURDIR)/dist
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
SHA256SUM := $(shell command -v sha256sum >/dev/null 2>&1 && echo sha256sum || echo shasum -a 256)

.PHONY: release
release: ## Cross-compile the plugin (VERSION) for linux and darwin into dist/, with SHA256SUMS
	@mkdir -p $(DIST_DIR)
	@rm -f $(DIST_DIR)/$(PLUGIN_NAME)_* $(DIST_DIR)/SHA256SUMS
	@for platform in $(RELEASE_PLATFORMS); do \
		os=$${platform%/*}; arch=$${platform#*/}; \
		out="$(DIST_DIR)/$(PLUGIN_NAME)_$(VERSION)_$${os}_$${arch}"; \
		echo "release: $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o "$$out" ./cmd/$(PLUGIN_NAME); \
	done
	@cd $(DIST_DIR) && $(SHA256SUM) $(PLUGIN_NAME)_$(VERSION)_* > SHA256SUMS
	@echo "release: $(DIST_DIR)/SHA256SUMS"
	@cat $(DIST_DIR)/SHA256SUMS

.PHONY: clean
clean: ## Remove build output (keeps the cached Vault binary)
	rm -rf $(BIN_DIR) coverage.out coverage.html

.PHONY: clean-vault
clean-vault: ## Remove the cached Vault binary
	chmod -R u+w $(VAULT_CACHE_DIR) 2>/dev/null || true
	rm -rf $(VAULT_CACHE_DIR)
