# rocebed — `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/rocebed
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Debian packages rocebed needs: ibverbs for the cgo verbs package, iproute2 for comparison
# and outside clients, QEMU and friends for the VM tier.
APT_PACKAGES := build-essential pkg-config libibverbs-dev ibverbs-providers ibverbs-utils rdma-core \
	rdmacm-utils perftest iproute2 kmod qemu-system-x86 qemu-utils busybox-static xz-utils zstd tcpdump

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install Debian packages (as root) and Go modules
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	  else \
	    echo "missing Debian packages; run: sudo apt-get install -y --no-install-recommends $(APT_PACKAGES)"; exit 3; \
	  fi; \
	fi
	$(GO) mod download

.PHONY: build
build: ## build bin/rocebed
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/rocebed

# lab: the README's main command. The default scenario with real traffic: natively where this
# kernel has rdma_rxe (or can load it), in a QEMU guest with Debian's kernel otherwise.
SCENARIO ?= same-host
.PHONY: lab
lab: deps build ## run SCENARIO (default same-host): up, traffic with CQEs asserted, down — natively or in the VM
	@if [ -d /sys/module/rdma_rxe ] || modprobe rdma_rxe 2>/dev/null; then \
	  echo "lab: this kernel has rdma_rxe: running $(SCENARIO) natively"; \
	  $(BIN) run $(SCENARIO); \
	else \
	  echo "lab: this kernel has no rdma_rxe: running $(SCENARIO) in a QEMU guest (rocebed vm run)"; \
	  $(BIN) vm prepare && $(BIN) vm run $(SCENARIO); \
	fi

.PHONY: vet
vet: ## gofmt and go vet
	@test -z "$$(gofmt -l . | tee /dev/stderr)"
	$(GO) vet ./...

# The host tier: unit tests everywhere, root tests inside throwaway network namespaces.
# ROCEBED_REQUIRE_ROOT=1 (CI) makes a root test that skips fail here. Tests that need rdma_rxe
# skip here, naming `make test-vm`, which runs them in the guest with ROCEBED_REQUIRE_RXE=1 in
# force; so the host tier does not apply that one.
# The test binaries are linked without DWARF and symbol table (TEST_LDFLAGS; go test's stack
# traces do not use them): that halves the links' CPU, which CI's guests want. `vm test` links
# the guests' binaries the same way.
TEST_LDFLAGS := -s -w
# TEST_V=-v lists every host test; check sets it, so that its log names every test of every tier
# and CI can check that each test the host tier skips passed in another (internal/testlog).
TEST_V ?=
.PHONY: test test-host
test: vet test-host ## vet, then unit and root tests on this host (root tests run when root)

test-host: ## the host tier alone: unit and root tests on this host, without the vet
	ROCEBED_REQUIRE_RXE=0 $(GO) test $(TEST_V) -race -ldflags='$(TEST_LDFLAGS)' -count=1 ./...

.PHONY: test-nocgo
test-nocgo: ## unit tests without cgo
	CGO_ENABLED=0 $(GO) test -count=1 ./...

# check: the README's test command; CI runs it. After the build, four jobs share the two
# cores, two at a time, in this order: the host tier, the guest tier (after the VM image), the
# harness's own QEMU tests, and the vet. Each starts when a job before it ends (wait -n: make -j2
# itself started the vet before the guest tier), so the harness's guests and the vet run beside
# whichever tier is left, and the host tier's -race compile waits for neither the vet nor the
# image. Every job runs even when one before it failed.
.PHONY: check
check: deps ## everything CI runs: deps, build, then the host, guest and harness tiers and the vet, two at a time
	@$(MAKE) --no-print-directory build
	@rc=0; sub="$(MAKE) --no-print-directory VM_BUILD="; \
	$$sub TEST_V=-v test-host & $$sub test-vm-guests & \
	for next in test-vm-harness vet; do wait -n || rc=1; $$sub $$next & done; \
	wait -n || rc=1; wait -n || rc=1; exit $$rc

.PHONY: bench
bench: build vm-prepare bench-parse ## every figure of issue 11, rocebed beside its anchor: one table and bench.json (BENCH_N=5 runs each; BENCH_CI=0 skips the CI run)
	bash .ci/bench

.PHONY: bench-parse
bench-parse: ## every hostile 1 MiB scenario shape refused: exit code, seconds and peak MB of `rocebed validate`
	testbed/scenario/hostile-report.sh

.PHONY: bench-host
bench-host: ## up+down of same-host by rocebed beside the same steps as ip/sysctl commands (ratio)
	$(GO) test -run '^$$' -bench 'UpDownVsShell' -benchtime 3x -count 1 ./testbed/lab/

# ---- VM tier (see vm/) ----
# Real-kernel tests run in QEMU guests booted with Debian's own kernel (it has rdma_rxe), with
# ROCEBED_REQUIRE_RXE=1 ROCEBED_REQUIRE_ROOT=1: VM_GUESTS guests of one vCPU each boot at once
# and share the packages out, each taking the next one nobody has taken, so the longest come
# first. On two cores two one-vCPU guests beat one two-vCPU guest: tests mostly run one thing
# at a time, and TCG runs a vCPU on one host thread. The list is the packages with tests that
# need rdma_rxe or Debian's kernel (vm's TestGuestTierHasEveryKernelTest keeps it whole),
# longest first. Of each, the guests run only the tests that call one of VM_TEST_MARKS, directly
# or through the package's own helpers (`vm test --only-calling`): those the host tier skips
# for want of rdma_rxe, and those whose outcome rests on the kernel's timing (marked
# testenv.KernelDependent). The others need no particular kernel and ran in the host tier, where
# TCG does not slow them tenfold; `make test-vm VM_TEST_MARKS=` runs every test in the guests.
VM_TEST_PKGS ?= ./testbed/runner ./testbed/diagnose ./testbed/traffic ./testbed/lab ./internal/testenv ./rdma/verbs ./rdma ./testbed/probe ./testbed ./internal/kernel ./vm/guesttest
VM_TEST_MARKS ?= testenv.RequireRXE testenv.RequireCabledNICs testenv.KernelDependent testlab.UpRXE guesttest.requireRXE
comma := ,
VM_GUESTS    ?= 2
VM_SMP       ?= 1
VM_TIMEOUT   ?= 20m
VM_ROCEBED   ?= $(CURDIR)/$(BIN)

# check builds once, before its jobs, and empties this.
VM_BUILD ?= build
.PHONY: vm-prepare
vm-prepare: $(VM_BUILD) ## fetch Debian's kernel and build the guest image (cached: a no-op once done)
	$(VM_ROCEBED) vm prepare

.PHONY: test-vm test-vm-harness test-vm-guests
test-vm: test-vm-harness test-vm-guests ## both VM tiers (at once under make -j)

test-vm-harness: vm-prepare ## the harness's own QEMU tests and the two-host lab in two guests
	ROCEBED_VM_TESTS=1 $(GO) test -p 1 -ldflags='$(TEST_LDFLAGS)' -count=1 -v -run '^(TestHarness|TestVMExec|TestVMPair)' ./vm/ ./cmd/rocebed/

test-vm-guests: vm-prepare ## real-kernel tests in VM_GUESTS guests with rdma_rxe
	$(VM_ROCEBED) vm test --nics 2 --guests $(VM_GUESTS) --smp $(VM_SMP) --timeout $(VM_TIMEOUT) $(if $(strip $(VM_TEST_MARKS)),--only-calling '$(subst $() ,$(comma),$(strip $(VM_TEST_MARKS)))') -- $(VM_TEST_PKGS)

.PHONY: test-vm-trace
test-vm-trace: vm-prepare build ## opt-in: diagnose's kfree_skb trace layer in the guest (it can soft-lock a TCG guest)
	@mkdir -p bin && $(GO) test -c -tags tracetest -o bin/testbed-trace.test ./testbed/diagnose/
	cd testbed/diagnose && ROCEBED_DIAG_TRACE=1 ROCEBED_REQUIRE_RXE=1 ROCEBED_REQUIRE_ROOT=1 $(CURDIR)/$(BIN) vm exec --timeout 5m -- $(CURDIR)/bin/testbed-trace.test -test.v -test.run 'TestDiagnoseRXETrace'

.PHONY: bench-vm
bench-vm: vm-prepare ## guest boot, then first connect, rate, latency (beside perftest) and broken paths in one guest
	ROCEBED_VM_TESTS=1 $(GO) test -run '^$$' -bench BenchmarkExecTrue -benchtime 3x -count 1 ./vm/
	@mkdir -p bin && $(GO) test -c -o bin/traffic.test ./testbed/traffic/
	cd testbed/traffic && $(VM_ROCEBED) vm exec --timeout 20m -- $(CURDIR)/bin/traffic.test -test.run '^$$' -test.bench 'FirstConnect|Rate|Latency|BrokenPaths' -test.benchtime 3x
