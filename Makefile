# zserve — the two commands: `make up` and `make test`.
# Every target installs what it needs from Debian first (`make deps`).

BUILD_DIR ?= build
JOBS ?= 2
BUILD_TYPE ?= RelWithDebInfo
DEPLOYMENT ?= examples/deployment.yaml

# Exactly the Debian packages the build and the tests need.
DEB_PACKAGES := build-essential cmake pkg-config \
  libzmq3-dev cppzmq-dev libmsgpack-dev libspdlog-dev prometheus-cpp-dev libcivetweb-dev \
  catch2 libsqlite3-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
# The peers of the benchmark comparison and its chart (`make bench`; the
# smoke of it in `make test` needs them too).
BENCH_PACKAGES := nats-server libnats-dev gnuplot-nox
# What the tests run besides our binaries: a real Prometheus server scrapes a
# stack; curl talks HTTP to it, to the metrics ports and to the HTTP gateway;
# docker-compose validates compose/ (no Docker engine is needed for
# `config`); wrk loads the HTTP gateway.
TEST_PACKAGES := prometheus curl docker-compose wrk

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WERROR := $(if $(filter true,$(CI)),ON,OFF)

.PHONY: deps bench-deps test-deps build up test test-asan test-tsan soak bench bench-scale bench-allocs clean format

# Installs the Debian packages of $(1) that are missing.
define install_missing
	@missing=$$(for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "All Debian packages present."; fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))

bench-deps:
	$(call install_missing,$(DEB_PACKAGES) $(BENCH_PACKAGES))

test-deps:
	$(call install_missing,$(DEB_PACKAGES) $(BENCH_PACKAGES) $(TEST_PACKAGES))

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DZSERVE_WERROR=$(WERROR)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j$(JOBS)

up: build
	./$(BUILD_DIR)/zserve up $(DEPLOYMENT)

test: test-deps build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) --timeout 300

# The whole suite under sanitizers, each in its own build directory:
# AddressSanitizer + UndefinedBehaviorSanitizer, and ThreadSanitizer.
# The benchmark smokes (comparison and scale) are left out: they check that
# load runs produce numbers, which a 10x slower sanitizer build makes a
# matter of timing.
SANITIZER_CTEST := -E 'bench_test|scale_test'
# libzmq from Debian is not instrumented: tsan.supp silences its internals.
SANITIZER_ENV := ASAN_OPTIONS=abort_on_error=0:halt_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  TSAN_OPTIONS=halt_on_error=1:suppressions=$(CURDIR)/tsan.supp
test-asan: test-deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DZSERVE_WERROR=$(WERROR) -DZSERVE_SANITIZE=address
	cmake --build build-asan -j$(JOBS)
	cd build-asan && $(SANITIZER_ENV) ctest --output-on-failure -j$(JOBS) --timeout 600 $(SANITIZER_CTEST)

test-tsan: test-deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DZSERVE_WERROR=$(WERROR) -DZSERVE_SANITIZE=thread
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && $(SANITIZER_ENV) ctest --output-on-failure -j$(JOBS) --timeout 600 $(SANITIZER_CTEST)

# The chaos test for a minute instead of seconds (docs/reliability.md).
soak: test-deps build
	cd $(BUILD_DIR) && ZSERVE_CHAOS_SECONDS=60 ./tests/e2e/chaos_test

# The comparison with NATS, raw ZeroMQ and a bare ZeroMQ forwarder (about 20 minutes
# on 2 cores): docs/benchmarks.{md,png}. HALT_POLL_NS=N (root, a KVM guest
# with cpuidle-haltpoll) sets the guest's halt polling for the run only.
# Reconfigures so that a build dir made before libnats-dev was installed
# finds it.
bench: bench-deps build
	cmake -S . -B $(BUILD_DIR) > /dev/null
	cmake --build $(BUILD_DIR) -j$(JOBS)
	bench/run.sh --build-dir $(BUILD_DIR) --docs docs $(if $(HALT_POLL_NS),--halt-poll-ns $(HALT_POLL_NS))

# The scale benchmark (issue #7, minutes): 1 to 1000 simulated replicas,
# 10 000 endpoints, the broker's memory per queued request, the router
# alone at 1 to 10 000 replicas (bench/router_dispatch). Writes
# $(BUILD_DIR)/bench-scale/scale.jsonl and prints the table of
# docs/benchmarks.md "Scale".
bench-scale: build
	bench/scale.sh --build-dir $(BUILD_DIR)

# Heap allocations per call of broker, worker and client, counted by
# valgrind (issue #7; a minute or two): the table of bench/broker_profile.md.
bench-allocs: build
	$(call install_missing,valgrind)
	bench/allocs.sh --build-dir $(BUILD_DIR)

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD_DIR)

# libFuzzer targets (fuzz/, docs/security.md "Fuzzing"): clang from Debian,
# everything built with ASan + UBSan in $(FUZZ_BUILD_DIR). `make fuzz` runs
# each target for FUZZ_SECONDS on a copy of its seed corpus; `make fuzz-smoke`
# (CI) for 20 s. Fails on any crash, leak, sanitizer report, timeout or OOM.
FUZZ_PACKAGES := clang libclang-rt-14-dev
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := fuzz_codec fuzz_broker_client fuzz_broker_worker fuzz_admin fuzz_deployment
.PHONY: fuzz fuzz-smoke
fuzz:
	$(call install_missing,$(DEB_PACKAGES) $(FUZZ_PACKAGES))
	cmake -S . -B $(FUZZ_BUILD_DIR) -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DZSERVE_FUZZ=ON -DZSERVE_BUILD_TESTS=OFF -DZSERVE_WERROR=$(WERROR)
	cmake --build $(FUZZ_BUILD_DIR) -j$(JOBS) --target $(FUZZ_TARGETS)
	fuzz/run.sh $(FUZZ_BUILD_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20
