"""Timing bench cases: sizes, weather frames, and `CaseTimer` / `bench_cases` / `bench_restorer`.

`bench_restorer` times N frames (after a warm-up) through a `Restorer` at one size and summarises every stage
the runtime reports (router, trunk, branch, copies, pre, post, total) as mean / p50 / p90 / p99 / max and FPS.
The stage times are the runtime's own (`RestoreResult.timings`): `perf_counter` on ONNX Runtime, CUDA events
on TensorRT. Frames are timed in *rounds*, interleaved across the cases of a run, and every round's samples
are kept: a shared machine's load changes from second to second; frames next to each other share it, rounds
spread over the run.

Imports the runtime, numpy, OpenCV; never torch.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.measure.device import runnable_others
from edgerestore.measure.stats import StageStats, round_sizes, summarize
from edgerestore.progress import Progress, as_progress

#: Stages shown in tables and compared against baselines, in pipeline order.
REPORT_STAGES: tuple[str, ...] = ("router", "trunk", "branch", "copies", "total")
#: The process's CPU time during a frame (every thread: `time.process_time`), recorded beside the stages. The
#: work a frame costs, which other processes on a shared machine do not change (they change the wall time).
CPU_STAGE = "cpu"
#: Every stage the runtime reports (`edgerestore.runtime.restorer.STAGES`), and the CPU time.
ALL_STAGES: tuple[str, ...] = ("pre", "router", "trunk", "branch", "copies", "post", "total", CPU_STAGE)
#: With a reference workload (`edgerestore.measure.reference`): its wall-clock and CPU time, one call timed
#: right after each frame, kept per round beside the frame's stages.
REFERENCE_STAGE, REFERENCE_CPU_STAGE = "reference", "reference_cpu"
SIZE_ALIASES: dict[str, tuple[int, int]] = {
    "240p": (240, 426),
    "360p": (360, 640),
    "480p": (480, 854),
    "540p": (540, 960),
    "720p": (720, 1280),
    "1080p": (1080, 1920),
}


def parse_size(text: str) -> tuple[int, int]:
    """`360p` / `720p` / `1080p` (16:9) or `HxW` → (H, W)."""
    t = text.strip().lower()
    if t in SIZE_ALIASES:
        return SIZE_ALIASES[t]
    m = re.fullmatch(r"(\d+)\s*[x×]\s*(\d+)", t)
    if not m or min(int(m.group(1)), int(m.group(2))) < 1:
        raise UserError(f"size {text!r} is not HxW (e.g. 360x640) or one of {', '.join(SIZE_ALIASES)}")
    return int(m.group(1)), int(m.group(2))


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = [parse_size(t) for t in text.split(",") if t.strip()]
    if not sizes:
        raise UserError("--sizes is empty; give e.g. 360p,720p or 360x640")
    return sizes


SCENES: tuple[str, ...] = ("astronaut", "chelsea", "coffee")


def _scenes() -> list[np.ndarray]:
    """BGR photos shipped inside scikit-image (no download); a smooth procedural scene without it."""
    try:
        from skimage import data
    except ImportError:
        y, x = np.mgrid[0:360, 0:640].astype(np.float32)
        scene = np.stack([x / 640 * 200 + 30, y / 360 * 180 + 40, (x + y) / 1000 * 150 + 50], -1)
        return [scene.astype(np.uint8)]
    return [np.ascontiguousarray(getattr(data, n)()[..., :3][..., ::-1]) for n in SCENES]


def cover_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale `image` to cover (H, W) and centre-crop it."""
    import cv2

    h, w = size
    s = max(h / image.shape[0], w / image.shape[1])
    big = cv2.resize(
        image,
        (max(w, round(image.shape[1] * s)), max(h, round(image.shape[0] * s))),
        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
    )
    y, x = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y : y + h, x : x + w])


def weather_frames(
    size: tuple[int, int], conditions: Sequence[str] = CONDITIONS, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """(condition, uint8 BGR frame) at (H, W): a shipped photo per frame, degraded by
    `edgerestore.data.degrade.degrade_uint8_bgr` (clean frames are left as they are)."""
    from edgerestore.data.degrade import degrade_uint8_bgr

    scenes = _scenes()
    out = []
    for i, c in enumerate(conditions):
        clean = cover_resize(scenes[i % len(scenes)], size)
        out.append((c, clean if c == "clean" else degrade_uint8_bgr(clean, c, seed + i)))
    return out


@dataclass
class CaseResult:
    """A bundle timed at one size. `condition`: the forced branch, or "routed" (the router decided on
    synthetic weather frames; `conditions_seen` says what it chose). `rounds[stage]`: that stage's samples
    (ms) per round, in the order the rounds ran; `samples` is the same, concatenated."""

    profile: str
    family: str
    backend: str
    precision: str
    size: tuple[int, int]
    condition: str
    frames: int
    stages: dict[str, StageStats]
    conditions_seen: dict[str, int] = field(default_factory=dict)
    bundle: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)
    wall_ms: StageStats | None = None  # perf_counter around the whole call, as the caller sees it
    rounds: dict[str, list[list[float]]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # per round: other runnable tasks (`runnable_others`)

    @property
    def id(self) -> str:
        return case_id(self.profile, self.backend, self.precision, self.size, self.condition)

    @property
    def fps(self) -> float:
        return self.stages["total"].fps

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        """`samples=False` (baselines): without the concatenated samples; the rounds are always kept, since
        `compare` judges them."""
        d = {
            "id": self.id,
            "profile": self.profile,
            "family": self.family,
            "backend": self.backend,
            "precision": self.precision,
            "size": list(self.size),
            "condition": self.condition,
            "frames": self.frames,
            "fps": self.fps,
            "conditions_seen": dict(self.conditions_seen),
            "bundle": self.bundle,
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "wall_ms": self.wall_ms.to_dict() if self.wall_ms else None,
            "rounds": {k: [[round(x, 4) for x in r] for r in v] for k, v in self.rounds.items()},
            "load": [round(x, 2) for x in self.load],
        }
        if samples:
            d["samples"] = {k: [round(x, 4) for x in v] for k, v in self.samples.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CaseResult:
        return cls(
            profile=d["profile"],
            family=d.get("family", ""),
            backend=d["backend"],
            precision=d["precision"],
            size=(int(d["size"][0]), int(d["size"][1])),
            condition=d["condition"],
            frames=int(d["frames"]),
            stages={k: StageStats.from_dict(v) for k, v in d["stages"].items()},
            conditions_seen=dict(d.get("conditions_seen") or {}),
            bundle=d.get("bundle", ""),
            samples={k: list(v) for k, v in (d.get("samples") or {}).items()},
            wall_ms=StageStats.from_dict(d["wall_ms"]) if d.get("wall_ms") else None,
            rounds={k: [list(r) for r in v] for k, v in (d.get("rounds") or {}).items()},
            load=[float(x) for x in d.get("load") or []],
        )


def case_id(profile: str, backend: str, precision: str, size: Sequence[int], condition: str) -> str:
    return f"{profile}/{backend}/{precision}/{size[0]}x{size[1]}/{condition}"


class CaseTimer:
    """Times one bundle at one size in rounds: `warm(n)` untimed frames, then `round(n)` timed ones as many
    times as wanted (other cases' rounds may run in between), then `result()`.

    `condition` forces that branch (every frame runs router-free trunk + that branch; "clean" runs nothing
    but the pass-through); None lets the router choose on synthetic weather frames, one per condition in
    turn. A stage's statistics cover the frames on which it ran (the runtime reports 0 for a stage that did
    not run, e.g. trunk and branch on a frame judged clean); `total` and `cpu` (the process's CPU time during
    the frame) cover every frame. `pool`: the (condition, frame) list to cycle through instead of making one at
    `size`. `reference` (a `measure.reference.Reference`): timed once right after every timed frame, as the
    stages `reference` (wall) and `reference_cpu`."""

    def __init__(
        self,
        restorer: Any,
        size: tuple[int, int],
        *,
        condition: str | None = None,
        seed: int = 0,
        pool: Sequence[tuple[str, np.ndarray]] | None = None,
        reference: Any = None,
    ) -> None:
        m = restorer.bundle.manifest
        if condition is not None and condition not in CONDITIONS:
            raise UserError(f"--condition {condition!r} is not one of {', '.join(CONDITIONS)}")
        self.restorer, self.size, self.manifest = restorer, (int(size[0]), int(size[1])), m
        self.condition = condition if m.family != "cmudrn" else None
        self.label = case_label(m.family, condition)
        if pool is None:
            pool = case_pool(m.family, self.size, condition, seed)
        self.pool = pool
        self.reference = reference
        self._i = 0
        self._rounds: dict[str, list[list[float]]] = {
            s: [] for s in (*ALL_STAGES, REFERENCE_STAGE, REFERENCE_CPU_STAGE)
        }
        self._wall: list[float] = []
        self._seen: Counter[str] = Counter()
        self._load: list[float] = []

    @property
    def id(self) -> str:
        m = self.manifest
        return case_id(m.profile, m.backend, m.precision, self.size, self.label)

    def _frames(self, n: int, timed: bool, bar: Any) -> None:
        previous = self.restorer.force
        self.restorer.force = self.condition
        round_: dict[str, list[float]] = {s: [] for s in self._rounds}
        load: list[float] = []
        try:
            for _ in range(n):
                if timed and (busy := runnable_others()) is not None:
                    load.append(busy)
                frame = self.pool[self._i % len(self.pool)][1]
                self._i += 1
                c0, t0 = time.process_time(), time.perf_counter()
                result = self.restorer(frame)
                elapsed = (time.perf_counter() - t0) * 1e3
                cpu = (time.process_time() - c0) * 1e3
                if bar is not None:
                    bar.update(1)
                if not timed:
                    continue
                self._wall.append(elapsed)
                self._seen[result.condition] += 1
                round_[CPU_STAGE].append(cpu)
                for s in ALL_STAGES[:-1]:
                    v = float(result.timings.get(s, 0.0))
                    if v > 0.0 or s == "total":
                        round_[s].append(v)
                if self.reference is not None:
                    ref_wall, ref_cpu = self.reference.time()
                    round_[REFERENCE_STAGE].append(ref_wall)
                    round_[REFERENCE_CPU_STAGE].append(ref_cpu)
        finally:
            self.restorer.force = previous
        if timed:
            for s, v in round_.items():
                if v:
                    self._rounds[s].append(v)
            if load:
                self._load.append(float(np.mean(load)))

    def warm(self, n: int, bar: Any = None) -> None:
        self._frames(n, False, bar)

    def round(self, n: int, bar: Any = None) -> None:
        self._frames(n, True, bar)

    def result(self) -> CaseResult:
        m = self.manifest
        rounds = {s: r for s, r in self._rounds.items() if r}
        samples = {s: [x for r in v for x in r] for s, v in rounds.items()}
        return CaseResult(
            profile=m.profile,
            family=m.family,
            backend=m.backend,
            precision=m.precision,
            size=self.size,
            condition=self.label,
            frames=len(self._wall),
            stages={s: summarize(v) for s, v in samples.items()},
            conditions_seen=dict(self._seen),
            bundle=str(self.restorer.bundle.path),
            samples=samples,
            wall_ms=summarize(self._wall),
            rounds=rounds,
            load=list(self._load),
        )


def case_pool(
    family: str, size: tuple[int, int], condition: str | None, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """The (condition, frame) pool a case cycles through: rain and snow for CMUDRN (blind), else the forced
    `condition`'s frames, else every condition's (routed)."""
    kinds = ("rain", "snow") if family == "cmudrn" else (condition,) if condition else CONDITIONS
    return weather_frames(size, kinds, seed)


def case_label(family: str, condition: str | None) -> str:
    """The condition part of a case id: "blind" (CMUDRN), the forced condition, or "routed"."""
    return "blind" if family == "cmudrn" else condition or "routed"


def bench_cases(
    timers: Sequence[CaseTimer],
    *,
    frames: int,
    warmup: int,
    rounds: int = 1,
    progress: Progress | bool = False,
) -> list[CaseResult]:
    """Warm every case up, then time `frames` frames per case in `rounds` rounds interleaved across the
    cases (round 1 of each case, round 2 of each case, ...), so a load change on a shared machine lands on
    every case alike and inside the rounds `compare` judges."""
    plan = round_sizes(frames, rounds)
    bar = as_progress(progress).bar(len(timers) * (warmup + frames), "bench", "frame", leave=False)
    try:
        for t in timers:
            t.warm(warmup, bar)
        for n in plan:
            for t in timers:
                t.round(n, bar)
    finally:
        bar.close()
    return [t.result() for t in timers]


def bench_restorer(
    restorer: Any,
    size: tuple[int, int],
    *,
    frames: int = 100,
    warmup: int = 10,
    condition: str | None = None,
    seed: int = 0,
    pool: Sequence[tuple[str, np.ndarray]] | None = None,
    progress: Progress | bool = False,
    rounds: int = 1,
) -> CaseResult:
    """Time `frames` calls of `restorer` at (H, W) after `warmup` untimed ones, in `rounds` rounds (see
    `CaseTimer` for `condition` and `pool`)."""
    timer = CaseTimer(restorer, size, condition=condition, seed=seed, pool=pool)
    return bench_cases([timer], frames=frames, warmup=warmup, rounds=rounds, progress=progress)[0]


def time_graph(
    backend: Any, graph: str, pool: Sequence[np.ndarray], *, frames: int = 20, warmup: int = 3
) -> tuple[StageStats, StageStats]:
    """(graph compute, whole call) ms of a one-input image graph (`frame` u8 [1,H,W,3] → `restored`), each
    call binding a frame of `pool` (in turn), running, synchronising and reading the output back."""
    compute, whole = [], []
    for i in range(warmup + frames):
        f = pool[i % len(pool)]
        t0 = time.perf_counter()
        backend.reset_timings()
        backend.bind_input(graph, "frame", f)
        backend.run(graph, {"restored": f.shape})
        backend.synchronize()
        backend.read(graph, "restored")
        ms = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            compute.append(backend.timings_ms().get(graph, ms))
            whole.append(ms)
    return summarize(compute), summarize(whole)
