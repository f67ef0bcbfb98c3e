"""`edgerestore bench`: percentile math, the regression comparator, device keys, the sweep's outputs and the
verb end to end on synthetic graphs (no timing is asserted here; see test_bench_latency.py)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest

from edgerestore.errors import UserError
from edgerestore.measure.cases import CaseResult, CaseTimer, bench_cases, parse_size, parse_sizes
from edgerestore.measure.device import BenchDevice, runnable_others
from edgerestore.measure.pipeline import measure_pipeline
from edgerestore.measure.regression import (
    DEFAULT_BASELINE_DIR,
    DeviceMismatch,
    baseline_destination,
    check_shared_cases,
    compare,
    resolve_baseline,
    validate_report,
)
from edgerestore.measure.report import FORMAT
from edgerestore.measure.stats import (
    INCONCLUSIVE,
    REGRESSED,
    UNCHANGED,
    parse_tolerance,
    ratio_of_medians,
    round_sizes,
    summarize,
)


def test_percentiles_of_known_samples_follow_linear_interpolation():
    s = summarize(list(range(1, 101)))  # 1..100
    assert (s.n, s.mean, s.p50, s.p90, s.p99, s.max) == (100, 50.5, 50.5, pytest.approx(90.1), 99.01, 100)
    assert s.fps == pytest.approx(1000 / 50.5)
    odd = summarize([30.0, 10.0, 20.0])
    assert (odd.p50, odd.p90, odd.max) == (20.0, pytest.approx(28.0), 30.0)
    assert summarize([7.0]).p99 == 7.0
    with pytest.raises(ValueError):
        summarize([])


def test_sizes_and_tolerances_parse_the_documented_forms():
    assert parse_sizes("360p,720p,1080p, 97x131") == [(360, 640), (720, 1280), (1080, 1920), (97, 131)]
    assert parse_tolerance("10%") == pytest.approx(0.10)
    assert parse_tolerance("0.2") == pytest.approx(0.2)
    for bad in ("12p", "0x5", "tall"):
        with pytest.raises(UserError):
            parse_size(bad)
    with pytest.raises(UserError):
        parse_tolerance("ten")


KEY = "amd-epyc-2c-onnxruntime-1.22.0"
CASE = "uffn-tiny/onnxruntime/int8/360x640/routed"
STAGES = {"router": 1.0, "trunk": 20.0, "branch": 30.0, "copies": 0.2, "total": 52.0}


def _rounds(ms: float, rounds: int, spread: float, seed: int, frames: int = 10) -> list[list[float]]:
    """`rounds` rounds of `frames` samples around `ms`: each round shifted by a load factor drawn from
    [1, 1 + spread] (a shared machine's load changes between rounds), frames jittered by 2 %."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        load = 1.0 + spread * rng.random()
        out.append([ms * load * (1.0 + 0.02 * rng.standard_normal()) for _ in range(frames)])
    return out


def _payload(
    key: str = KEY, *, factor: float = 1.0, spread: float = 0.0, seed: int = 0, rounds: int = 10,
    threads: int | None = 2, **stage_ms: float,
) -> dict:  # fmt: skip
    stages = {**STAGES, **stage_ms}
    return {
        "format": FORMAT,
        "device": {"key": key, "threads": threads},
        "cases": [
            {
                "id": CASE,
                "rounds": {
                    k: _rounds(v * factor, rounds, spread, seed + i)
                    for i, (k, v) in enumerate(stages.items())
                },
            }
        ],
    }


def test_ratio_of_medians_interval_is_seeded_and_covers_the_true_ratio():
    rng = np.random.default_rng(1)
    base = list(10 + rng.random(12))
    now = [x * 1.5 for x in base]
    est = ratio_of_medians(base, now)
    assert est == ratio_of_medians(base, now)  # deterministic: the same samples, the same interval
    assert est.ratio == pytest.approx(1.5) and est.low <= 1.5 <= est.high
    assert est.verdict(0.10) == REGRESSED
    assert ratio_of_medians(base, base).verdict(0.10) == UNCHANGED
    wide = ratio_of_medians([10, 10, 10, 30], [11, 11, 13, 30])
    assert wide.verdict(0.10) == INCONCLUSIVE  # too few, too spread rounds to decide either way
    narrow = ratio_of_medians(base, now, confidence=0.5)
    assert est.low <= narrow.low <= narrow.high <= est.high


def test_comparator_flags_a_planted_30_percent_regression_among_noisy_rounds_and_names_the_stage():
    base = _payload(spread=0.15, seed=0)
    now = _payload(spread=0.15, seed=100, branch=39.0, total=61.0)  # branch x1.3, total x1.17
    result = compare(now, base, tolerance=0.10)
    assert result.verdict == REGRESSED and not result.ok
    assert "branch" in {c.stage for c in result.regressions}
    assert {"router", "trunk"}.isdisjoint(c.stage for c in result.regressions)
    assert any("branch" in line and "regressed" in line for line in result.lines())
    assert result.lines()[-1].startswith(f"regressed beyond 10%: {CASE} branch x1.")


def test_noisy_unchanged_runs_are_never_a_regression():
    """Twenty pairs of unchanged runs, each round slowed by up to 25 % of load at random: no false alarm."""
    verdicts = [
        compare(_payload(spread=0.25, seed=s), _payload(spread=0.25, seed=1000 + s)).verdict
        for s in range(20)
    ]
    assert REGRESSED not in verdicts
    quiet = [
        compare(_payload(spread=0.05, seed=s), _payload(spread=0.05, seed=1000 + s)).verdict
        for s in range(20)
    ]
    assert quiet == [UNCHANGED] * 20  # with little noise the interval is narrow enough to say so


def test_a_1_3x_slowdown_is_caught_every_time_despite_the_noise():
    verdicts = [
        compare(_payload(factor=1.3, spread=0.10, seed=s), _payload(spread=0.10, seed=1000 + s)).verdict
        for s in range(20)
    ]
    assert verdicts == [REGRESSED] * 20


def test_too_few_noisy_rounds_are_inconclusive_not_a_verdict():
    result = compare(
        _payload(factor=1.12, spread=0.4, rounds=3, seed=1), _payload(spread=0.4, rounds=3, seed=2)
    )
    assert result.verdict == INCONCLUSIVE and result.ok
    assert "run more --rounds" in result.summary()


def test_a_slowdown_while_the_machine_was_much_busier_is_inconclusive_not_regressed():
    base, now = _payload(), _payload(factor=1.5)
    base["device"]["cores"] = now["device"]["cores"] = 2
    base["cases"][0]["load"] = [0.5] * 10
    now["cases"][0]["load"] = [1.5] * 10  # one busy process more: a slowdown to catch
    assert compare(now, base).verdict == REGRESSED
    now["cases"][0]["load"] = [9.0] * 10  # a machine saturated by others: not the code's to judge
    result = compare(now, base)
    assert result.verdict == INCONCLUSIVE and result.machine_busier
    assert "the machine ran 9.0 other runnable tasks during this run against 0.5" in result.summary()
    assert compare(now, base, max_extra_load=10).verdict == REGRESSED


def test_judging_cpu_time_over_the_reference_ignores_a_busier_machine_and_catches_more_work():
    """--judge cpu: the wall-clock stages doubled by other processes' load are not judged; the CPU time per
    frame is, each round's over the reference workload's CPU time in that round. A busier machine inflates
    both (caches, memory bandwidth: x1.12-1.20 here, which judged alone would be a false alarm): unchanged;
    30 % more work: regressed, however much busier the machine was (no load guard for this judge). A GPU run,
    or a baseline without CPU time or the reference, is a one-line refusal."""
    rng = np.random.default_rng(5)
    quiet, contended = list(1 + 0.02 * rng.random(10)), list(1.12 + 0.08 * rng.random(10))

    def payload(factors: list[float], work: float, wall: float, load: float) -> dict:
        p = _payload(factor=wall, spread=0.4 if wall > 1 else 0.05, seed=7, threads=1)
        p["device"] |= {"kind": "cpu", "cores": 2}
        p["cases"][0]["rounds"] |= {
            "cpu": _machine(factors, 40.0 * work, 8),
            "reference_cpu": _machine(factors, 8.0, 9),
        }
        p["cases"][0]["load"] = [load] * 10
        return p

    base = payload(quiet, 1.0, 1.0, 1.0)
    busy = payload(contended, 1.0, 2.0, 12.0)  # every wall stage x2 and spread by the load
    more_work = payload(contended, 1.3, 2.0, 12.0)
    assert compare(busy, base).verdict != UNCHANGED  # wall-clock: the load shows
    result = compare(busy, base, judge="cpu")
    assert result.verdict == UNCHANGED and [c.stage for c in result.checks] == ["cpu"]
    assert result.max_extra_load is None and not result.machine_busier
    raw = ratio_of_medians(
        [float(np.median(r)) for r in base["cases"][0]["rounds"]["cpu"]],
        [float(np.median(r)) for r in busy["cases"][0]["rounds"]["cpu"]],
    )
    assert raw.verdict(0.10) == REGRESSED  # the CPU time alone: a false alarm
    caught = compare(more_work, base, judge="cpu")
    assert caught.verdict == REGRESSED and 1.25 < caught.checks[0].ratio < 1.35
    gpu = _payload(cpu=40.0)
    gpu["device"]["kind"] = "gpu"
    with pytest.raises(UserError, match="--judge cpu compares the process's CPU work"):
        compare(gpu, _payload(cpu=40.0), judge="cpu")
    for missing in ("cpu", "reference_cpu"):
        old = copy.deepcopy(base)
        del old["cases"][0]["rounds"][missing]
        with pytest.raises(UserError, match="needs a baseline recorded with --reference"):
            compare(busy, old, judge="cpu")
    with pytest.raises(UserError, match="unknown judge"):
        compare(busy, base, judge="energy")


def test_judging_cpu_time_takes_each_rounds_mean_by_default():
    """A round of mixed frames (clean, haze, rain, snow): its p50 is one frame of one kind, its mean the round's
    work per frame. --judge cpu defaults to the mean, so 30 % more work on the heavy frames is regressed,
    where the p50 (the haze frame, untouched) would call it unchanged."""
    rng = np.random.default_rng(2)

    def payload(heavy: float) -> dict:
        p = _payload(threads=1)
        p["device"]["kind"] = "cpu"
        frames = [5.0, 5.0, 12.0, 65.0 * heavy, 65.0 * heavy]
        p["cases"][0]["rounds"] |= {
            "cpu": [[x * (1 + 0.02 * rng.standard_normal()) for x in frames] for _ in range(10)],
            "reference_cpu": [list(8.0 * (1 + 0.02 * rng.standard_normal(5))) for _ in range(10)],
        }
        return p

    base, heavier = payload(1.0), payload(1.3)
    result = compare(heavier, base, judge="cpu")
    assert result.stat == "mean" and result.verdict == REGRESSED and "per-round mean" in result.lines()[0]
    assert compare(heavier, base, stat="p50", judge="cpu").verdict == UNCHANGED
    assert compare(heavier, base).stat == "p50"  # the wall judge keeps the p50


@pytest.mark.parametrize("judge", ["cpu", "relative"])
def test_judging_against_the_reference_needs_one_intra_op_thread_in_the_baseline_and_the_run(judge):
    """At two threads a frame's CPU time also holds the threads' waiting for each other, and a frame and the
    reference wait for their workers differently, both changed by the machine's load: --judge cpu and
    --judge relative refuse it, in one line, whichever side ran more than one thread; and a GPU run."""
    one = _payload(cpu=40.0, reference=10.0, reference_cpu=8.0, threads=1)
    one["device"]["kind"] = "cpu"
    assert compare(one, copy.deepcopy(one), judge=judge).verdict == UNCHANGED
    for base_threads, now_threads, named in [
        (2, 1, "the baseline 2"),
        (1, 2, "this run 2"),
        (None, 1, "unknown"),
    ]:
        base, now = copy.deepcopy(one), copy.deepcopy(one)
        base["device"]["threads"], now["device"]["threads"] = base_threads, now_threads
        with pytest.raises(UserError, match=f"--judge {judge} needs --threads 1") as e:
            compare(now, base, judge=judge)
        assert named in str(e.value) and "\n" not in str(e.value)
    gpu = copy.deepcopy(one)
    gpu["device"]["kind"] = "gpu"
    with pytest.raises(UserError, match="says nothing of a GPU's"):
        compare(gpu, copy.deepcopy(one), judge=judge)
    two = _payload(cpu=40.0, threads=2)
    two["device"]["kind"] = "cpu"
    assert compare(two, copy.deepcopy(two)).verdict == UNCHANGED  # the wall judge takes any thread count


def _machine(factors: list[float], ms: float, seed: int) -> list[list[float]]:
    """Rounds of 5 frames around `ms`, each round scaled by that round's machine slowdown, jittered 2 %."""
    rng = np.random.default_rng(seed)
    return [list(ms * f * (1 + 0.02 * rng.standard_normal(5))) for f in factors]


def test_judging_relative_to_the_reference_cancels_a_slower_machine_and_catches_slower_code():
    """--judge relative: a round's frames and the reference workload timed beside them slow down together
    when the machine does (a hog: wall-clock x1.5-2.5, unchanged relative to the reference), while slower
    code slows the frames alone (x1.3: regressed, even on the slower machine, and with no load guard). A stage
    under a millisecond is not judged relative to it. Without a reference in the baseline or the run: a
    one-line refusal."""
    rng = np.random.default_rng(3)
    quiet, busy = list(1 + 0.1 * rng.random(10)), list(1.5 + rng.random(10))

    def payload(factors: list[float], code: float = 1.0) -> dict:
        p = _payload(threads=1)
        p["device"]["kind"] = "cpu"
        p["cases"][0]["rounds"] = {
            "total": _machine(factors, 52.0 * code, 1),
            "reference": _machine(factors, 10.0, 2),
        }
        return p

    base, hog, slower = payload(quiet), payload(busy), payload(busy, code=1.3)
    assert compare(hog, base).verdict == REGRESSED  # the wall clock sees the hog
    result = compare(hog, base, judge="relative")
    assert result.verdict == UNCHANGED and [c.stage for c in result.checks] == ["total"]
    assert "over the reference workload's in the same round" in result.lines()[0]
    caught = compare(slower, base, judge="relative")
    assert (
        caught.verdict == REGRESSED
        and 1.2 < caught.checks[0].estimate.low < 1.3 < caught.checks[0].estimate.high
    )
    assert compare(payload(quiet, code=1.3), base, judge="relative").verdict == REGRESSED
    copies = copy.deepcopy(hog)  # a 0.2 ms stage 1.5x slower: judged by wall clock, too short to be relative
    base["cases"][0]["rounds"]["copies"] = _machine(quiet, 0.2, 3)
    copies["cases"][0]["rounds"]["copies"] = _machine(quiet, 0.3, 3)
    assert "copies" in {c.stage for c in compare(copies, base).regressions}
    assert compare(copies, base, judge="relative").verdict == UNCHANGED
    base["cases"][0]["load"], slower["cases"][0]["load"] = [1.0] * 10, [12.0] * 10
    assert compare(slower, base).verdict == INCONCLUSIVE  # the wall judge's load guard
    assert compare(slower, base, judge="relative").verdict == REGRESSED  # none here: the reference carries it
    plain = _payload(threads=1)
    plain["device"]["kind"] = "cpu"
    with pytest.raises(UserError, match="needs a baseline recorded with --reference"):
        compare(hog, plain, judge="relative")
    with pytest.raises(UserError, match="this run holds no reference rounds"):
        compare(plain, base, judge="relative")


def test_runnable_others_reads_the_machine_load():
    busy = runnable_others()
    assert busy is None or busy >= 0


def test_comparator_passes_a_2_percent_slow_down_and_ignores_microsecond_stages():
    base = _payload(copies=0.01)
    now = _payload(branch=30.6, total=53.0, copies=0.03)  # copies tripled, but below min_ms
    result = compare(now, base, tolerance=0.10)
    assert result.verdict == UNCHANGED
    assert "copies" not in {c.stage for c in result.checks}
    assert {c.stage for c in result.checks} == {"router", "trunk", "branch", "total"}


def test_fewer_threads_than_the_baseline_is_a_regression_not_another_device():
    result = compare(_payload(threads=1), _payload(threads=2))
    assert result.verdict == REGRESSED
    assert result.summary().startswith("regressed beyond 10%: intra-op threads 2 -> 1")
    assert compare(_payload(threads=4), _payload(threads=2)).verdict == UNCHANGED


def test_device_key_mismatch_refuses_to_compare(tmp_path):
    jetson = _payload(key="orin-sm87-8c-tensorrt-10.3.0")
    with pytest.raises(DeviceMismatch, match="not comparable"):
        compare(_payload(), jetson)
    (tmp_path / "orin-sm87-8c-tensorrt-10.3.0.json").write_text(json.dumps(jetson))
    with pytest.raises(DeviceMismatch, match="no baseline for this device"):
        resolve_baseline(tmp_path, KEY)
    assert resolve_baseline(tmp_path, "orin-sm87-8c-tensorrt-10.3.0").name.startswith("orin")


def test_comparator_refuses_runs_without_a_common_case():
    other = _payload()
    other["cases"][0]["id"] = "uffn-tiny/onnxruntime/fp32/720x1280/routed"
    with pytest.raises(UserError, match="no case in common"):
        compare(_payload(), other)
    with pytest.raises(UserError, match="no case in common"):
        check_shared_cases(other, [CASE])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["device"].pop("key"), "has no device key"),
        (lambda d: d["device"].update(threads="two"), "records threads 'two'"),
        (lambda d: d["cases"][0]["rounds"]["total"][0].__setitem__(3, "fast"), "holds 'fast', not a number"),
        (lambda d: d["cases"][0]["rounds"]["total"][0].__setitem__(3, float("nan")), "not a finite"),
        (lambda d: d["cases"][0].pop("rounds"), "no per-round samples"),
        (lambda d: d["cases"][0]["rounds"].__setitem__("total", []), "has no rounds"),
        (lambda d: d.__setitem__("cases", []), "holds no cases"),
    ],
)
def test_malformed_baselines_are_one_line_errors(damage, message):
    bad = _payload()
    damage(bad)
    with pytest.raises(UserError, match=message) as info:
        validate_report(bad, "baseline b.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("baseline b.json")


def test_save_baseline_destination_treats_new_folders_as_folders(tmp_path):
    assert baseline_destination("", KEY) == DEFAULT_BASELINE_DIR / f"{KEY}.json"
    assert baseline_destination(f"{tmp_path}/newdir/", KEY) == tmp_path / "newdir" / f"{KEY}.json"
    assert baseline_destination(str(tmp_path / "newdir"), KEY) == tmp_path / "newdir" / f"{KEY}.json"
    assert baseline_destination(str(tmp_path / "mine.json"), KEY) == tmp_path / "mine.json"


def test_device_key_separates_hardware_runtime_and_version_but_not_threads():
    a = BenchDevice("cpu", "Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz", 2, "onnxruntime", "1.22.0", 2)
    assert a.key == "intel-xeon-platinum-8272cl-2c-onnxruntime-1.22.0"
    assert BenchDevice("cpu", a.name, 2, "onnxruntime", "1.22.0", 1).key == a.key
    keys = {
        a.key,
        BenchDevice("cpu", a.name, 4, "onnxruntime", "1.22.0", 2).key,
        BenchDevice("cpu", a.name, 2, "onnxruntime", "1.23.0", 2).key,
        BenchDevice("gpu", "Orin", 8, "tensorrt", "10.3.0", None, "8.7").key,
    }
    assert len(keys) == 4
    assert BenchDevice.from_dict(a.to_dict()) == a


def test_rounds_split_the_frames_and_are_interleaved_across_cases(synthetic_bundle):
    from edgerestore.runtime.restorer import Restorer

    assert round_sizes(10, 3) == [4, 3, 3]
    with pytest.raises(UserError, match="--rounds 5 must be between 1 and --frames"):
        round_sizes(4, 5)
    order = []
    with Restorer.open(synthetic_bundle, threads=1) as r:
        timers = [CaseTimer(r, size, condition="rain") for size in [(32, 48), (48, 64)]]
        for t in timers:
            original = t.round
            t.round = lambda n, bar=None, t=t, original=original: (order.append(t.size), original(n, bar))
        cases = bench_cases(timers, frames=6, warmup=1, rounds=3)
    assert order == [(32, 48), (48, 64)] * 3
    for c in cases:
        assert c.frames == 6 and [len(r) for r in c.rounds["total"]] == [2, 2, 2]
        assert c.samples["total"] == [x for r in c.rounds["total"] for x in r]
        back = CaseResult.from_dict(c.to_dict()).rounds["total"]
        assert np.allclose(back, c.rounds["total"], atol=1e-4)


@pytest.fixture
def synthetic_bundle(tmp_path):
    from edgerestore.testing import write_bundle

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
        "--rounds",
        "4",
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
    assert "samples" not in stored["cases"][0] and len(stored["cases"][0]["rounds"]["total"]) == 4

    # the same device against a baseline that was 20x faster on every stage: exit 1, stages named
    fast = copy.deepcopy(stored)
    for rounds in fast["cases"][0]["rounds"].values():
        for r in rounds:
            r[:] = [x / 20 for x in r]
    fast["cases"][0]["load"] = []  # no load recorded: the machine-load guard stays out of this check
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
    assert not (tmp_path / "c" / "bench.json").exists()  # refused before timing

    # malformed or disjoint baselines: refused in one line before any frame is timed
    broken = copy.deepcopy(stored)
    broken["cases"][0]["rounds"]["total"][0][0] = "n/a"
    disjoint = copy.deepcopy(stored)
    disjoint["cases"][0]["id"] = disjoint["cases"][0]["id"].replace("48x64", "96x128")
    keyless = copy.deepcopy(stored)
    del keyless["device"]["key"]
    for name, payload, message in [
        ("broken", broken, "holds 'n/a', not a number"),
        ("disjoint", disjoint, "no case in common"),
        ("keyless", keyless, "has no device key"),
    ]:
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
        out = tmp_path / f"out-{name}"
        assert main([*common, "--out", str(out), "--compare", str(tmp_path / f"{name}.json")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "None" not in err
        assert not (out / "bench.json").exists()

    # --judge cpu and --judge relative: refused before timing against a baseline recorded without
    # --reference; with one, the reference workload is timed after every frame (its rounds beside the
    # frames'), and each judge divides by it: cpu judges only the CPU time, and 20x less CPU in the baseline
    # (the reference's the same) is a regression
    assert len(stored["cases"][0]["rounds"]["cpu"]) == 4 and report["cases"][0]["stages"]["cpu"]["n"] == 8
    assert "reference" not in stored["cases"][0]["rounds"]
    (base / f"{key}.json").write_text(json.dumps(stored))
    for judge in ("cpu", "relative"):
        out = tmp_path / f"no-ref-{judge}"
        assert main([*common, "--out", str(out), "--compare", str(base), "--judge", judge]) == 2
        err = capsys.readouterr().err.strip()
        assert "needs a baseline recorded with --reference" in err and len(err.splitlines()) == 1
        assert not (out / "bench.json").exists()
    assert common[-2:] == ["--threads", "1"]
    two = [*common[:-1], "2"]  # a baseline the judge would refuse: refused before timing, not recorded
    assert main([*two, "--out", str(tmp_path / "r0"), "--judge", "cpu", "--save-baseline", str(base)]) == 2
    assert "--judge cpu needs --threads 1" in capsys.readouterr().err
    assert not (tmp_path / "r0" / "bench.json").exists()
    assert main([*common, "--out", str(tmp_path / "r1"), "--reference", "--save-baseline", str(base)]) == 0
    with_ref = json.loads((tmp_path / "r1" / "bench.json").read_text())
    rounds = with_ref["cases"][0]["rounds"]
    assert [len(r) for r in rounds["reference"]] == [len(r) for r in rounds["total"]] == [2, 2, 2, 2]
    assert [len(r) for r in rounds["reference_cpu"]] == [2, 2, 2, 2] and with_ref["settings"]["reference"]
    assert "| reference |" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "e"), "--compare", str(base), "--judge", "cpu"]) in (0, 1)
    out = capsys.readouterr().out
    assert "| cpu |" in out and "| total |" in out  # the table shows both; compare judged only cpu
    judged = out.split("compare (")[1]
    assert "| cpu |" in judged and "| total |" not in judged and "over the reference workload's" in judged
    relative = ["--compare", str(base), "--judge", "relative"]
    code = main(
        [*common, "--out", str(tmp_path / "r3"), *relative]
    )  # the tiny graphs: about its 1 ms default
    got = capsys.readouterr()
    assert (
        code in (0, 1)
        and "over the reference workload's" in got.out
        or code == 2
        and "nothing to judge" in got.err
    )
    code = main([*common, "--out", str(tmp_path / "r2"), *relative, "--min-ms", "0"])
    out = capsys.readouterr().out
    assert code in (0, 1) and "| total |" in out.split("compare (")[1]
    less_cpu = json.loads((base / f"{key}.json").read_text())
    less_cpu["cases"][0]["rounds"]["cpu"] = [
        [x / 20 for x in r] for r in less_cpu["cases"][0]["rounds"]["cpu"]
    ]
    (base / f"{key}.json").write_text(json.dumps(less_cpu))
    argv = [*common, "--out", str(tmp_path / "f"), "--compare", str(base), "--judge", "cpu", "--min-ms", "0"]
    assert main(argv) == 1

    # --save-baseline into a folder that does not exist yet: <folder>/<device-key>.json
    assert main([*common, "--out", str(tmp_path / "d"), "--save-baseline", f"{tmp_path}/newdir/"]) == 0
    assert (tmp_path / "newdir" / f"{key}.json").is_file()


def test_pipeline_measurement_reports_throughput_and_capture_to_display(synthetic_bundle):
    from edgerestore.runtime.restorer import Restorer

    with Restorer.open(synthetic_bundle, threads=1) as r:
        pb = measure_pipeline(r, (48, 64), frames=12, warmup=1, condition="haze", camera_fps=200)
    d = pb.to_dict()
    assert pb.model_ms.n == 12 and pb.capture_to_display_ms.n >= 1
    assert pb.throughput_fps > 0 and np.isfinite(d["overhead"]) and d["latency_ratio"] > 0
    assert 0 < d["model_busy"] <= 1.1  # one frame in flight on ONNX Runtime: about 1 at most
    assert pb.capture_to_display_ms.mean >= pb.model_ms_paced.p50 * 0.5  # capture precedes display


def test_sweep_writes_a_heatmap_png_and_a_csv_at_tiny_sizes(tmp_path):
    torch = pytest.importorskip("torch")
    from edgerestore.measure.studies import sweep_cmudrn
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

    from edgerestore.cli import main

    (tmp_path / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"frames/{i}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    pools = []
    real = CaseTimer.__init__

    def spy(self, *args, **kwargs):
        pools.append(kwargs.get("pool"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(CaseTimer, "__init__", spy)
    args = ["bench", "--bundle", str(synthetic_bundle), "--sizes", "48x64", "--frames", "4", "--warmup", "0"]
    assert (
        main([*args, "--input", f"file://{tmp_path}/frames", "--out", str(tmp_path / "b"), "--no-plot"]) == 0
    )
    (pool,) = pools
    assert [c for c, _ in pool] == ["input"] * 3 and all(f.shape == (48, 64, 3) for _, f in pool)
    assert [int(f[24, 32, 0]) for _, f in pool] == [0, 50, 100]
    assert main([*args, "--input", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "c")]) == 2
    assert "unknown source" in capsys.readouterr().err


def test_bench_models_and_bundles_come_from_the_pipeline_untrained_only_where_no_weights_exist(
    tmp_path, monkeypatch
):
    """`pipeline.load_model` / `ensure_bundle(untrained=True)` are the bench's one source of models and
    bundles: a profile with no checkpoint (and no shipped graphs) is exported once from seed-0 weights; a named
    checkpoint that is missing is still an error."""
    pytest.importorskip("torch")
    from edgerestore import pipeline
    from edgerestore.errors import UserError

    monkeypatch.chdir(tmp_path)  # no weights/ here
    model, meta, source = pipeline.load_model("uffn-tiny")
    assert meta == {} and source.startswith("untrained uffn-tiny (seed 0") and not model.training
    with pytest.raises(UserError, match="not found"):
        pipeline.load_model("uffn-tiny", tmp_path / "missing.pt")
    notes = []
    common = {"export_root": tmp_path / "export", "engines_root": tmp_path / "engines", "progress": False}
    result = pipeline.ensure_bundle(
        "uffn-base", "fp32", "onnxruntime", echo=notes.append, untrained=True, **common
    )
    assert result.bundle == tmp_path / "engines" / "uffn-base-onnxruntime-fp32" and result.ran == [
        "export",
        "build",
    ]
    assert any("untrained uffn-base" in n for n in notes)
    again = pipeline.ensure_bundle(
        "uffn-base", "fp32", "onnxruntime", echo=notes.append, untrained=True, **common
    )
    assert again.ran == []  # exported once, then reused
    with pytest.raises(UserError, match="no weights for uffn-base"):
        pipeline.ensure_bundle("uffn-base", "fp32", "onnxruntime", echo=notes.append, **common)
    with pytest.raises(UserError):
        pipeline.ensure_bundle(
            "uffn-base", "fp32", "onnxruntime", checkpoint=tmp_path / "missing.pt", untrained=True, **common
        )


def test_the_pytorch_column_runs_the_forced_branch_like_the_runtime():
    """`restorers.model_restorer(force=...)`: the branch alone at its resolution (`UFFN.restore`), no routing;
    a forced clean frame passes through."""
    torch = pytest.importorskip("torch")
    from edgerestore.models import zoo
    from edgerestore.restorers import model_restorer

    torch.manual_seed(0)
    model = zoo.build("uffn-tiny").eval()
    frame = np.random.default_rng(0).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    image, condition, probs = model_restorer(model, force="snow")(frame)
    x = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1))).float()[None] / 255
    with torch.inference_mode():
        want = (
            model.restore(x, "snow")[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        )
    assert condition == "snow" and probs is None and np.array_equal(image, want[:, :, ::-1])
    assert model_restorer(model, force="clean")(frame)[0] is frame
