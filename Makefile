# decnet-ttp: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck imports unit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/decnet-ttp rules validate rules/ttp
	$(BIN)/decnet-ttp tag examples/events.jsonl --rules rules/ttp -o demo-tags.jsonl --show 15
	$(BIN)/decnet-ttp tag examples/cowrie.json --format cowrie --rules rules/ttp -o demo-cowrie-tags.jsonl

lint: setup
	$(BIN)/ruff check decnet tests bench

typecheck: setup
	$(BIN)/mypy decnet

# The layers and the absence of import cycles (contracts in pyproject.toml).
imports: setup
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest -q

test: lint typecheck imports unit

bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-tags.jsonl demo-cowrie-tags.jsonl
