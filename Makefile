# Every target creates its own virtual environment (.venv) and installs what it needs.
# torch is pinned to the tested CPU build (2.13.0); installing it first keeps pip from pulling a CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= train,dev,tensorrt-rtx,gpu,int8-trt

.PHONY: venv demo test lint latency gpu-check shipped-graphs clean

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

# On a GPU: fp32/fp16/int8 TensorRT bundles vs ONNX Runtime fp32, latency and the gpu tests, one table
# (one line and exit 0 without a GPU). GPU_CHECK_ARGS="--export export/uffn-tiny" checks the real graphs.
gpu-check: venv
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# The ONNX graphs (+ fp16/int8 variants) of weights/*.pt that the package carries; rerun after retraining.
shipped-graphs: venv
	$(BIN)/edgerestore export --ship

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
