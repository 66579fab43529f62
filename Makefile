# One entry point. `make run` and `make test` build .venv first when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow test-install test-all chaos soak lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[worker,embedded,dev]"
	$(BIN)/python -m pip check
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/embedq up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow

# `pip install embedq` without extras in a fresh venv (needs PyPI), running a job against a real worker.
test-install: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow tests/install

test-all: test test-slow

# The fault and hostile-input battery (docs/reliability.md): every test in tests/chaos, slow ones included,
# but the soak; figures printed. Each test appends its figures to $(EMBEDQ_BATTERY_REPORT) when set.
chaos: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "slow or not slow" -s tests/chaos --deselect tests/chaos/test_soak.py

# The soak: 70% of the measured capacity for EMBEDQ_SOAK_SECONDS (600 by default).
soak: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow -s tests/chaos/test_soak.py

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/encode.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/fleet.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/chunks.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/latency.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/similarity.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/stsb.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/search.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/index.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/up.py

clean:
	rm -rf $(VENV) .embedq .pytest_cache .mypy_cache .ruff_cache
