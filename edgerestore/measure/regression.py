"""Baselines and the regression compare.

A report records the device it ran on as a device key (`edgerestore.measure.device`). A baseline is only
ever compared with a run of the same key (`compare` refuses otherwise), so a baseline from another machine
cannot pass or fail a run by accident; a run with fewer threads than its baseline is a regression.
`compare` judges each stage by the ratio of the median round statistic (now / baseline) with a bootstrap
confidence interval over rounds (`edgerestore.measure.stats`): regressed when the whole interval lies above
1 + tolerance, unchanged when it lies below, inconclusive otherwise; the judges `cpu` and `relative` first
divide each round's statistic by the reference workload's in the same round (`edgerestore.measure.reference`).
A baseline is validated before any frame is timed (`validate_report`, `check_device`, `check_shared_cases`,
`check_judge`).

Never torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.errors import UserError
from edgerestore.measure.cases import CPU_STAGE, REFERENCE_CPU_STAGE, REFERENCE_STAGE, REPORT_STAGES
from edgerestore.measure.report import check_format
from edgerestore.measure.stats import (
    INCONCLUSIVE,
    REGRESSED,
    STATS,
    UNCHANGED,
    RatioEstimate,
    ratio_of_medians,
    round_stat,
)

DEFAULT_BASELINE_DIR = Path("benchmarks") / "baselines"
#: Stages faster than this in the baseline are not judged (a 20 % change of 10 µs is timer noise).
DEFAULT_MIN_MS = 0.05
#: `--judge relative` judges no stage faster than this in the baseline: a sub-millisecond stage (the memory
#: copies) does not follow a compute-bound reference, and the reference run between frames changes its cache
#: state (copies, 0.05 ms at 360p: 1.5x [1.4, 1.7] over the reference in 2 of the first 4 unchanged runs here).
RELATIVE_MIN_MS = 1.0


class DeviceMismatch(UserError):
    """A baseline recorded under another device key."""


def baseline_path(device_key: str, root: str | Path = DEFAULT_BASELINE_DIR) -> Path:
    """`<root>/<device-key>.json`: where this device's baseline lives."""
    return Path(root) / f"{device_key}.json"


def resolve_baseline(arg: str | Path, device_key: str) -> Path:
    """`--compare` accepts a baseline file, or a folder of baselines (then `<folder>/<device-key>.json`)."""
    p = Path(arg)
    if p.is_dir():
        found = baseline_path(device_key, p)
        if not found.is_file():
            others = sorted(q.stem for q in p.glob("*.json"))
            raise DeviceMismatch(
                f"no baseline for this device ({device_key}) in {p} (it holds: {', '.join(others) or 'none'}); "
                f"record one here with --save-baseline"
            )
        return found
    return p


#: What `compare` judges: the wall-clock stages (`REPORT_STAGES`), the process's CPU time per frame, or the
#: wall-clock stages over the reference workload's wall-clock time in the same round.
JUDGES: tuple[str, ...] = ("wall", "cpu", "relative")


@dataclass(frozen=True)
class StageCheck:
    case: str
    stage: str
    baseline_ms: float  # median over the baseline's rounds of the round statistic
    current_ms: float
    estimate: RatioEstimate
    verdict: str
    rounds: tuple[int, int]  # (baseline, current)

    @property
    def ratio(self) -> float:
        return self.estimate.ratio

    @property
    def regressed(self) -> bool:
        return self.verdict == REGRESSED


@dataclass
class Comparison:
    device_key: str
    stat: str
    tolerance: float
    checks: list[StageCheck]
    missing: list[str]  # baseline cases this run did not measure
    new: list[str]  # cases this run measured that the baseline lacks
    confidence: float = 0.95
    threads: tuple[int | None, int | None] = (None, None)  # (baseline, current) intra-op threads
    load: tuple[float | None, float | None] = (None, None)  # (baseline, current) median other runnable tasks
    max_extra_load: float | None = None  # more extra load than this: a slowdown is not the code's to judge
    judge: str = "wall"

    @property
    def machine_busier(self) -> bool:
        """Other tasks kept the machine busier during this run than during the baseline's, by more than
        `max_extra_load` runnable tasks: wall-clock times are then not comparable (a shared machine)."""
        base, now = self.load
        return None not in (base, now, self.max_extra_load) and now - base > self.max_extra_load

    @property
    def threads_dropped(self) -> bool:
        base, now = self.threads
        return base is not None and now is not None and now < base

    @property
    def regressions(self) -> list[StageCheck]:
        return [c for c in self.checks if c.regressed]

    @property
    def inconclusive(self) -> list[StageCheck]:
        return [c for c in self.checks if c.verdict == INCONCLUSIVE]

    @property
    def verdict(self) -> str:
        if self.regressions or self.threads_dropped:
            return REGRESSED
        return INCONCLUSIVE if self.inconclusive else UNCHANGED

    @property
    def ok(self) -> bool:
        return self.verdict != REGRESSED

    def summary(self) -> str:
        """One line: what regressed (stages with their ratio and interval), or why it is inconclusive."""
        if self.verdict == INCONCLUSIVE and self.machine_busier:
            base, now = self.load
            slower = ", ".join(f"{c.case} {c.stage} x{c.ratio:.2f}" for c in self.inconclusive)
            return (
                f"inconclusive: the machine ran {now:.1f} other runnable tasks during this run against "
                f"{base:.1f} for the baseline (more than {self.max_extra_load:g} extra), so a slowdown "
                f"({slower}) cannot be told from the load; run again when it is quieter"
            )
        if self.verdict == REGRESSED:
            named = [
                f"{c.case} {c.stage} x{c.ratio:.2f} [{c.estimate.low:.2f}, {c.estimate.high:.2f}]"
                for c in self.regressions
            ]
            if self.threads_dropped:
                named.insert(0, f"intra-op threads {self.threads[0]} -> {self.threads[1]}")
            return f"regressed beyond {self.tolerance:.0%}: {', '.join(named)}"
        if self.verdict == INCONCLUSIVE:
            named = ", ".join(
                f"{c.case} {c.stage} x{c.ratio:.2f} [{c.estimate.low:.2f}, {c.estimate.high:.2f}]"
                for c in self.inconclusive
            )
            return (
                f"inconclusive: the {self.confidence:.0%} interval straddles {1 + self.tolerance:.2f} for "
                f"{named}; run more --rounds (or on a quieter machine) to decide"
            )
        return f"unchanged: every stage's {self.confidence:.0%} interval lies within {self.tolerance:.0%}"

    def lines(self) -> list[str]:
        per_round = f"per-round {self.stat}"
        if self.judge in REFERENCE_OF:
            per_round += " over the reference workload's in the same round (ratio of those; ms as measured)"
        out = [
            f"compare (median of {per_round}, {self.confidence:.0%} bootstrap interval of the ratio, "
            f"tolerance {self.tolerance:.0%}) on {self.device_key}:",
            "| case | stage | rounds | baseline ms | now ms | ratio | interval | verdict |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
        for c in self.checks:
            out.append(
                f"| {c.case} | {c.stage} | {c.rounds[0]}/{c.rounds[1]} | {c.baseline_ms:.3f} | "
                f"{c.current_ms:.3f} | {c.ratio:.2f} | [{c.estimate.low:.2f}, {c.estimate.high:.2f}] | "
                f"{c.verdict} |"
            )
        base, now = self.threads
        if base != now:
            out.append(f"intra-op threads: baseline {base}, this run {now}")
        base_load, now_load = self.load
        if base_load is not None and now_load is not None:
            out.append(
                f"machine load (other runnable tasks, median): baseline {base_load:.1f}, this run {now_load:.1f}"
            )
        if self.missing:
            out.append(f"not measured in this run (in the baseline): {', '.join(self.missing)}")
        if self.new:
            out.append(f"not in the baseline (not compared): {', '.join(self.new)}")
        out.append(self.summary())
        return out


def _bad(what: str, why: str) -> UserError:
    return UserError(f"{what} {why}; record it again with `edgerestore bench ... --save-baseline`")


def _number_rounds(value: Any, what: str) -> list[list[float]]:
    """A stage's rounds as lists of finite, non-negative floats, or a one-line `UserError`."""
    if not isinstance(value, list) or not value:
        raise _bad(what, "has no rounds")
    out = []
    for r in value:
        if not isinstance(r, list) or not r:
            raise _bad(what, "has an empty or malformed round")
        try:
            floats = [float(x) for x in r if not isinstance(x, bool)]
        except (TypeError, ValueError):
            bad = next(x for x in r if not isinstance(x, (int, float)))
            raise _bad(what, f"holds {bad!r}, not a number of milliseconds") from None
        if len(floats) != len(r) or not all(math.isfinite(x) and x >= 0 for x in floats):
            raise _bad(what, "holds a value that is not a finite, non-negative number of milliseconds")
        out.append(floats)
    return out


def validate_report(d: Any, what: str) -> dict[str, Any]:
    """Everything `compare` reads from a bench JSON, checked up front (before any timing): the format, a
    device key, the thread count, and cases with ids and numeric per-round samples. Returns `d`."""
    check_format(d, what)
    device = d.get("device")
    if not isinstance(device, Mapping) or not isinstance(device.get("key"), str) or not device["key"]:
        raise _bad(what, "has no device key")
    threads = device.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise _bad(what, f"records threads {threads!r}, not a count")
    cases = d.get("cases")
    if not isinstance(cases, list) or not cases:
        raise _bad(what, "holds no cases")
    for c in cases:
        if not isinstance(c, Mapping) or not isinstance(c.get("id"), str):
            raise _bad(what, "holds a case without an id")
        rounds = c.get("rounds")
        if not isinstance(rounds, Mapping) or not rounds:
            raise _bad(what, f"case {c['id']} has no per-round samples (an older bench format)")
        for stage, value in rounds.items():
            _number_rounds(value, f"{what} case {c['id']} stage {stage}")
        if c.get("load"):
            _number_rounds([c["load"]], f"{what} case {c['id']} load")
    return dict(d)


def check_device(baseline: Mapping[str, Any], device_key: str) -> None:
    """Raise `DeviceMismatch` (one line) unless `baseline` was recorded under `device_key`."""
    key_base = (baseline.get("device") or {}).get("key")
    if not key_base:
        raise DeviceMismatch("the baseline has no device key; record it again with --save-baseline")
    if key_base != device_key:
        raise DeviceMismatch(
            f"baseline was recorded on {key_base}, this run is {device_key}: not comparable; record a baseline "
            f"on this device (--save-baseline) and compare against {DEFAULT_BASELINE_DIR}/{device_key}.json"
        )


def check_shared_cases(baseline: Mapping[str, Any], planned: Sequence[str]) -> None:
    """Before timing: `UserError` unless the run about to start measures a case of the baseline."""
    base_ids = [c["id"] for c in baseline.get("cases") or []]
    if not set(base_ids) & set(planned):
        raise UserError(
            f"the baseline measured {', '.join(base_ids) or 'nothing'} and this run would measure "
            f"{', '.join(planned) or 'nothing'}: no case in common; run the baseline's sizes, bundles and "
            "--condition"
        )


#: The intra-op threads `--judge cpu` and `--judge relative` need in the baseline and the run (`WHY_ONE_THREAD`).
JUDGE_THREADS = 1
#: Why, per judge, measured on this 2-core machine (uffn-tiny int8, 360p). cpu: a frame's CPU time at more
#: threads is not its work, it also holds the threads' waiting for each other, which grows with the machine's
#: load (a rain frame, median of 10: 64-65 ms of CPU at one thread whether the machine was otherwise idle or
#: ran a busy or a memory-bound process beside it; 66, 75 and 72 ms at two). relative: at more threads a
#: frame (many short parallel sections) and the reference (three long ones) wait for their workers
#: differently when other processes hold the cores (10 unchanged runs at two threads: every one inconclusive,
#: up to 1.86x [1.05, 2.14]; at one thread 0 of 20 false alarms, see the README).
WHY_ONE_THREAD: dict[str, str] = {
    "cpu": "a frame's CPU time also holds the threads' waiting for each other, which grows with the machine's "
    "load",
    "relative": "a frame and the reference wait for their workers differently when other processes hold the "
    "cores",
}


#: The judges that divide each round's statistic by the reference workload's in the same round, and by which
#: of its stages (`cases.REFERENCE_STAGE`: wall clock; `REFERENCE_CPU_STAGE`: CPU time).
REFERENCE_OF: dict[str, str] = {"cpu": REFERENCE_CPU_STAGE, "relative": REFERENCE_STAGE}
#: The judges the machine-load guard (`max_extra_load`) applies to: not those divided by the reference, whose
#: time in the same round carries what a busier machine adds to a frame's (the cores, caches, memory).
LOAD_GUARDED: tuple[str, ...] = ("wall",)
#: Each judge's per-round statistic unless `--stat` says otherwise. cpu: the mean, a round's CPU work per
#: frame: CPU time holds no waiting to throw out, and the p50 of a round of mixed frames is one frame of one
#: kind (360p: the haze frame; 720p: a clean, router-only frame, whose CPU time over the reference differed by
#: up to 11 % between five runs of the same code one after another, the mean by 2.6 %). Judged by the mean, no
#: unchanged run's interval began above 1.01 and no slowdown's below 1.18 in 50 of each here; by the p50, 0.99
#: and 1.04 (the 720p case).
DEFAULT_STAT: dict[str, str] = {"wall": "p50", "cpu": "mean", "relative": "p50"}


def check_judge_threads(judge: str, ran: Mapping[str, int | None]) -> None:
    """A one-line `UserError` unless every report in `ran` (who: intra-op threads) ran `JUDGE_THREADS`, for a
    judge that needs it (`WHY_ONE_THREAD`); `bench --judge cpu --save-baseline` checks its own run with it."""
    off = {who: n for who, n in ran.items() if n != JUDGE_THREADS}
    if judge in WHY_ONE_THREAD and off:
        said = ", ".join(f"{who} {n if n is not None else 'an unknown number of'}" for who, n in off.items())
        raise UserError(
            f"--judge {judge} needs --threads {JUDGE_THREADS} in the baseline and in this run ({said} intra-op "
            f"threads): with more, {WHY_ONE_THREAD[judge]}; record the baseline and compare with --threads "
            f"{JUDGE_THREADS}"
        )


def check_judge(
    baseline: Mapping[str, Any],
    device_kind: str | None,
    judge: str,
    threads: int | None,
) -> None:
    """`judge` is one of `JUDGES` and applies here: "cpu" and "relative" only on a CPU device ("cpu" kind),
    only when the baseline and this run (`threads`: the intra-op threads it runs) both ran `JUDGE_THREADS`
    intra-op thread, and only against a baseline that recorded the reference workload (and, for "cpu", the
    CPU time). One-line `UserError`s, before any timing."""
    if judge not in JUDGES:
        raise UserError(f"unknown judge {judge!r}; expected {', '.join(JUDGES)}")
    if judge not in REFERENCE_OF:
        return
    if device_kind != "cpu":
        what = "the process's CPU work" if judge == "cpu" else "times against a CPU graph's"
        raise UserError(
            f"--judge {judge} compares {what}, which says nothing of a GPU's; judge the wall-clock stages on a "
            "GPU (leave out --judge)"
        )
    check_judge_threads(
        judge, {"the baseline": (baseline.get("device") or {}).get("threads"), "this run": threads}
    )
    needed = (CPU_STAGE, REFERENCE_OF[judge]) if judge == "cpu" else (REFERENCE_OF[judge],)
    if not any(all(s in (c.get("rounds") or {}) for s in needed) for c in baseline["cases"]):
        raise _bad(
            "the baseline",
            f"holds no {' and no '.join(needed)} rounds (--judge {judge} needs a baseline recorded with "
            "--reference)",
        )


def compare(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tolerance: float = 0.10,
    stat: str | None = None,
    stages: Sequence[str] = REPORT_STAGES,
    min_ms: float | None = None,
    confidence: float = 0.95,
    resamples: int = 4000,
    max_extra_load: float | None = None,
    judge: str = "wall",
) -> Comparison:
    """Compare two bench JSON payloads case by case (same id) and stage by stage.

    Each round's `stat` (default: the judge's `DEFAULT_STAT`) is one observation; a stage's estimate is the ratio of the medians of those
    observations (now / baseline) with a `confidence` bootstrap interval (`ratio_of_medians`), and its
    verdict is regressed / unchanged / inconclusive against `1 + tolerance` (`RatioEstimate.verdict`).
    Stages whose baseline median is under `min_ms` are skipped (default: `DEFAULT_MIN_MS`, and
    `RELATIVE_MIN_MS` for `judge="relative"`). A run with fewer intra-op threads than its
    baseline is regressed whatever the times. When both runs sampled the machine's load (`runnable_others`)
    and this run's median exceeds the baseline's by more than `max_extra_load` tasks (default: the device's
    core count + 1, so one busy process beside the run is still a slowdown to catch — it reads as about two
    runnable tasks, itself and the intra-op worker it keeps waiting — while a machine saturated by others is
    not), a regressed stage is reported inconclusive instead.

    `judge="cpu"` judges the process's CPU time per frame (`cases.CPU_STAGE`) instead of the wall-clock
    stages: the work a frame costs, which other processes on a shared machine change far less than the wall
    time (they change how long the work waits, not how much there is); each round's statistic is divided by
    the reference workload's CPU time in the same round (`REFERENCE_OF`), which carries what a busier machine
    still adds to it through caches and memory bandwidth, so the load guard does not apply (`LOAD_GUARDED`);
    ONNX Runtime at one intra-op thread only (`check_judge`). `judge="relative"` (the same conditions)
    judges the wall-clock stages, each round's statistic divided by the reference workload's wall-clock time
    in the same round: a machine that is slower for everything (another process on the cores) cancels out,
    slower code does not; no load guard either, and by default no stage under `RELATIVE_MIN_MS`. Raises
    `DeviceMismatch` when the two were recorded under different device keys, and `UserError` when they share
    no case or hold malformed values."""
    current = validate_report(current, "this run")
    baseline = validate_report(baseline, "the baseline")
    if stat is None:
        stat = DEFAULT_STAT.get(judge, "p50")
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; expected {', '.join(STATS)}")
    if not 0.5 <= confidence < 1.0:
        raise UserError(f"confidence {confidence!r} must be in [0.5, 1)")
    if min_ms is None:
        min_ms = RELATIVE_MIN_MS if judge == "relative" else DEFAULT_MIN_MS
    key_now = current["device"]["key"]
    check_device(baseline, key_now)
    check_judge(baseline, current["device"].get("kind"), judge, current["device"].get("threads"))
    if judge == "cpu":
        stages = (CPU_STAGE,)
    base_cases = {c["id"]: c for c in baseline["cases"]}
    cur_cases = {c["id"]: c for c in current["cases"]}
    check_shared_cases(baseline, list(cur_cases))
    reference = REFERENCE_OF.get(judge)
    if reference and not any(reference in c["rounds"] for c in cur_cases.values()):
        raise UserError(
            f"this run holds no {reference} rounds; time it with --reference (or --judge {judge})"
        )
    base_load, now_load = (_median_load(baseline), _median_load(current))
    if judge not in LOAD_GUARDED:
        max_extra_load = None
    elif max_extra_load is None:
        max_extra_load = float(current["device"].get("cores") or 1) + 1.0
    busier = None not in (base_load, now_load, max_extra_load) and now_load - base_load > max_extra_load
    checks = []
    for cid in [k for k in cur_cases if k in base_cases]:
        for s in stages:
            b_rounds, c_rounds = base_cases[cid]["rounds"].get(s), cur_cases[cid]["rounds"].get(s)
            if b_rounds is None or c_rounds is None:
                continue
            b = [round_stat(r, stat) for r in b_rounds]
            c = [round_stat(r, stat) for r in c_rounds]
            if float(np.median(b)) < max(min_ms, 1e-9):
                continue
            b_obs, c_obs = b, c
            if reference:
                b_obs = _over_reference(b, base_cases[cid]["rounds"].get(reference), stat)
                c_obs = _over_reference(c, cur_cases[cid]["rounds"].get(reference), stat)
                if b_obs is None or c_obs is None:
                    continue
            est = ratio_of_medians(b_obs, c_obs, confidence=confidence, resamples=resamples)
            verdict = est.verdict(tolerance)
            if verdict == REGRESSED and busier:
                verdict = INCONCLUSIVE
            checks.append(
                StageCheck(cid, s, float(np.median(b)), float(np.median(c)), est, verdict, (len(b), len(c)))
            )
    if not checks:
        raise UserError(
            f"no stage of the shared cases reaches {min_ms:g} ms in the baseline on {stat}: nothing to judge "
            "(lower --min-ms, or bench larger frames)"
        )
    return Comparison(
        key_now,
        stat,
        tolerance,
        checks,
        missing=[k for k in base_cases if k not in cur_cases],
        new=[k for k in cur_cases if k not in base_cases],
        confidence=confidence,
        threads=(baseline["device"].get("threads"), current["device"].get("threads")),
        load=(base_load, now_load),
        max_extra_load=max_extra_load,
        judge=judge,
    )


def _over_reference(values: Sequence[float], reference: Any, stat: str) -> list[float] | None:
    """Each round's statistic over the reference stage's `stat` in the same round; None when the rounds
    cannot be paired (no reference, or a stage that ran in fewer rounds than the frames, e.g. a branch on
    rounds whose frames were all judged clean)."""
    if not reference or len(reference) != len(values):
        return None
    return [v / max(round_stat(r, stat), 1e-9) for v, r in zip(values, reference)]


def _median_load(report: Mapping[str, Any]) -> float | None:
    values = [float(x) for c in report["cases"] for x in (c.get("load") or [])]
    return float(np.median(values)) if values else None


def baseline_destination(arg: str, device_key: str) -> Path:
    """Where `--save-baseline ARG` writes: ARG itself when it names a .json file; `<ARG>/<device-key>.json`
    when it is a folder, ends with a path separator or has no .json suffix (a new folder is created);
    the default folder when ARG is empty."""
    if not arg:
        return baseline_path(device_key)
    p = Path(arg)
    if arg.endswith(("/", os.sep)) or p.is_dir() or p.suffix.lower() != ".json":
        return baseline_path(device_key, p)
    return p
