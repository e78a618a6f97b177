# The two commands a newcomer needs: `make run` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BROWSER_STAMP := $(VENV)/.browser-stamp

.PHONY: install run test soak lint format bench fuzz clean systemd-tools browser-tools

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

## Start the controller on 127.0.0.1:8000 with CRONMGR_HOME at the repository root.
run: install
	CRONMGR_HOME=$(CURDIR) $(BIN)/cronmgr serve

## Best effort, for tests/test_systemd_unit.py: install systemd-analyze with apt when it
## is missing and we are root. Quiet; never fails the build (the verify test then skips).
systemd-tools:
	@command -v systemd-analyze >/dev/null 2>&1 \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	     && { timeout 300 apt-get -qq update \
	          && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get -qq install -y \
	             -o DPkg::Lock::Timeout=60 --no-install-recommends systemd; } >/dev/null 2>&1; } \
	|| echo "note: systemd-analyze not installed; the unit's verify test will skip"

## Best effort, for tests/test_dashboard_browser.py: the browser extra (Playwright) and
## Debian's chromium, with apt when it is missing and we are root. Quiet; never fails the
## build (the browser tests then skip and say what is missing).
browser-tools: $(BROWSER_STAMP)
	@command -v chromium >/dev/null 2>&1 \
	|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	     && { timeout 300 apt-get -qq update \
	          && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -qq install -y \
	             -o DPkg::Lock::Timeout=60 --no-install-recommends chromium; } >/dev/null 2>&1; } \
	|| echo "note: chromium not installed; the dashboard's browser tests will skip"

$(BROWSER_STAMP): $(STAMP)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,browser]' \
	&& touch $(BROWSER_STAMP) \
	|| echo "note: playwright not installed; the dashboard's browser tests will skip"

## Install everything the suite needs and run it. Four workers on two cores: most tests
## wait on daemons, subprocesses and sockets rather than compute. A file stays on one
## worker (--dist loadfile), so module fixtures such as the shared browser are built once.
PYTEST_WORKERS ?= 4
test: install systemd-tools browser-tools
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## The slow checks, not in `make test`: the cluster soak (three daemons on PostgreSQL,
## nodes killed and restarted under a load of a few thousand slots).
soak: install
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## The API fuzzed for ten minutes from /openapi.json (the suite runs a one-minute pass), in a
## network namespace of its own so that invented targets reach nothing. Needs root.
FUZZ_SECONDS ?= 600
fuzz: install
	$(BIN)/python tests/fuzz/harness.py --netns --max-time $(FUZZ_SECONDS) --max-examples 100

## Benchmarks print a table; not part of CI. The bench extra brings the peer (APScheduler 3).
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
