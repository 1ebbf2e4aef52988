# The two user-facing commands are `make run` and `make test` (see README).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := emulators/commercetools/node_modules/.installed

.PHONY: run test lint typecheck unit integration install clean bench reliability reliability-hostile docs lock

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(NODE_STAMP): emulators/commercetools/package.json emulators/commercetools/package-lock.json
	cd emulators/commercetools && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

run: install
	$(BIN)/ct-insider dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Without the incremental cache (~8 s): a stale cache once passed code that a fresh clone's
# mypy rejected (an inference that depends on which modules are checked together).
typecheck: install
	$(BIN)/mypy --no-incremental .

# Two test processes (each with its own Temporal dev server and emulators): most of an
# integration test waits on the servers it drives, so two halve the suite's time on 2 cores
# (925 -> ~470 s). Tests are dealt one by one (`--dist load`): grouping them by file keyed them
# by node id, and the schema fuzz test's 7 cases share one, so 6 of them never ran.
test: lint typecheck
	$(BIN)/pytest -n 2

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

# The hostile-input property tests (every mapper against the Insider emulator's validation,
# the bridge fuzzed from its OpenAPI document) with many more random examples than the
# derandomized `fast` profile of `make test` (tests/conftest.py); a few minutes.
reliability-hostile: install
	HYPOTHESIS_PROFILE=reliability $(BIN)/pytest tests/unit/test_hostile_mapping.py tests/unit/test_bridge_schema_fuzz.py

# The configuration, mapping-rules and CLI tables of docs/operations.md and README.md, from
# the code; tests/unit/test_docs_generated.py fails while they are stale. Also .env.example
# (tests/unit/test_deployment.py).
docs: install
	$(BIN)/python -m tools.gen_docs
	$(BIN)/python -m tools.env_example

# constraints-runtime.txt: the runtime dependencies as a fresh runtime-only install resolves
# them today (the Dockerfile builds with it).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet .
	{ sed -n '/^#/p' constraints-runtime.txt; .lock-venv/bin/python -m pip freeze --exclude ct-insider; } > constraints-runtime.txt.new
	mv constraints-runtime.txt.new constraints-runtime.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .dev emulators/commercetools/node_modules .mypy_cache .ruff_cache .pytest_cache

# Benchmarks (never part of `make test`); results land in bench/results/.
# Each benchmark exits non-zero when it misses its target; all of them run regardless.
bench: install
	@status=0; \
	$(BIN)/python -m bench.backfill || status=1; \
	$(BIN)/python -m bench.realtime || status=1; \
	$(BIN)/python -m bench.catalog || status=1; \
	$(BIN)/python -m bench.triggers || status=1; \
	$(BIN)/python -m bench.triggers --shape held-carts --carts 1500 --cart-rate 5 --delay 60 || status=1; \
	exit $$status

# Fault scenarios (never part of `make test`): one table of records sent, received in Insider,
# lost, duplicated and time to recover (reliability/suite.py); a second pass with two worker
# processes competing on the same task queues; then the hostile-input properties with many
# examples (reliability-hostile). Exits non-zero if any row or property failed.
reliability: install
	@status=0; \
	$(BIN)/python -m reliability.suite --workers 1 || status=1; \
	$(BIN)/python -m reliability.suite --workers 2 || status=1; \
	$(MAKE) --no-print-directory reliability-hostile || status=1; \
	exit $$status
