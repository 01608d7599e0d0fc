# Every target bootstraps itself: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck layers unit soak bench docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

## make demo: services talking over the bus (in-process, no server needed)
demo: $(STAMP)
	$(BIN)/python examples/user_service.py

## make test: ruff, mypy (strict), the import-layer contract and the whole test suite
test: $(STAMP) redis-server lint typecheck layers unit

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
	scripts/in-netns $(BIN)/pytest

# Tests need a redis-server binary; install it when we may (root) and it is missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q redis-server; \
	  else echo "redis-server is missing: install it (apt-get install redis-server)" >&2; exit 1; fi; }

# The MQTT tests start their own mosquitto (Debian installs it in /usr/sbin); install it
# likewise. A rule of its own adds it to unit's prerequisites, so `make test` checks it first.
unit: mosquitto
.PHONY: mosquitto
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q mosquitto; \
	  else echo "mosquitto is missing: install it (apt-get install mosquitto)" >&2; exit 1; fi; }

## make docs: build the documentation site into site/ (fails on a broken link or a missing page)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## make soak: the full reliability scenarios (up to 20 minutes); figures in reliability-results/
soak: $(STAMP)
	ADDRBUS_SOAK=1 scripts/in-netns $(BIN)/pytest tests/reliability -q

bench: $(STAMP)
	$(BIN)/python benchmarks/inprocess.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site
