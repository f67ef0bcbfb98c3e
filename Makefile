# Every target creates its own virtual environment (.venv) and installs what it needs.
# torch is pinned to the tested CPU build (2.13.0); installing it first keeps pip from pulling a CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= train,dev,tensorrt-rtx,gpu,int8-trt,ros2

# Serving (PyTriton pins numpy<2): a separate environment from Debian's own python3.11 package, whose
# libpython PyTriton's Python stub loads (/usr/local's 3.11.7 fails in the stub; see README, Serving on Triton).
SERVING_PYTHON ?= /usr/bin/python3.11
SERVING_VENV ?= .venv-serving

.PHONY: venv demo test lint latency gpu-check shipped-graphs clean serving-venv test-serving

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@if ! command -v Xvfb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q xvfb >/dev/null 2>&1 || echo "note: could not install xvfb; window tests will skip"; fi
	touch $@

venv: $(BIN)/.installed

$(SERVING_VENV)/bin/.installed: pyproject.toml
	@if { [ ! -x $(SERVING_PYTHON) ] || { command -v dpkg >/dev/null 2>&1 && ! dpkg -s python3.11-venv >/dev/null 2>&1; }; } \
		&& command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q >/dev/null && apt-get install -y -q python3.11 python3.11-venv >/dev/null; fi
	$(SERVING_PYTHON) -m venv $(SERVING_VENV)
	$(SERVING_VENV)/bin/python -m pip install -q -e '.[serving]'
	touch $@

serving-venv: $(SERVING_VENV)/bin/.installed

# The serving tests (PyTriton's tritonserver on 127.0.0.1, the load test); `make test` skips them without the env.
test-serving: venv serving-venv
	EDGERESTORE_SERVING_PYTHON=$(abspath $(SERVING_VENV))/bin/python $(BIN)/pytest -q tests/test_serving.py

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
	rm -rf $(VENV) $(SERVING_VENV) .pytest_cache .ruff_cache
