# Every target creates its own virtual environment (.venv) and installs what it needs.
# torch is pinned to the tested CPU build (2.13.0); installing it first keeps pip from pulling a CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= train,dev,tensorrt-rtx,gpu,ros2

.PHONY: venv demo test lint latency clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@if ! command -v Xvfb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q xvfb >/dev/null 2>&1 || echo "note: could not install xvfb; window tests will skip"; fi
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/edgerestore demo --out demo_out

lint: venv
	$(BIN)/ruff check edgerestore tests
	$(BIN)/ruff format --check edgerestore tests

test: lint
	$(BIN)/pytest -q -m "not latency"

latency: venv
	$(BIN)/pytest -q -m latency

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
