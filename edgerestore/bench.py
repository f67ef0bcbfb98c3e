"""Latency measurement of engine bundles: per-stage percentiles, device keys, baselines, regression compare,
camera-pipeline throughput and capture-to-display latency, and plots.

* `bench_restorer` times N frames (after a warm-up) through a `Restorer` at one size and summarises every
  stage the runtime reports (router, trunk, branch, copies, pre, post, total) as mean / p50 / p90 / p99 / max
  and FPS. The stage times are the runtime's own (`RestoreResult.timings`): `perf_counter` on ONNX Runtime,
  CUDA events on TensorRT.
* A report records the device it ran on as a *device key* (hardware, core count, runtime and version) and
  the thread count that actually ran (ORT's default resolved to the number it uses). A baseline is only ever
  compared with a run of the same key (`compare` refuses otherwise), so a baseline from another machine
  cannot pass or fail a run by accident; a run with fewer threads than its baseline is a regression.
* Frames are timed in *rounds*, interleaved across the cases of a run, and every round's samples are kept.
  `compare` judges each stage by the ratio of the median round statistic (now / baseline) with a bootstrap
  confidence interval over rounds: regressed when the whole interval lies above 1 + tolerance, unchanged
  when it lies below, inconclusive otherwise. Rounds, not frames, are the unit because a shared machine's
  load changes from second to second: frames next to each other share it, rounds spread over the run.
* `measure_pipeline` runs frames through the camera pipeline (`edgerestore.runtime.video`: grabber thread,
  inference thread, display loop) from an in-memory camera, once unpaced (throughput) and once paced like a
  camera (capture-to-display latency), beside the model latency of the same restorer in the same run.

Percentiles are numpy's default (linear interpolation between order statistics, Hyndman & Fan type 7).

Imports the runtime, numpy, OpenCV (matplotlib inside the plot functions); never torch. Building bundles
from a profile, the sweeps and the PyTorch column live in `edgerestore.bench_studies`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.files import write_bytes_atomic, write_text_atomic

FORMAT = "edgerestore-bench/1"
#: Stages shown in tables and compared against baselines, in pipeline order.
REPORT_STAGES: tuple[str, ...] = ("router", "trunk", "branch", "copies", "total")
#: Every stage the runtime reports (`edgerestore.runtime.restorer.STAGES`).
ALL_STAGES: tuple[str, ...] = ("pre", "router", "trunk", "branch", "copies", "post", "total")
SIZE_ALIASES: dict[str, tuple[int, int]] = {
    "240p": (240, 426),
    "360p": (360, 640),
    "480p": (480, 854),
    "540p": (540, 960),
    "720p": (720, 1280),
    "1080p": (1080, 1920),
}
DEFAULT_BASELINE_DIR = Path("benchmarks") / "baselines"
#: Stages faster than this in the baseline are not judged (a 20 % change of 10 µs is timer noise).
DEFAULT_MIN_MS = 0.05


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageStats:
    """Summary of one stage's per-frame milliseconds."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @property
    def fps(self) -> float:
        """Frames per second if frames ran back to back at the mean time (inf for a zero mean)."""
        return 1000.0 / self.mean if self.mean > 0 else math.inf

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "fps": self.fps}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageStats:
        return cls(int(d["n"]), *(float(d[k]) for k in ("mean", "p50", "p90", "p99", "max")))


def summarize(samples_ms: Sequence[float]) -> StageStats:
    """Mean, p50, p90, p99 and max of `samples_ms` (numpy's linear-interpolation percentiles)."""
    if len(samples_ms) == 0:
        raise ValueError("no samples to summarise")
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(a, [50, 90, 99]))
    return StageStats(int(a.size), float(a.mean()), p50, p90, p99, float(a.max()))


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------


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


def parse_tolerance(text: str | float) -> float:
    """`10%` or `0.1` → 0.1."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise UserError(f"tolerance {text!r} is not a fraction (0.1) or a percentage (10%)") from None
    if not 0.0 <= value < 10.0:
        raise UserError(f"tolerance {text!r} must be between 0% and 1000%")
    return value


# ---------------------------------------------------------------------------------------------------------
# Device key
# ---------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """`model name` (x86) or `Hardware` / `Model` (ARM) from /proc/cpuinfo, else platform's guess."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                fields.setdefault(k.strip().lower(), v.strip())
    except OSError:
        pass
    for key in ("model name", "hardware", "model", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or "unknown-cpu"


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, so a container's limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", " ", text.lower())
    text = re.sub(r"\b(cpu|processor|with radeon graphics)\b", " ", text)
    text = re.sub(r"@.*$", " ", text)  # "@ 2.60GHz": the name already says which part it is
    return re.sub(r"[^a-z0-9.]+", "-", text).strip("-.") or "unknown"


@dataclass(frozen=True)
class BenchDevice:
    """What a run ran on. `kind`: "cpu" (ONNX Runtime) or "gpu" (TensorRT)."""

    kind: str
    name: str  # CPU model, or GPU name
    cores: int
    runtime: str  # "onnxruntime" | "tensorrt" | "tensorrt_rtx" | "pytorch"
    runtime_version: str
    threads: int | None  # ONNX Runtime intra-op threads that ran (ORT's default resolved); None on GPUs
    compute_capability: str | None = None
    machine: str = field(default_factory=platform.machine)

    @property
    def key(self) -> str:
        """`<hardware>-<cores>c-<runtime>-<version>`: two runs share a key only when the same hardware ran the
        same runtime version. The thread count is not part of it: it is a setting a change can lower, and
        `compare` judges it (fewer threads than the baseline is a regression, not another device)."""
        hw = _slug(self.name) + (
            f"-sm{self.compute_capability.replace('.', '')}" if self.compute_capability else ""
        )
        return f"{hw}-{self.cores}c-{_slug(self.runtime)}-{self.runtime_version}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchDevice:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyper-threads of one core count once), from
    /sys/devices/system/cpu/cpu<N>/topology; `cpu_cores()` where the topology cannot be read."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return cpu_cores()
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                (topo / "physical_package_id").read_text().strip()
                + ":"
                + (topo / "core_id").read_text().strip()
            )
        except OSError:
            return cpu_cores()
    return len(cores) or cpu_cores()


def ort_threads(restorer: Any) -> int | None:
    """The intra-op thread count the restorer's ONNX Runtime sessions run with: the configured one, or for
    ORT's default (0) the number ORT picks, one per physical core (`physical_cores`)."""
    sessions = getattr(restorer.backend, "_sessions", None) or {}
    for sess in sessions.values():
        configured = int(sess.get_session_options().intra_op_num_threads)
        return configured if configured > 0 else physical_cores()
    return None


def device_of(restorer: Any) -> BenchDevice:
    """The device key of a `Restorer` (its backend decides CPU vs GPU)."""
    backend = restorer.backend
    if getattr(backend, "name", "") == "tensorrt":
        from edgerestore.engines.bundle import cuda_device_info

        info = cuda_device_info()
        trt = backend.trt
        module = getattr(trt, "__name__", "tensorrt").split(".")[0]
        return BenchDevice(
            "gpu",
            info.name if info else "unknown-gpu",
            cpu_cores(),
            module,
            str(getattr(trt, "__version__", "?")),
            None,
            info.compute_capability if info else None,
        )
    import onnxruntime

    return BenchDevice(
        "cpu", cpu_model(), cpu_cores(), "onnxruntime", onnxruntime.__version__, ort_threads(restorer)
    )


# ---------------------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------
# One case: a bundle at one size
# ---------------------------------------------------------------------------------------------------------


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


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


def runnable_others() -> float | None:
    """Tasks runnable on this machine right now besides the caller (the 4th field of /proc/loadavg, less
    the thread reading it); None where there is no /proc/loadavg. Sampled between frames, it says how busy
    the machine was while a round ran."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return float(max(0, running - 1))


class CaseTimer:
    """Times one bundle at one size in rounds: `warm(n)` untimed frames, then `round(n)` timed ones as many
    times as wanted (other cases' rounds may run in between), then `result()`.

    `condition` forces that branch (every frame runs router-free trunk + that branch; "clean" runs nothing
    but the pass-through); None lets the router choose on synthetic weather frames, one per condition in
    turn. A stage's statistics cover the frames on which it ran (the runtime reports 0 for a stage that did
    not run, e.g. trunk and branch on a frame judged clean); `total` covers every frame. `pool`: the
    (condition, frame) list to cycle through instead of making one at `size`."""

    def __init__(
        self,
        restorer: Any,
        size: tuple[int, int],
        *,
        condition: str | None = None,
        seed: int = 0,
        pool: Sequence[tuple[str, np.ndarray]] | None = None,
    ) -> None:
        m = restorer.bundle.manifest
        if condition is not None and condition not in CONDITIONS:
            raise UserError(f"--condition {condition!r} is not one of {', '.join(CONDITIONS)}")
        self.restorer, self.size, self.manifest = restorer, (int(size[0]), int(size[1])), m
        self.condition = condition if m.family != "cmudrn" else None
        self.label = case_label(m.family, condition)
        if pool is None:
            kinds = ("rain", "snow") if m.family == "cmudrn" else (condition,) if condition else CONDITIONS
            pool = weather_frames(self.size, kinds, seed)
        self.pool = pool
        self._i = 0
        self._rounds: dict[str, list[list[float]]] = {s: [] for s in ALL_STAGES}
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
        round_: dict[str, list[float]] = {s: [] for s in ALL_STAGES}
        load: list[float] = []
        try:
            for _ in range(n):
                if timed and (busy := runnable_others()) is not None:
                    load.append(busy)
                frame = self.pool[self._i % len(self.pool)][1]
                self._i += 1
                t0 = time.perf_counter()
                result = self.restorer(frame)
                elapsed = (time.perf_counter() - t0) * 1e3
                if bar is not None:
                    bar.update(1)
                if not timed:
                    continue
                self._wall.append(elapsed)
                self._seen[result.condition] += 1
                for s in ALL_STAGES:
                    v = float(result.timings.get(s, 0.0))
                    if v > 0.0 or s == "total":
                        round_[s].append(v)
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


def case_label(family: str, condition: str | None) -> str:
    """The condition part of a case id: "blind" (CMUDRN), the forced condition, or "routed"."""
    return "blind" if family == "cmudrn" else condition or "routed"


def round_sizes(frames: int, rounds: int) -> list[int]:
    """`frames` split into `rounds` rounds as evenly as possible (the first ones one frame longer)."""
    if rounds < 1 or frames < rounds:
        raise UserError(f"--rounds {rounds} must be between 1 and --frames ({frames})")
    return [frames // rounds + (i < frames % rounds) for i in range(rounds)]


def bench_cases(
    timers: Sequence[CaseTimer], *, frames: int, warmup: int, rounds: int = 1, progress: bool = False
) -> list[CaseResult]:
    """Warm every case up, then time `frames` frames per case in `rounds` rounds interleaved across the
    cases (round 1 of each case, round 2 of each case, ...), so a load change on a shared machine lands on
    every case alike and inside the rounds `compare` judges."""
    plan = round_sizes(frames, rounds)
    bar = _progress(len(timers) * (warmup + frames), "bench", progress)
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
    progress: bool = False,
    rounds: int = 1,
) -> CaseResult:
    """Time `frames` calls of `restorer` at (H, W) after `warmup` untimed ones, in `rounds` rounds (see
    `CaseTimer` for `condition` and `pool`)."""
    timer = CaseTimer(restorer, size, condition=condition, seed=seed, pool=pool)
    return bench_cases([timer], frames=frames, warmup=warmup, rounds=rounds, progress=progress)[0]


def open_backend(bundle_dir: str | Path, threads: int | None = None) -> Any:
    """The runtime backend of a bundle with every graph loaded (for timing graphs one by one)."""
    from edgerestore.engines.bundle import load_bundle

    bundle = load_bundle(Path(bundle_dir))
    m = bundle.manifest
    if m.backend == "tensorrt":
        from edgerestore.runtime.trt import TensorRTBackend

        backend: Any = TensorRTBackend(trt_module=m.builder.get("name"))
    else:
        from edgerestore.runtime.ort import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(threads=threads, session_options=m.session_options or None)
    try:
        for name in bundle.graph_names:
            backend.load(name, bundle.graph_path(name))
        backend.finalize()
    except BaseException:
        backend.close()
        raise
    return backend


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


# ---------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------


@dataclass
class BenchReport:
    device: BenchDevice
    cases: list[CaseResult]
    timing_source: str  # "perf_counter" | "cuda_events"
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    command: list[str] = field(default_factory=lambda: ["edgerestore", *sys.argv[1:]])
    pipeline: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created_at": self.created_at,
            "command": self.command,
            "device": self.device.to_dict(),
            "timing_source": self.timing_source,
            "settings": self.settings,
            "cases": [c.to_dict(samples) for c in self.cases],
            "pipeline": self.pipeline,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchReport:
        check_format(d, "report")
        return cls(
            device=BenchDevice.from_dict(d["device"]),
            cases=[CaseResult.from_dict(c) for c in d.get("cases") or []],
            timing_source=d.get("timing_source", "perf_counter"),
            settings=dict(d.get("settings") or {}),
            created_at=d.get("created_at", ""),
            command=list(d.get("command") or []),
            pipeline=list(d.get("pipeline") or []),
        )

    def table(self) -> str:
        return cases_table(self.cases)


def cases_table(cases: Sequence[CaseResult], stages: Sequence[str] = REPORT_STAGES) -> str:
    """A markdown table: one row per case and stage (mean, p50, p90, p99, max in ms, FPS on `total`)."""
    lines = [
        "| case | stage | frames | mean ms | p50 | p90 | p99 | max | FPS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        for s in stages:
            st = c.stages.get(s)
            if st is None:
                lines.append(f"| {c.id} | {s} | 0 | — | — | — | — | — | |")
                continue
            fps = f"{st.fps:.1f}" if s == "total" else ""
            lines.append(
                f"| {c.id} | {s} | {st.n} | {st.mean:.2f} | {st.p50:.2f} | {st.p90:.2f} | {st.p99:.2f} | "
                f"{st.max:.2f} | {fps} |"
            )
    return "\n".join(lines)


def check_format(d: Mapping[str, Any], what: str) -> None:
    if not isinstance(d, Mapping) or d.get("format") != FORMAT:
        got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
        raise UserError(f"{what} is not an edgerestore bench JSON (format {got!r}, expected {FORMAT!r})")


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """JSON written to a temporary file beside `path` and renamed (never half a file)."""
    return write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")


def load_json(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{what} {path} is not readable JSON ({str(exc).splitlines()[0]})") from None
    check_format(data, f"{what} {path}")
    return data


# ---------------------------------------------------------------------------------------------------------
# Baselines and regression compare
# ---------------------------------------------------------------------------------------------------------


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


#: Verdicts of one stage, and of a whole comparison (the worst of its stages).
REGRESSED, INCONCLUSIVE, UNCHANGED = "regressed", "inconclusive", "unchanged"
STATS: tuple[str, ...] = ("mean", "p50", "p90", "p99", "max")


def round_stat(samples: Sequence[float], stat: str) -> float:
    """One round's `stat` (mean, p50, p90, p99 or max) of its samples."""
    a = np.asarray(samples, dtype=np.float64)
    if stat == "mean":
        return float(a.mean())
    if stat == "max":
        return float(a.max())
    return float(np.percentile(a, float(stat[1:])))


@dataclass(frozen=True)
class RatioEstimate:
    """median(current) / median(baseline) and its bootstrap confidence interval [low, high]."""

    ratio: float
    low: float
    high: float

    def verdict(self, tolerance: float) -> str:
        """regressed: the whole interval above 1 + tolerance; unchanged: the whole interval at or below it;
        inconclusive: the interval straddles it (more rounds, or a quieter machine, would decide)."""
        limit = 1.0 + tolerance
        if self.low > limit:
            return REGRESSED
        if self.high <= limit:
            return UNCHANGED
        return INCONCLUSIVE


def ratio_of_medians(
    baseline: Sequence[float],
    current: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> RatioEstimate:
    """The ratio of the medians of two independent samples with a percentile bootstrap interval: both
    samples are resampled with replacement `resamples` times (seeded: the same samples give the same
    interval). The samples are per-round statistics, so the interval carries the run-to-run spread."""
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    if b.size == 0 or c.size == 0:
        raise ValueError("ratio_of_medians needs two non-empty samples")
    if np.median(b) <= 0:
        raise ValueError("the baseline's median is not positive")
    rng = np.random.default_rng(seed)
    mb = np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)
    mc = np.median(c[rng.integers(0, c.size, (resamples, c.size))], axis=1)
    ratios = mc / np.maximum(mb, 1e-12)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return RatioEstimate(float(np.median(c) / np.median(b)), float(low), float(high))


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
        out = [
            f"compare (median of per-round {self.stat}, {self.confidence:.0%} bootstrap interval of the ratio, "
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


def compare(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tolerance: float = 0.10,
    stat: str = "p50",
    stages: Sequence[str] = REPORT_STAGES,
    min_ms: float = DEFAULT_MIN_MS,
    confidence: float = 0.95,
    resamples: int = 4000,
    max_extra_load: float | None = None,
) -> Comparison:
    """Compare two bench JSON payloads case by case (same id) and stage by stage.

    Each round's `stat` is one observation; a stage's estimate is the ratio of the medians of those
    observations (now / baseline) with a `confidence` bootstrap interval (`ratio_of_medians`), and its
    verdict is regressed / unchanged / inconclusive against `1 + tolerance` (`RatioEstimate.verdict`).
    Stages whose baseline median is under `min_ms` are skipped. A run with fewer intra-op threads than its
    baseline is regressed whatever the times. When both runs sampled the machine's load (`runnable_others`)
    and this run's median exceeds the baseline's by more than `max_extra_load` tasks (default: the device's
    core count + 1, so one busy process beside the run is still a slowdown to catch — it reads as about two
    runnable tasks, itself and the intra-op worker it keeps waiting — while a machine saturated by others is
    not), a regressed stage is reported inconclusive instead. Raises `DeviceMismatch` when the two
    were recorded under different device keys, and `UserError` when they share no case or hold malformed
    values."""
    current = validate_report(current, "this run")
    baseline = validate_report(baseline, "the baseline")
    if stat not in STATS:
        raise UserError(f"unknown statistic {stat!r}; expected {', '.join(STATS)}")
    if not 0.5 <= confidence < 1.0:
        raise UserError(f"confidence {confidence!r} must be in [0.5, 1)")
    key_now = current["device"]["key"]
    check_device(baseline, key_now)
    base_cases = {c["id"]: c for c in baseline["cases"]}
    cur_cases = {c["id"]: c for c in current["cases"]}
    check_shared_cases(baseline, list(cur_cases))
    base_load, now_load = (_median_load(baseline), _median_load(current))
    if max_extra_load is None:
        max_extra_load = float(current["device"].get("cores") or 1) + 1.0
    busier = None not in (base_load, now_load) and now_load - base_load > max_extra_load
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
            est = ratio_of_medians(b, c, confidence=confidence, resamples=resamples)
            verdict = est.verdict(tolerance)
            if verdict == REGRESSED and busier:
                verdict = INCONCLUSIVE
            checks.append(
                StageCheck(cid, s, float(np.median(b)), float(np.median(c)), est, verdict, (len(b), len(c)))
            )
    if not checks:
        raise UserError(
            f"no stage of the shared cases reaches {min_ms} ms in the baseline on {stat}: nothing to judge "
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
    )


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


# ---------------------------------------------------------------------------------------------------------
# Through the camera pipeline
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PipelineBench:
    """One restorer measured alone and through the camera pipeline in the same run.

    `model_ms`: the restorer's own `total` called back to back on this thread. `throughput_fps`: frames
    out per second of the pipeline fed as fast as it takes them (every frame processed).
    `capture_to_display_ms`: capture time → the display loop holding the result, with the camera paced at
    `camera_fps` and only the newest frame kept (a live camera)."""

    size: tuple[int, int]
    condition: str
    frames: int
    model_ms: StageStats
    throughput_fps: float
    pipeline_latency_ms: StageStats  # the restorer's `total` inside the pipeline (unpaced run)
    camera_fps: float
    capture_to_display_ms: StageStats
    model_ms_paced: StageStats  # the restorer's `total` inside the paced run
    dropped_paced: int

    @property
    def model_fps(self) -> float:
        return self.model_ms.fps

    @property
    def throughput_ratio(self) -> float:
        """Pipeline FPS / (1 / model latency): 1.0 means the pipeline adds nothing to the model's time."""
        return self.throughput_fps / self.model_fps

    @property
    def overhead(self) -> float:
        """Extra time per frame the pipeline costs, as a fraction of the model's time."""
        return (1000.0 / self.throughput_fps) / self.model_ms.mean - 1.0

    @property
    def latency_ratio(self) -> float:
        """Capture-to-display (mean) / model latency (mean, measured in the same paced run)."""
        return self.capture_to_display_ms.mean / self.model_ms_paced.mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "condition": self.condition,
            "frames": self.frames,
            "model_ms": self.model_ms.to_dict(),
            "model_fps": self.model_fps,
            "throughput_fps": self.throughput_fps,
            "throughput_ratio": self.throughput_ratio,
            "overhead": self.overhead,
            "pipeline_latency_ms": self.pipeline_latency_ms.to_dict(),
            "camera_fps": self.camera_fps,
            "capture_to_display_ms": self.capture_to_display_ms.to_dict(),
            "model_ms_paced": self.model_ms_paced.to_dict(),
            "latency_ratio": self.latency_ratio,
            "dropped_paced": self.dropped_paced,
        }

    def lines(self, min_fps: float | None = None) -> list[str]:
        h, w = self.size
        out = [
            f"camera pipeline, {w}x{h}, {self.condition}, {self.frames} frames:",
            f"  model alone        {self.model_ms.mean:.1f} ms mean (p50 {self.model_ms.p50:.1f}, p99 "
            f"{self.model_ms.p99:.1f}) = {self.model_fps:.1f} FPS",
            f"  pipeline           {self.throughput_fps:.1f} FPS = {self.throughput_ratio:.2f} x 1/model latency "
            f"(target >= 0.90); overhead {self.overhead:+.1%} of model time (target <= 10%)",
            f"  capture->display   {self.capture_to_display_ms.mean:.1f} ms mean (p50 "
            f"{self.capture_to_display_ms.p50:.1f}, p99 {self.capture_to_display_ms.p99:.1f}) with a "
            f"{self.camera_fps:g} FPS camera = {self.latency_ratio:.2f} x model latency "
            f"{self.model_ms_paced.mean:.1f} ms (target <= 1.50); {self.dropped_paced} stale frames dropped",
        ]
        if min_fps is not None:
            verdict = "meets" if self.throughput_fps >= min_fps else "MISSES"
            out.append(f"  {verdict} the {min_fps:g} FPS target through the pipeline")
        return out


def measure_pipeline(
    restorer: Any,
    size: tuple[int, int],
    *,
    frames: int = 150,
    warmup: int = 10,
    condition: str | None = None,
    camera_fps: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PipelineBench:
    """Model latency alone, then the same frames through the camera pipeline (`edgerestore.runtime.video.run`
    with an offscreen display): unpaced with every frame kept (throughput), then from a camera paced at
    `camera_fps` (default 30) keeping only the newest frame (capture-to-display latency)."""
    from edgerestore.runtime import video

    m = restorer.bundle.manifest
    if m.family == "cmudrn":
        pool = [f for _, f in weather_frames(size, ("rain", "snow"), seed)]
        label = "blind"
    elif condition is not None:
        pool = [f for _, f in weather_frames(size, (condition,), seed)]
        label = condition
    else:
        pool = [f for _, f in weather_frames(size, CONDITIONS, seed)]
        label = "routed"
    previous = restorer.force
    if m.family != "cmudrn":
        restorer.force = condition
    try:
        for i in range(warmup):
            restorer(pool[i % len(pool)])
        alone = []
        for i in range(frames):
            alone.append(float(restorer(pool[i % len(pool)]).timings["total"]))
        model = summarize(alone)

        # 1. throughput: the source never makes the pipeline wait, and no frame is dropped; the display side
        # composes every new result as a window would (offscreen)
        lat: list[float] = []
        done = video.run(
            video.MemorySource(pool, frames, 0.0),
            restorer,
            video.VideoOptions(
                drop_stale=False,
                on_result=[lambda r: lat.append(r.latency_ms)],
                offscreen=True,
                status_every=0,
            ),
        )
        done.raise_error()
        fps = done.summary.frames_out / done.summary.wall_s
        in_pipe = summarize(lat) if lat else model

        # 2. latency: a camera at its own rate, newest frame only
        cam_fps = camera_fps or 30.0
        e2e: list[float] = []
        lat2: list[float] = []
        done = video.run(
            video.MemorySource(pool, frames, cam_fps),
            restorer,
            video.VideoOptions(
                drop_stale=True,
                on_result=[lambda r: lat2.append(r.latency_ms)],
                offscreen=True,
                on_shown=lambda r: e2e.append((time.perf_counter() - r.frame.t_capture) * 1e3),
                status_every=0,
            ),
        )
        done.raise_error()
        paced_model = summarize(lat2) if lat2 else model
        dropped = done.summary.dropped
    finally:
        restorer.force = previous
    if not e2e:
        raise UserError("the camera pipeline showed no frame; see the log for the pipeline's error")
    return PipelineBench(
        size=(int(size[0]), int(size[1])),
        condition=label,
        frames=frames,
        model_ms=model,
        throughput_fps=fps,
        pipeline_latency_ms=in_pipe,
        camera_fps=cam_fps,
        capture_to_display_ms=summarize(e2e),
        model_ms_paced=paced_model,
        dropped_paced=dropped,
    )


# ---------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically (temp file + rename)."""
    import io

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return write_bytes_atomic(path, buffer.getvalue())


def plot_latency(cases: Sequence[CaseResult], path: str | Path, title: str = "") -> Path:
    """Per-stage boxplots (one panel per case) and the CDF of the total per case, as one PNG."""
    plt = _pyplot()
    cases = [c for c in cases if c.samples]
    if not cases:
        raise UserError("no per-frame samples to plot (baselines are stored without them)")
    fig, axes = plt.subplots(1, len(cases) + 1, figsize=(3.6 * (len(cases) + 1), 3.8), squeeze=False)
    for ax, c in zip(axes[0], cases):
        names = [s for s in REPORT_STAGES if c.samples.get(s)]
        ax.boxplot([c.samples[s] for s in names], whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30)
        ax.set_ylabel("ms")
        ax.set_title(f"{c.size[1]}x{c.size[0]} {c.precision} {c.condition}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    cdf = axes[0][-1]
    for c in cases:
        x = np.sort(np.asarray(c.samples["total"]))
        cdf.plot(x, np.arange(1, x.size + 1) / x.size, label=f"{c.size[1]}x{c.size[0]} {c.precision}")
    cdf.set_xlabel("total ms")
    cdf.set_ylabel("fraction of frames")
    cdf.set_title("CDF of frame latency", fontsize=9)
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_heatmap(
    values: np.ndarray,
    rows: Sequence[Any],
    cols: Sequence[Any],
    path: str | Path,
    *,
    row_label: str,
    col_label: str,
    title: str,
    unit: str = "ms",
) -> Path:
    """A heatmap of `values[row, col]` with every cell annotated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(cols), 1.0 + 0.6 * len(rows)))
    im = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title, fontsize=9)
    finite = values[np.isfinite(values)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            text = "—" if not np.isfinite(v) else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if v < mid else "black")
    fig.colorbar(im, ax=ax, label=unit)
    fig.tight_layout()
    return save_figure(fig, path)


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def interleaved(fns: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each function once per round, in turn, and collect what each returns (ms). Measuring A and B
    interleaved keeps a load change on a shared machine from landing on only one of them."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(float(fn()))
    return out
