# Every target bootstraps itself: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test servers lint typecheck layers unit unit-others soak bench peers docs clean

# The suite runs on every supported Python this machine has: $(PYTHON) in $(VENV), then each
# other one of PYTHONS found under pyenv or on PATH (scripts/find-python), in a venv of its own.
PYTHONS ?= 3.11 3.12 3.13

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

## make demo: services talking over the bus (in-process, no server needed)
demo: $(STAMP)
	$(BIN)/python examples/user_service.py

## make test: ruff, mypy (strict), the import-layer contract and the whole test suite on every Python here
test: $(STAMP) servers lint typecheck layers unit unit-others

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks docs/snippets

# The layers of src/addrbus (pyproject.toml, [tool.importlinter]): imports point down only.
layers: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs inside a private network namespace, so no multicast frame can
# leave this machine; the Redis tests start their own redis-server inside it.
unit: $(STAMP)
	@echo "== the suite on $$($(BIN)/python -V) ($(VENV))"
	scripts/in-netns $(BIN)/pytest

# The same suite on the other Pythons (scripts/test-pythons says which it ran and which it did not find).
unit-others: $(STAMP)
	scripts/test-pythons $(BIN)/python "$(PYTHONS)"

# Tests start private brokers (and the monitor's page in headless chromium, tests/test_monitor.py);
# install their Debian packages when we may (root) and one is missing.
SERVERS := redis-server nats-server mosquitto chromium
servers:
	@missing=""; for s in $(SERVERS); do \
	  command -v $$s >/dev/null 2>&1 || [ -x /usr/sbin/$$s ] || missing="$$missing $$s"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $$missing; \
	  else echo "missing:$$missing: install them (apt-get install$$missing)" >&2; exit 1; fi; fi

## make docs: build the documentation site into site/ (fails on a broken link or a missing page)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## make soak: the full reliability scenarios (up to 20 minutes); figures in reliability-results/
soak: $(STAMP)
	ADDRBUS_SOAK=1 scripts/in-netns $(BIN)/pytest tests/reliability -q

bench: $(STAMP)
	$(BIN)/python benchmarks/inprocess.py

## make peers: addrbus beside TinyBus and Lahja (pyproject's "bench" group) in a venv of its own, on 3.12
## (TinyBus needs 3.12+; Lahja's trio 0.16 does not import on 3.13)
peers:
	@test -x .venv-peers/bin/python || $$(scripts/find-python 3.12 || scripts/find-python 3.13 || echo $(PYTHON)) \
	  -m venv .venv-peers
	.venv-peers/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]["bench"]))' \
	  > .venv-peers/bench.txt
	.venv-peers/bin/python -m pip install -q -e '.[speed]' -r .venv-peers/bench.txt
	.venv-peers/bin/python benchmarks/peers.py

clean:
	rm -rf $(VENV) .venv-3.* .venv-peers .pytest_cache .mypy_cache .ruff_cache .hypothesis site
