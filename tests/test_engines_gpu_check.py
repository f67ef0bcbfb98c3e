"""`make gpu-check` (benchmarks/gpu_check.py): one line and exit 0 without a GPU; its steps (build, parity
against ONNX Runtime fp32, latency, one table) dry-run on a CPU with ONNX Runtime standing in for TensorRT."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_skips_in_one_line(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "gpu_status", lambda: (None, "no NVIDIA driver on this machine"))
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out == "gpu-check: skipped, no NVIDIA driver on this machine\n"


def test_its_steps_dry_run_on_a_cpu_and_print_one_table(gpu_check, capsys):
    args = ["--backend", "onnxruntime", "--frames", "1", "--size", "64x80", "--bench-size", "64x80"]
    assert gpu_check.main([*args, "--bench-frames", "3", "--max", "128x160", "--no-tests"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("precision | build s | router | PSNR vs ORT fp32")
    assert [line.split(" | ")[0] for line in lines[2:5]] == ["fp32", "fp16", "int8"]
    assert all(line.endswith("| ok") for line in lines[2:5]) and lines[-1] == "gpu tests: skipped"
    # each fp16/int8 build says what measured its accuracy guard (ONNX Runtime bundles: the CPU's numbers)
    assert [line.split(": ")[0] for line in lines[5:7]] == ["fp16", "int8"]
    assert all(": accuracy: measured by onnxruntime " in line for line in lines[5:7])
