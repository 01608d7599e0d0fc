# Every target bootstraps itself: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test servers lint typecheck layers unit soak bench docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@touch $(STAMP)

## make demo: services talking over the bus (in-process, no server needed)
demo: $(STAMP)
	$(BIN)/python examples/user_service.py

## make test: ruff, mypy (strict), the import-layer contract and the whole test suite
test: $(STAMP) servers lint typecheck layers unit

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

# Tests start private brokers; install their Debian packages when we may (root) and one is missing.
SERVERS := redis-server nats-server mosquitto
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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis site
