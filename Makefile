# zserve — the two commands: `make up` and `make test`.
# Every target installs what it needs from Debian first (`make deps`).

BUILD_DIR ?= build
JOBS ?= 2
BUILD_TYPE ?= RelWithDebInfo
DEPLOYMENT ?= examples/deployment.yaml

# Exactly the Debian packages the build and the tests need.
DEB_PACKAGES := build-essential cmake pkg-config \
  libzmq3-dev cppzmq-dev libmsgpack-dev libspdlog-dev prometheus-cpp-dev \
  catch2 libsqlite3-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WERROR := $(if $(filter true,$(CI)),ON,OFF)

.PHONY: deps build up test clean format

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "All Debian packages present."; fi

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DZSERVE_WERROR=$(WERROR)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j$(JOBS)

up: build
	./$(BUILD_DIR)/zserve up $(DEPLOYMENT)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS) --timeout 300

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf $(BUILD_DIR)
