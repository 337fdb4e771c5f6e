# sitemesh — the two commands: `make demo` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint schemas bench clean

install: $(STAMP)

# Re-installs only when the pins or the project metadata change.
$(STAMP): requirements.lock requirements-local.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sitemesh needs Python >= 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-local.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# MODEL=local: the planner and the synthesiser call SmolLM2-135M on CPU (xllamacpp).
MODEL ?=
demo: install
	$(BIN)/sitemesh triage warm
	$(BIN)/sitemesh demo $(if $(filter local,$(MODEL)),--local-model,)

# The second pytest pass reruns every test that takes a state database (marker `db`,
# set by the state_db_url/state_db fixtures) on PostgreSQL: TEST_PG is the admin URL of
# a server where throwaway databases may be created (.ci/run starts the local one).
# `make test TEST_PG=` skips that pass. See docs/development.md.
TEST_PG ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
# pytest-xdist workers: most tests wait on nats-server and worker processes rather than
# compute, so 3 workers keep a 2-core machine busy; one file per worker (--dist loadfile)
# keeps module-scoped servers and sites shared. `make test TEST_JOBS=0` runs serially.
TEST_JOBS ?= 3
PYTEST_PAR = --durations=25 $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

test: install
	$(BIN)/python -m ruff check sitemesh tests bench compose examples
	$(BIN)/python -m mypy sitemesh
	$(BIN)/sitemesh triage warm
	$(BIN)/python -m pytest $(PYTEST_PAR)
	@if [ -n "$(TEST_PG)" ]; then \
	  echo "== the state-database tests again, on PostgreSQL (SITEMESH_TEST_DB=$(TEST_PG))"; \
	  SITEMESH_TEST_DB='$(TEST_PG)' $(BIN)/python -m pytest -m "db and not slow" $(PYTEST_PAR); \
	else echo "TEST_PG is empty: PostgreSQL pass skipped"; fi

lint: install
	$(BIN)/python -m ruff check sitemesh tests bench compose examples
	$(BIN)/python -m mypy sitemesh

schemas: install
	$(BIN)/sitemesh schemas

bench: install
	$(BIN)/python bench/hop.py

clean:
	rm -rf $(VENV) .sitemesh .pytest_cache .mypy_cache .ruff_cache
