"""Latency regression tests (`make latency`, pytest -m latency; excluded from `make test`).

On a shared, noisy CPU no absolute millisecond is asserted: each test compares two things measured
interleaved in the same run (INT8 vs float32, a routed frame vs every branch, the camera pipeline vs the
model alone). On a device with a committed baseline (`benchmarks/baselines/<device-key>.json`, recorded with
`edgerestore bench ... --save-baseline`, with or without --threads: the key is the hardware and runtime,
the thread count that ran is recorded beside it), the last test re-runs the baseline's cases with the
baseline's threads and rounds, interleaved, and fails only on a stage `compare` calls regressed (the
bootstrap interval of the ratio of medians lies wholly above 1.10); elsewhere it skips, naming the key.

The uffn-tiny bundles are built once per session under a temporary folder (from weights/uffn-tiny.pt when
it exists, else untrained weights: latency does not depend on the weights' values).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from edgerestore.measure.cases import CaseTimer, bench_cases, cover_resize, weather_frames
from edgerestore.measure.device import device_of
from edgerestore.measure.pipeline import measure_pipeline
from edgerestore.measure.regression import baseline_path, compare, validate_report
from edgerestore.measure.report import BenchReport, load_json
from edgerestore.measure.stats import REGRESSED, interleaved

pytestmark = pytest.mark.latency
PROFILE = "uffn-tiny"
SIZE = (360, 640)
ROUNDS = 8


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("torch")
    from edgerestore.pipeline import ensure_bundle

    root = tmp_path_factory.mktemp("latency")
    return {
        p: ensure_bundle(
            PROFILE,
            p,
            "onnxruntime",
            export_root=root / "export",
            engines_root=root / "engines",
            progress=False,
            echo=lambda _: None,
            untrained=True,
        ).bundle
        for p in ("fp32", "int8")
    }


def _frame(size=SIZE, condition="rain") -> np.ndarray:
    return weather_frames(size, (condition,))[0][1]


def _call_ms(restorer, frame):
    def call() -> float:
        t0 = time.perf_counter()
        restorer(frame)
        return (time.perf_counter() - t0) * 1e3

    return call


def test_int8_is_not_slower_than_float32(bundles):
    from edgerestore.runtime.restorer import Restorer

    frame = _frame()
    with (
        Restorer.open(bundles["fp32"], threads=2, force="rain") as f32,
        Restorer.open(bundles["int8"], threads=2, force="rain") as i8,
    ):
        calls = {"fp32": _call_ms(f32, frame), "int8": _call_ms(i8, frame)}
        interleaved(calls, 2)
        t = interleaved(calls, ROUNDS)
    fp32, int8 = statistics.median(t["fp32"]), statistics.median(t["int8"])
    assert int8 <= fp32 * 1.05, (
        f"INT8 {int8:.1f} ms vs float32 {fp32:.1f} ms (median of {ROUNDS}, interleaved)"
    )


def test_routed_frame_is_not_slower_than_running_every_branch(bundles):
    """A routed frame (router + trunk + the one selected branch) against what a model without the router
    would run (trunk + all four branches), both through the same backend, interleaved."""
    from edgerestore.conditions import RESTORED_CONDITIONS
    from edgerestore.contract import pad_to
    from edgerestore.runtime.restorer import Restorer

    frame = _frame((180, 320))
    with Restorer.open(bundles["fp32"], threads=2) as r:
        be = r.backend
        padded = pad_to(frame, r.stride)[None]
        thumb = cover_resize(frame, (r.thumbnail_size, r.thumbnail_size))[None]
        hp, wp = padded.shape[1:3]

        def routed() -> float:
            t0 = time.perf_counter()
            be.bind_input("router", "thumbnail", thumb)
            be.run("router")
            be.synchronize()
            r.force = "rain"  # whatever the (possibly untrained) router says, one branch runs
            r(frame)
            r.force = None
            return (time.perf_counter() - t0) * 1e3

        def every_branch() -> float:
            t0 = time.perf_counter()
            be.bind_input("trunk", "frame", padded)
            be.run("trunk")
            features = be.output("trunk", "features")
            for c in RESTORED_CONDITIONS:
                be.bind_input(f"branch_{c}", "frame", padded)
                be.bind_input(f"branch_{c}", "features", features)
                be.run(f"branch_{c}", {"restored": (1, hp, wp, 3)})
                be.read(f"branch_{c}", "restored")
            be.synchronize()
            return (time.perf_counter() - t0) * 1e3

        calls = {"routed": routed, "all": every_branch}
        interleaved(calls, 1)
        t = interleaved(calls, ROUNDS)
    one, every = statistics.median(t["routed"]), statistics.median(t["all"])
    assert one < every, f"routed frame {one:.1f} ms vs trunk + all branches {every:.1f} ms"


def test_camera_pipeline_adds_at_most_10_percent_to_the_model_time(bundles):
    """Three short measurements, judged on their medians: one measurement on a shared machine is noise."""
    from edgerestore.runtime.restorer import Restorer

    with Restorer.open(bundles["int8"], threads=2) as r:
        runs = [
            measure_pipeline(r, SIZE, frames=20, warmup=3, condition="rain", camera_fps=30) for _ in range(3)
        ]
    report = "\n".join(line for pb in runs for line in pb.lines())
    assert statistics.median(pb.overhead for pb in runs) <= 0.10, report
    assert statistics.median(pb.throughput_ratio for pb in runs) >= 0.90, report
    assert statistics.median(pb.latency_ratio for pb in runs) <= 1.50, report


def test_no_stage_regressed_against_this_devices_baseline(bundles):
    """Runs only where `benchmarks/baselines/<device-key>.json` exists (record it on the device itself)."""
    from edgerestore.runtime.restorer import Restorer

    with Restorer.open(bundles["int8"]) as r:
        device = device_of(r)
    key = device.key
    path = Path(__file__).resolve().parents[1] / baseline_path(key)
    if not path.is_file():
        pytest.skip(f"no baseline for device {key}; record one with `edgerestore bench ... --save-baseline`")
    baseline = validate_report(load_json(path, "baseline"), f"baseline {path}")
    threads = baseline["device"].get("threads")  # what ran when it was recorded (ORT's default resolved)
    settings = baseline.get("settings") or {}
    rounds = int(settings.get("rounds") or 1)
    wanted = [
        c
        for c in baseline["cases"]
        if c["profile"] == PROFILE and c["backend"] == "onnxruntime" and c["precision"] in bundles
    ]
    if not wanted:
        pytest.skip(f"{path} holds no {PROFILE} ONNX Runtime case this test can rebuild")
    with contextlib.ExitStack() as stack:
        timers = []
        for c in wanted:
            r = stack.enter_context(Restorer.open(bundles[c["precision"]], threads=threads))
            condition = None if c["condition"] == "routed" else c["condition"]
            timers.append(CaseTimer(r, tuple(c["size"]), condition=condition))
        device = device_of(timers[0].restorer)
        frames = min(int(c["frames"]) for c in wanted)
        cases = bench_cases(timers, frames=frames, warmup=10, rounds=min(rounds, frames))
    current = BenchReport(device, cases, "perf_counter").to_dict(samples=False)
    result = compare(current, baseline, tolerance=0.10)
    assert result.verdict != REGRESSED, "\n".join(result.lines())
