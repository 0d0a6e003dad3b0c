# make test is exactly what CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench test-agents chaos clean bytecode

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# An editable install holds no bytecode, and with PYTHONDONTWRITEBYTECODE set Python
# never writes any: every orchestree process (each CLI call, each lane's supervisor)
# would compile the package from source first. Compiled here, as pip compiles an
# installed package; a source file changed since is compiled again (by its mtime).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null

# Says how long it took at the end, passed or not, so a slow suite is noticed.
test: $(STAMP)
	@start=$$(date +%s); status=0; \
	$(MAKE) --no-print-directory lint typecheck pytest || status=$$?; \
	took=$$(( $$(date +%s) - start )); \
	if [ $$status -eq 0 ]; then verdict=passed; else verdict=FAILED; fi; \
	echo "make test: $$verdict in $$(( took / 60 ))m$$(( took % 60 ))s"; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) bytecode
	$(BIN)/pytest -q

demo: $(STAMP) bytecode
	$(BIN)/python examples/demo/run_demo.py

bench: $(STAMP) bytecode
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

# The real agent CLIs (issue 9): installed once into AGENTS_CACHE, outside the clone,
# then tests/agents/ runs with them first on PATH, a fresh HOME and no API key or token
# in the environment (`env -i`). Re-record the unit tests' data with
# `$(BIN)/python scripts/record-agents.py`.
AGENTS_CACHE ?= $(HOME)/.cache/orchestree-agents

test-agents: $(STAMP) bytecode
	ORCHESTREE_AGENTS_CACHE="$(AGENTS_CACHE)" sh scripts/install-agents.sh >/dev/null
	home=$$(mktemp -d) && trap 'rm -rf "$$home"' EXIT && \
	env -i HOME="$$home" LANG=C.UTF-8 PATH="$(AGENTS_CACHE)/bin:/usr/local/bin:/usr/bin:/bin" \
		ORCHESTREE_AGENTS_CACHE="$(AGENTS_CACHE)" ORCHESTREE_AGENT_TESTS=1 \
		$(BIN)/pytest -q -p no:cacheprovider tests/agents

# The chaos suite (tests/chaos/): SEEDS seeded runs of real lanes under faults (SIGKILLs,
# clock steps, a full or read-only .orchestration/), then the invariants. Needs root
# (a mount namespace per run). Replay one seed: `CHAOS_SEED=17 make chaos`.
# pytest's exit 5 (nothing collected, e.g. a CHAOS_FAULTS typo) is a failure here.
SEEDS ?= 60

chaos: $(STAMP) bytecode
	@ORCHESTREE_CHAOS_TESTS=1 CHAOS_SEEDS="$(SEEDS)" $(BIN)/pytest -q -p no:cacheprovider tests/chaos; \
	code=$$?; if [ $$code -eq 5 ]; then \
		echo "make chaos: no chaos run was collected (SEEDS=$(SEEDS)); check CHAOS_SEED, CHAOS_FAULTS" >&2; \
		exit 1; fi; exit $$code
