# The two set-up commands: `make demo` and `make test`. Each installs missing
# Debian packages, configures and builds, then runs.
#   make test SANITIZE=1   ASan + UBSan build in build-asan/
#   make bench             the benchmarks (same -O2 build as the demo): steps/s in
#                          memory and on SQLite, the journal alone, recovery of 10k
#                          workflows, the model gateway at 1/100/10,000 in flight,
#                          the trace exporter's CPU per step; README has the
#                          commands for the larger runs
#   make soak              the long crash test: SIGKILLs `troupe run ledger` over
#                          SOAK_SEEDS seeds x SOAK_WORKFLOWS workflows (tests/crash/)
MAKEFLAGS  += --no-print-directory
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc)
ifeq ($(SANITIZE),1)
BUILD_DIR  ?= build-asan
CMAKE_ARGS += -DTROUPE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD_DIR  ?= build
CMAKE_ARGS += -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
endif
export UBSAN_OPTIONS = suppressions=$(CURDIR)/tests/support/ubsan.supp:halt_on_error=1:print_stacktrace=1

SOAK_SEEDS     ?= 40
SOAK_WORKFLOWS ?= 200

.PHONY: all bootstrap configure build test demo bench soak clean
all: build

bootstrap:
	@scripts/bootstrap.sh $(BOOTSTRAP_FLAGS)

# the test-only packages (headless Chromium for the dashboard's test)
test: BOOTSTRAP_FLAGS = --test

configure: bootstrap
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 120

demo: build
	@$(BUILD_DIR)/tools/troupe demo

BENCHES = troupe_bench troupe_bench_journal troupe_bench_recovery troupe_bench_gateway \
          troupe_bench_trace
bench: build
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target $(BENCHES)
	@$(BUILD_DIR)/bench/troupe_bench
	@$(BUILD_DIR)/bench/troupe_bench --journal /tmp/troupe-bench.db --drivers 64
	@$(BUILD_DIR)/bench/troupe_bench_journal
	@$(BUILD_DIR)/bench/troupe_bench_recovery --workflows 10000
	@$(BUILD_DIR)/bench/troupe_bench_gateway
	@$(BUILD_DIR)/bench/troupe_bench_trace

soak: build
	@$(BUILD_DIR)/tests/troupe_crash_driver --troupe $(BUILD_DIR)/tools/troupe \
	  --seeds $(SOAK_SEEDS) --workflows $(SOAK_WORKFLOWS)

clean:
	rm -rf build build-asan
