"""Runtime overhead measurements (not timed tests): what routing costs on top of the graphs it runs, and
whether memory stays flat over a long run. Reused by `benchmarks/runtime_overhead.py` and the bench tools.

* `stage_costs`: each graph alone on the backend (router on a thumbnail, trunk on a frame, every branch on
  that frame — or its downscaled copy for a reduced-resolution branch — and the trunk's features): median
  ms per call, binding and read-back included. Every comparison here is timed in turn (a, b, a, b, …; see
  `interleaved_medians_ms`), so drift during the run does not bias a ratio.
* `dispatch_costs`: the whole `Restorer` call per frame kind: a frame routed to each branch, a clean frame
  (router verdict `clean`, or `router_only` as its stand-in when no frame is judged clean), beside the sum of
  all branches (what a non-routed model would run).
* `soak`: N frames through the restorer with the process's resident memory sampled (psutil); the slope
  after warm-up in KiB per 1,000 frames.

Must not import torch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgerestore.conditions import CONDITIONS, RESTORED_CONDITIONS
from edgerestore.contract import router_thumbnail
from edgerestore.progress import Progress, as_progress
from edgerestore.runtime.restorer import Restorer

#: a call to time, or (an untimed setup run just before it, the call)
Timed = Callable[[], object] | tuple[Callable[[], object], Callable[[], object]]


def interleaved_medians_ms(fns: Sequence[Timed], reps: int, warmup: int = 5) -> list[float]:
    """Median ms per call of each function, timed in turn within every repetition (a, b, a, b, …), after
    `warmup` rounds of all of them: a change of load or clock speed during the run hits every function alike,
    so their ratio is fair (timed one after the other, whichever ran first read high on a cold machine)."""
    pairs = [fn if isinstance(fn, tuple) else (None, fn) for fn in fns]
    samples: list[list[float]] = [[] for _ in pairs]
    for round_ in range(warmup + reps):
        for (setup, fn), times in zip(pairs, samples):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            if round_ >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(times) for times in samples]


def stage_calls(restorer: Restorer, frame: np.ndarray) -> dict[str, Timed]:
    """Each graph as a call on `frame` (uint8 BGR): bind, run, synchronise, read back. A branch that runs at
    reduced resolution (the manifest's `branch_scales`) gets the downscaled frame, with the trunk at that size
    as `trunk@<branch>`; a branch's trunk runs untimed before it (the features it reads)."""
    be = restorer.backend
    thumb = router_thumbnail(frame, restorer.thumbnail_size)[None]

    def router() -> None:
        be.bind_input("router", "thumbnail", thumb)
        be.run("router", {"probs": (1, len(CONDITIONS))})
        be.synchronize()
        be.read("router", "probs")

    def trunk(padded: np.ndarray) -> None:
        hp, wp = padded.shape[1:3]
        be.bind_input("trunk", "frame", padded)
        be.run("trunk", restorer.trunk_outputs(hp, wp))
        be.synchronize()

    def branch(g: str, padded: np.ndarray) -> None:
        be.bind_input(g, "frame", padded)
        be.bind_input(g, "features", be.output("trunk", "features"))
        be.run(g, {"restored": (1, *padded.shape[1:3], 3)})
        be.synchronize()
        be.read(g, "restored")

    full = restorer.padded_frame(frame)
    calls: dict[str, Timed] = {"router": router, "trunk": lambda: trunk(full)}
    for c in RESTORED_CONDITIONS:
        g = f"branch_{c}"
        small = restorer.reduced_frame(frame, c)
        padded = full
        if small is not None:  # a reduced-resolution branch: trunk and branch on the downscaled frame
            padded = restorer.padded_frame(small)
            calls[f"trunk@{g}"] = lambda p=padded: trunk(p)
        calls[g] = (lambda p=padded: trunk(p), lambda g=g, p=padded: branch(g, p))
    return calls


def stage_costs(restorer: Restorer, frame: np.ndarray, reps: int = 50) -> dict[str, float]:
    """Median ms of each graph run alone (bind, run, read back) on `frame` (uint8 BGR), all timed in turn. What
    a routed frame adds on top of its graphs (thumbnail, padding, a reduced branch's downscale and upsampled
    correction) is the overhead."""
    calls = stage_calls(restorer, frame)
    return dict(zip(calls, interleaved_medians_ms(list(calls.values()), reps)))


def trunk_and_branch_ms(stages: dict[str, float], branch: str) -> float:
    """What a frame routed to `branch` runs in graphs: the trunk (at that branch's resolution) plus the branch."""
    return stages.get(f"trunk@{branch}", stages["trunk"]) + stages[branch]


@dataclass
class DispatchReport:
    frame_hw: tuple[int, int]
    threads: int | None
    stages: dict[str, float]
    # branch -> ms of a whole routed frame ("forced:<branch>" when no frame routes there: router skipped)
    routed: dict[str, float] = field(default_factory=dict)
    # the same key -> ms of trunk + that branch alone, timed interleaved with the routed frame
    alone: dict[str, float] = field(default_factory=dict)
    routed_ratio: dict[str, float] = field(default_factory=dict)  # routed / alone
    clean_ms: float = float("nan")
    router_ms: float = float("nan")  # the router alone, interleaved with the clean frame
    clean_ratio: float = float("nan")  # clean / router alone
    clean_how: str = ""
    all_branches_ms: float = float("nan")  # trunk + every branch: the non-routed cost

    def lines(self) -> list[str]:
        h, w = self.frame_hw
        rows = [f"frame {h}x{w}, onnxruntime intra-op threads {self.threads}", "stage alone (median ms):"]
        rows += [f"  {k:<16} {v:8.3f}" for k, v in self.stages.items()]
        rows.append("routed frame vs trunk + that branch alone (timed in turn):")
        for g, ms in self.routed.items():
            rows.append(
                f"  {g:<23} {ms:8.3f} ms vs {self.alone[g]:8.3f} ms  ratio {self.routed_ratio[g]:.3f} "
                "(budget 1.10)"
            )
        rows.append(
            f"clean frame ({self.clean_how}) {self.clean_ms:.3f} ms vs router alone {self.router_ms:.3f} ms  "
            f"ratio {self.clean_ratio:.3f} (budget 1.20)"
        )
        rows.append(f"all branches (trunk + 4 branches, a non-routed model): {self.all_branches_ms:.3f} ms")
        return rows


def dispatch_costs(
    restorer: Restorer,
    frames_by_condition: dict[str, np.ndarray],
    reps: int = 50,
) -> DispatchReport:
    """Whole-call cost per frame kind beside the graphs alone, each pair timed in turn (see
    `interleaved_medians_ms`). `frames_by_condition`: a frame for each condition the caller can produce (keys
    from CONDITIONS); a condition whose frame the router does not judge as that condition is measured forced
    (no router) and reported under `forced:<branch>`."""
    any_frame = next(iter(frames_by_condition.values()))
    stages = stage_costs(restorer, any_frame, reps)
    report = DispatchReport(any_frame.shape[:2], None, stages)
    sess = getattr(restorer.backend, "_sessions", {}).get("trunk")
    if sess is not None:
        report.threads = sess.get_session_options().intra_op_num_threads
    for c in RESTORED_CONDITIONS:
        g = f"branch_{c}"
        frame = frames_by_condition.get(c, any_frame)
        routed = restorer(frame).condition == c
        key = g if routed else f"forced:{g}"
        if not routed:
            restorer.force = c
        calls = stage_calls(restorer, frame)
        trunk = calls.get(f"trunk@{g}", calls["trunk"])
        _, branch = calls[g]
        report.routed[key], report.alone[key] = interleaved_medians_ms(
            [lambda f=frame: restorer(f), lambda t=trunk, b=branch: (t(), b())], reps
        )
        restorer.force = None
        report.routed_ratio[key] = report.routed[key] / report.alone[key]
    clean = frames_by_condition.get("clean", any_frame)
    if restorer(clean).condition == "clean":
        report.clean_how = "router says clean"
    else:
        restorer.router_only = True
        report.clean_how = "router_only stand-in"
    report.clean_ms, report.router_ms = interleaved_medians_ms(
        [lambda: restorer(clean), stage_calls(restorer, clean)["router"]], reps
    )
    restorer.router_only = False
    report.clean_ratio = report.clean_ms / report.router_ms
    # trunk + every branch as each runs here (a reduced branch at its size): what a non-routed model would run
    report.all_branches_ms = stages["trunk"] + sum(stages[f"branch_{c}"] for c in RESTORED_CONDITIONS)
    return report


@dataclass
class SoakReport:
    frames: int
    samples: list[tuple[int, float]]  # (frame index, RSS MiB)
    warmup: int
    slope_kib_per_1000: float
    rss_start_mib: float
    rss_end_mib: float
    seconds: float

    def line(self) -> str:
        return (
            f"soak {self.frames} frames in {self.seconds:.1f} s: RSS {self.rss_start_mib:.1f} -> "
            f"{self.rss_end_mib:.1f} MiB; slope after {self.warmup} warm-up frames "
            f"{self.slope_kib_per_1000:+.1f} KiB per 1,000 frames"
        )


def soak(
    restorer: Restorer,
    frames: Sequence[np.ndarray],
    n: int = 10_000,
    every: int = 250,
    warmup: int = 1000,
    progress: Progress | bool = True,
) -> SoakReport:
    """Run `n` frames (cycling through `frames`) and sample resident memory every `every` frames."""
    import psutil

    proc = psutil.Process()
    samples: list[tuple[int, float]] = []
    bar = as_progress(progress).bar(n, "soak", "frame")
    t0 = time.perf_counter()
    for i in range(n):
        restorer(frames[i % len(frames)])
        if i % every == 0 or i == n - 1:
            samples.append((i, proc.memory_info().rss / 2**20))
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    tail = [(i, m) for i, m in samples if i >= warmup] or samples
    x = np.array([i for i, _ in tail], float)
    y = np.array([m for _, m in tail], float)
    slope = float(np.polyfit(x, y, 1)[0]) * 1000 * 1024 if len(tail) > 1 else 0.0
    return SoakReport(n, samples, warmup, slope, samples[0][1], samples[-1][1], seconds)
