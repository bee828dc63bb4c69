# hybridcon — the two commands that matter are `make run` and `make test`.
# Everything they need is installed here, from the lock files in requirements/.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
UV := $(BIN)/uv

.PHONY: run test lint unit integration bench lock clean check-python system-deps

check-python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hybridcon needs Python 3.11 or newer")'

$(UV): | check-python
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "uv==$(UV_VERSION)"

# Runtime dependencies only (make run).
$(VENV)/.run-installed: requirements/run.lock pyproject.toml | $(UV)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r requirements/run.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

# Runtime plus the test and lint tools (make test, make lint).
$(VENV)/.dev-installed: requirements/dev.lock pyproject.toml clients/python/pyproject.toml | $(UV)
	$(UV) pip install -q --python $(BIN)/python --require-hashes -r requirements/dev.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e . -e clients/python
	touch $@

# Debian packages the end-to-end tests drive: Chromium (WebRTC publisher and viewer) and
# nginx (deploy/nginx/hybridcon.conf in front of hybridcon; the test runs its own nginx,
# not the service), and poppler-utils (pdftoppm renders the report's PDF in its test). Installed once when missing; CI machines are Debian and run as root.
SYSTEM_PACKAGES := chromium nginx poppler-utils
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: $(VENV)/.run-installed
	$(BIN)/hybridcon serve --demo-tokens $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check server clients/python tests
	$(BIN)/ruff format --check server clients/python tests
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(VENV)/.dev-installed
	$(BIN)/pytest tests/unit

integration: $(VENV)/.dev-installed
	$(BIN)/pytest tests/integration

# pytest exits 5 when it collected nothing; make treats that as a failure, as it should.
test: lint system-deps
	$(BIN)/pytest

bench: $(VENV)/.dev-installed
	$(BIN)/python -m tests.bench

# Regenerate the lock files after changing dependencies in pyproject.toml.
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --python-version 3.11 --generate-hashes -o requirements/run.lock
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements/dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
