"""`edgerestore bench`: percentile math, the regression comparator, device keys, the sweep's outputs and the
verb end to end on synthetic graphs (no timing is asserted here; see test_bench_latency.py)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest

from edgerestore import bench
from edgerestore.errors import UserError


def test_percentiles_of_known_samples_follow_linear_interpolation():
    s = bench.summarize(list(range(1, 101)))  # 1..100
    assert (s.n, s.mean, s.p50, s.p90, s.p99, s.max) == (100, 50.5, 50.5, pytest.approx(90.1), 99.01, 100)
    assert s.fps == pytest.approx(1000 / 50.5)
    odd = bench.summarize([30.0, 10.0, 20.0])
    assert (odd.p50, odd.p90, odd.max) == (20.0, pytest.approx(28.0), 30.0)
    assert bench.summarize([7.0]).p99 == 7.0
    with pytest.raises(ValueError):
        bench.summarize([])


def test_sizes_and_tolerances_parse_the_documented_forms():
    assert bench.parse_sizes("360p,720p,1080p, 97x131") == [(360, 640), (720, 1280), (1080, 1920), (97, 131)]
    assert bench.parse_tolerance("10%") == pytest.approx(0.10)
    assert bench.parse_tolerance("0.2") == pytest.approx(0.2)
    for bad in ("12p", "0x5", "tall"):
        with pytest.raises(UserError):
            bench.parse_size(bad)
    with pytest.raises(UserError):
        bench.parse_tolerance("ten")


def _stats(ms: float) -> dict:
    return bench.StageStats(100, ms, ms, ms * 1.1, ms * 1.3, ms * 1.5).to_dict()


def _payload(key: str = "amd-epyc-2c-onnxruntime-1.22.0-t2", **stage_ms: float) -> dict:
    stages = {"router": 1.0, "trunk": 20.0, "branch": 30.0, "copies": 0.2, "total": 52.0, **stage_ms}
    return {
        "format": bench.FORMAT,
        "device": {"key": key},
        "cases": [
            {
                "id": "uffn-tiny/onnxruntime/int8/360x640/routed",
                "stages": {k: _stats(v) for k, v in stages.items()},
            }
        ],
    }


def test_comparator_flags_a_planted_20_percent_regression_and_names_the_stage():
    result = bench.compare(_payload(branch=36.0, total=58.0), _payload(), tolerance=0.10)
    assert not result.ok
    assert {c.stage for c in result.regressions} == {"branch", "total"}
    assert any("branch" in line and "REGRESSED" in line for line in result.lines())
    assert result.lines()[-1].startswith("REGRESSION beyond 10%")


def test_comparator_passes_a_2_percent_slow_down_and_ignores_microsecond_stages():
    base = _payload(copies=0.01)
    now = _payload(branch=30.6, total=53.0, copies=0.03)  # copies tripled, but below min_ms
    result = bench.compare(now, base, tolerance=0.10)
    assert result.ok
    assert "copies" not in {c.stage for c in result.checks}
    assert {c.stage for c in result.checks} == {"router", "trunk", "branch", "total"}


def test_device_key_mismatch_refuses_to_compare(tmp_path):
    jetson = _payload(key="orin-sm87-8c-tensorrt-10.3.0")
    with pytest.raises(bench.DeviceMismatch, match="not comparable"):
        bench.compare(_payload(), jetson)
    (tmp_path / "orin-sm87-8c-tensorrt-10.3.0.json").write_text(json.dumps(jetson))
    with pytest.raises(bench.DeviceMismatch, match="no baseline for this device"):
        bench.resolve_baseline(tmp_path, "amd-epyc-2c-onnxruntime-1.22.0-t2")
    assert bench.resolve_baseline(tmp_path, "orin-sm87-8c-tensorrt-10.3.0").name.startswith("orin")


def test_comparator_refuses_runs_without_a_common_case():
    other = _payload()
    other["cases"][0]["id"] = "uffn-tiny/onnxruntime/fp32/720x1280/routed"
    with pytest.raises(UserError, match="no case in common"):
        bench.compare(_payload(), other)


def test_device_key_separates_hardware_runtime_version_and_threads():
    a = bench.BenchDevice(
        "cpu", "Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz", 2, "onnxruntime", "1.22.0", 2
    )
    assert a.key == "intel-xeon-platinum-8272cl-2c-onnxruntime-1.22.0-t2"
    keys = {
        a.key,
        bench.BenchDevice("cpu", a.name, 2, "onnxruntime", "1.22.0", 1).key,
        bench.BenchDevice("cpu", a.name, 4, "onnxruntime", "1.22.0", 2).key,
        bench.BenchDevice("cpu", a.name, 2, "onnxruntime", "1.23.0", 2).key,
        bench.BenchDevice("gpu", "Orin", 8, "tensorrt", "10.3.0", None, "8.7").key,
    }
    assert len(keys) == 5
    assert bench.BenchDevice.from_dict(a.to_dict()) == a


@pytest.fixture
def synthetic_bundle(tmp_path):
    from edgerestore.runtime.synthetic import write_bundle

    return write_bundle(tmp_path / "bundle", thumbnail_size=32, features=4)


def test_bench_verb_writes_json_plot_baseline_and_fails_on_a_planted_regression(
    tmp_path, synthetic_bundle, capsys
):
    from edgerestore.cli import main

    common = [
        "bench",
        "--bundle",
        str(synthetic_bundle),
        "--sizes",
        "48x64",
        "--frames",
        "8",
        "--warmup",
        "1",
    ]
    common += ["--condition", "rain", "--threads", "1"]
    base = tmp_path / "baselines"
    base.mkdir()
    assert main([*common, "--out", str(tmp_path / "a"), "--save-baseline", str(base)]) == 0
    report = json.loads((tmp_path / "a" / "bench.json").read_text())
    key = report["device"]["key"]
    assert report["device"]["threads"] == 1 and report["timing_source"] == "perf_counter"
    (case,) = report["cases"]
    assert case["id"].endswith("/48x64/rain") and case["conditions_seen"] == {"rain": 8}
    assert {"trunk", "branch", "total"} <= set(case["stages"]) and len(case["samples"]["total"]) == 8
    assert (tmp_path / "a" / "bench_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = json.loads((base / f"{key}.json").read_text())
    assert "samples" not in stored["cases"][0]

    # the same device against a baseline that was 20x faster on every stage: exit 1, stages named
    fast = copy.deepcopy(stored)
    for st in fast["cases"][0]["stages"].values():
        for k in ("mean", "p50", "p90", "p99", "max"):
            st[k] /= 20
    (base / f"{key}.json").write_text(json.dumps(fast))
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "b"), "--compare", str(base), "--min-ms", "0"]) == 1
    err = capsys.readouterr().err
    assert "latency regression" in err and "total" in err

    # a baseline from another machine: a one-line refusal, exit 2
    other = copy.deepcopy(stored)
    other["device"]["key"] = "orin-sm87-8c-tensorrt-10.3.0"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main([*common, "--out", str(tmp_path / "c"), "--compare", str(tmp_path / "other.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not comparable" in err and len(err.splitlines()) == 1


def test_pipeline_measurement_reports_throughput_and_capture_to_display(synthetic_bundle):
    from edgerestore.runtime.restorer import Restorer

    with Restorer.open(synthetic_bundle, threads=1) as r:
        pb = bench.measure_pipeline(r, (48, 64), frames=12, warmup=1, condition="haze", camera_fps=200)
    d = pb.to_dict()
    assert pb.model_ms.n == 12 and pb.capture_to_display_ms.n >= 1
    assert pb.throughput_fps > 0 and np.isfinite(d["overhead"]) and d["latency_ratio"] > 0
    assert pb.capture_to_display_ms.mean >= pb.model_ms_paced.p50 * 0.5  # capture precedes display


def test_sweep_writes_a_heatmap_png_and_a_csv_at_tiny_sizes(tmp_path):
    torch = pytest.importorskip("torch")
    from edgerestore.bench_studies import sweep_cmudrn
    from edgerestore.models import zoo

    torch.manual_seed(0)
    model = zoo.build("cmudrn-t3", width=4)
    result = sweep_cmudrn(
        model, [16, 20], [1, 2], tmp_path, profile="tiny", frames=1, warmup=0, progress=False
    )
    assert result.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(result.png).ndim == 3
    rows = list(csv.DictReader(result.csv.open()))
    assert [(int(r["size"]), int(r["loops"])) for r in rows] == [(16, 1), (20, 1), (16, 2), (20, 2)]
    assert all(float(r["model_p50_ms"]) > 0 for r in rows)
    assert result.p50_ms.shape == (2, 2) and np.isfinite(result.p50_ms).all()


@pytest.mark.parametrize("extra", [[], ["--compare-backends", "--profile", "uffn-tiny"]])
def test_bench_threads_below_one_is_a_one_line_error_before_any_timing(tmp_path, capsys, extra):
    """--compare-backends used to pass --threads -1 to torch.set_num_threads: a traceback."""
    from edgerestore.cli import main

    source = [] if extra else ["--profile", "uffn-tiny"]
    code = main(["bench", *source, *extra, "--threads", "-1", "--out", str(tmp_path / "b")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "edgerestore bench: error: --threads -1 must be >= 1 (leave it out for the bundle's own)"
    ]
    assert not (tmp_path / "b").exists()


def test_bench_times_frames_from_an_input_uri(tmp_path, synthetic_bundle, capsys, monkeypatch):
    import cv2
    import numpy as np

    from edgerestore import bench as bench_module
    from edgerestore.cli import main

    (tmp_path / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"frames/{i}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    pools = []
    real = bench_module.bench_restorer

    def spy(*args, **kwargs):
        pools.append(kwargs.get("pool"))
        return real(*args, **kwargs)

    monkeypatch.setattr(bench_module, "bench_restorer", spy)
    args = ["bench", "--bundle", str(synthetic_bundle), "--sizes", "48x64", "--frames", "4", "--warmup", "0"]
    assert (
        main([*args, "--input", f"file://{tmp_path}/frames", "--out", str(tmp_path / "b"), "--no-plot"]) == 0
    )
    (pool,) = pools
    assert [c for c, _ in pool] == ["input"] * 3 and all(f.shape == (48, 64, 3) for _, f in pool)
    assert [int(f[24, 32, 0]) for _, f in pool] == [0, 50, 100]
    assert main([*args, "--input", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "c")]) == 2
    assert "unknown source" in capsys.readouterr().err
