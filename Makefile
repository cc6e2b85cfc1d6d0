# The two commands of the README, and the rest of the developer workflow.
#   make run    the engine on the demo universe with live simulated ticks, its live board in the
#               browser (URL printed first; HTTP_PORT=N fixes the port) (Ctrl-C stops it all)
#   make test   the test suite (unit + integration against throwaway Redis and Mosquitto)
# Both set everything up first: a virtual environment in .venv, the Python dependencies, and
# redis-server + mosquitto from the system's packages when they are missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
INTERVAL ?= 15
TICKS_PER_S ?= 500
HTTP_PORT ?= 0
CLUSTER_INTERVAL ?= 2

.PHONY: setup servers run lint test test-slow test-wheel test-cluster cluster-demo bench bench-quick check-pcf demo-universe clean

setup: $(STAMP) servers

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,cluster]'
	@touch $(STAMP)

servers:
	@sh scripts/install-servers.sh

run: setup
	$(BIN)/iopv demo --interval $(INTERVAL) --ticks-per-s $(TICKS_PER_S) --http-port $(HTTP_PORT)

# The architecture and style rules, checked rather than remembered: imports only go down the
# layers (import-linter, contracts in pyproject.toml), and ruff's lint rules and import order.
lint: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check iopv tests bench

test: lint
	$(BIN)/python -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

# The multi-process fault test: 2 shards x 2 replicas on a Redis Cluster and a NATS cluster,
# SIGKILLs one at a time and together (~1.5 min). Its smoke subset runs in `make test`.
test-cluster: setup
	$(BIN)/python -m pytest -m cluster $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The installable artifact alone (also part of test-slow): python -m build, a clean venv, the
# wheel installed from it, `iopv run --config FILE` with no source tree (a few minutes; CI can run it).
test-wheel: setup
	$(BIN)/python -m pytest -m slow tests/integration/test_wheel.py $(PYTEST_ARGS)

# The engine beyond one machine on loopback: Redis Cluster 3+3, NATS cluster of 3, 2 shards x 2
# replicas and the tick simulator; prints each fund's value and the replica that wrote it.
cluster-demo: setup
	$(BIN)/python -m iopv.demo.cluster --interval $(CLUSTER_INTERVAL) --ticks-per-s $(TICKS_PER_S)

bench: setup
	$(BIN)/python -m bench

bench-quick: setup
	$(BIN)/python -m bench --quick

check-pcf: setup
	$(BIN)/iopv check-pcf config/pcf/*.json

demo-universe: setup
	$(BIN)/python -m iopv.demo.universe --out config/pcf/demo.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
