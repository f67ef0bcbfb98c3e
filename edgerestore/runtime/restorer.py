"""`Restorer`: the object users embed in a camera loop. Router first, then only the selected branch.

Per frame (UFFN bundles): normalise the input to uint8 BGR, area-resize a thumbnail, run the `router`; a
`clean` verdict returns the frame untouched; otherwise pad (reflect) to the stride, run the `trunk` and the
ONE selected `branch_<condition>` (the trunk's features stay inside the backend), crop back and convert to
the input's format. A branch the manifest lists in `branch_scales` runs (with the trunk) on the
area-downscaled frame, and its upsampled correction is added to the frame (flag "reduced"; as `UFFN.restore`
composes it). CMUDRN bundles have one graph and no router: every frame runs it.

Video mode smooths the condition (minimum dwell, optional confidence margin) so one misjudged frame does
not flip the branch; routing can run every N frames; a condition can be forced; the router can run alone.
With `deadline_ms`, a frame whose result would arrive late is returned raw, flagged, instead of stalling.
Safe from several threads (a lock around the backend); `submit()`/`result()` and `stream()` overlap
preparing the next frame with running the current one.

Input rule (see `normalise_frame`): numpy uint8 or uint16 arrays, HxW or HxWx1 (gray), HxWx3 (BGR, or RGB
with color="rgb"), HxWx4 (BGRA / RGBA), each side >= MIN_SIDE and, once padded, within the bundle's max
shape. The result has the input's dtype, channel count and order: gray in -> gray out (BGR->gray of the
restored frame), alpha passed through unchanged, 16-bit in -> 8-bit inference -> 16-bit out (x257).

Must not import torch.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from edgerestore.conditions import CONDITIONS, acts_on, calibrated
from edgerestore.errors import BundleError, UserError
from edgerestore.imageio import reduced_size, router_thumbnail
from edgerestore.runtime.backend import Backend

#: The smallest frame side accepted (smaller frames carry too little for the router's thumbnail).
MIN_SIDE = 16
STAGES = ("pre", "router", "trunk", "branch", "copies", "post", "total")


# ---------------------------------------------------------------------------------------------------------
# Input normalisation
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameFormat:
    """How a caller's frame was laid out, to give the result back the same way."""

    dtype: np.dtype
    channels: int  # 1 (gray), 3, 4
    squeeze: bool  # gray given as HxW (not HxWx1)
    rgb: bool


def normalise_frame(frame: Any, color: str = "bgr") -> tuple[np.ndarray, FrameFormat]:
    """uint8 BGR HxWx3 (contiguous) for the graphs, and the caller's format. Raises UserError (one line)
    for anything the runtime does not accept."""
    if not isinstance(frame, np.ndarray):
        raise UserError(f"frame must be a numpy array (as cv2 returns), got {type(frame).__name__}")
    if frame.dtype not in (np.uint8, np.uint16):
        raise UserError(
            f"frame dtype {frame.dtype} is not supported; pass uint8 (or uint16) pixels, e.g. "
            "np.clip(x * 255, 0, 255).round().astype(np.uint8) for floats in [0, 1]"
        )
    if frame.ndim == 2:
        channels, squeeze = 1, True
    elif frame.ndim == 3 and frame.shape[2] in (1, 3, 4):
        channels, squeeze = frame.shape[2], False
    else:
        raise UserError(
            f"frame shape {frame.shape} is not an image; expected HxW, HxWx1, HxWx3 or HxWx4 (channels last)"
        )
    h, w = frame.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(f"frame of {h}x{w} is too small; both sides must be at least {MIN_SIDE} pixels")
    if color not in ("bgr", "rgb"):
        raise UserError(f"color must be 'bgr' or 'rgb', got {color!r}")
    fmt = FrameFormat(frame.dtype, channels, squeeze, color == "rgb")
    x = frame
    if x.dtype == np.uint16:
        x = ((x.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 65535 -> 255, rounded
    if channels == 1:
        bgr = cv2.cvtColor(np.ascontiguousarray(x.reshape(h, w)), cv2.COLOR_GRAY2BGR)
    elif channels == 4:
        bgr = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGBA2BGR if fmt.rgb else cv2.COLOR_BGRA2BGR)
    elif fmt.rgb:
        bgr = cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2BGR)
    else:
        bgr = np.ascontiguousarray(x)
    return bgr, fmt


def denormalise_frame(bgr: np.ndarray, fmt: FrameFormat, original: np.ndarray) -> np.ndarray:
    """The restored uint8 BGR frame in the caller's format (dtype, channels, order; alpha from `original`)."""
    if fmt.channels == 1:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if not fmt.squeeze:
            out = out[:, :, None]
    elif fmt.channels == 4:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA if fmt.rgb else cv2.COLOR_BGR2BGRA)
    elif fmt.rgb:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        out = bgr
    if fmt.dtype == np.uint16:
        out = out.astype(np.uint16) * np.uint16(257)
    if fmt.channels == 4:
        out[:, :, 3] = original[:, :, 3]
    return out


def pad_to(frame: np.ndarray, stride: int, min_hw: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Pad bottom/right by reflection so H, W are multiples of `stride` and at least `min_hw`."""
    h, w = frame.shape[:2]
    hp = max(-(-h // stride) * stride, -(-min_hw[0] // stride) * stride)
    wp = max(-(-w // stride) * stride, -(-min_hw[1] // stride) * stride)
    if (hp, wp) == (h, w):
        return frame
    return cv2.copyMakeBorder(frame, 0, hp - h, 0, wp - w, cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------------------------------------------
# Temporal smoothing of the router's verdict
# ---------------------------------------------------------------------------------------------------------


class ConditionSmoother:
    """Hysteresis for video: the current condition changes only when a different one wins `dwell`
    consecutive routed frames, or (if `margin` is set) beats the current one's probability by at least
    `margin` in a single frame. The first routed frame sets the condition directly."""

    def __init__(self, dwell: int = 3, margin: float | None = None) -> None:
        if dwell < 1:
            raise UserError(f"dwell must be >= 1 frame, got {dwell}")
        if margin is not None and not 0.0 < margin <= 1.0:
            raise UserError(f"margin must be in (0, 1], got {margin}")
        self.dwell = dwell
        self.margin = margin
        self.reset()

    def reset(self) -> None:
        self.current: int | None = None
        self._candidate: int | None = None
        self._streak = 0

    def update(self, probs: np.ndarray) -> int:
        winner = int(np.argmax(probs))
        if self.current is None or winner == self.current:
            self.current = winner
            self._candidate, self._streak = None, 0
            return self.current
        if winner == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = winner, 1
        by_margin = self.margin is not None and probs[winner] - probs[self.current] >= self.margin
        if self._streak >= self.dwell or by_margin:
            self.current = winner
            self._candidate, self._streak = None, 0
        return self.current


# ---------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    """One frame's outcome.

    `image`: the restored frame in the caller's format, or the caller's own array (same object) when
    `restored` is False. `condition`: the condition acted on ("blind" for CMUDRN bundles, "unknown" when a
    deadline passed before routing finished); `confidence`: the router's probability for it on this frame
    (nan when the router did not run on it). `timings`: ms per stage (`STAGES`; stages that did not run are
    0). `flags`: why the frame was handled as it was, e.g. "clean", "forced", "router_only", "smoothed",
    "route_skipped", "deadline_missed", "busy", "padded", "reduced" (a reduced-resolution branch)."""

    image: np.ndarray
    condition: str
    confidence: float
    restored: bool
    timings: dict[str, float]
    flags: frozenset[str] = frozenset()
    probs: np.ndarray | None = None
    index: int = -1


@dataclass
class _Prepared:
    original: np.ndarray
    bgr: np.ndarray
    padded: np.ndarray
    thumbnail: np.ndarray | None
    fmt: FrameFormat
    t_start: float
    pre_ms: float
    index: int


@dataclass
class RestorerStats:
    frames: int = 0
    restored: int = 0
    clean: int = 0
    deadline_missed: int = 0
    late_dropped: int = 0
    per_condition: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# The restorer
# ---------------------------------------------------------------------------------------------------------


def _make_backend(kind: str, bundle: Any, threads: int | None, trt_module: Any, cuda_graphs: bool) -> Backend:
    if kind == "onnxruntime":
        from edgerestore.runtime.ort import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads=threads, session_options=bundle.manifest.session_options or None)
    if kind == "tensorrt":
        from edgerestore.runtime.trt import TensorRTBackend

        return TensorRTBackend(trt_module=trt_module, cuda_graphs=cuda_graphs)
    raise UserError(f"unknown backend {kind!r}; expected onnxruntime or tensorrt")


class Restorer:
    """Router-first restoration of frames with one bundle. Build with `Restorer.open(bundle_dir, ...)`;
    use as `restorer(frame)`, or `submit(frame)` / `result()`, or `for r in restorer.stream(frames)`.
    Options are attributes and may be changed between frames (`force`, `router_only`, `route_every`,
    `deadline_ms`, `color`)."""

    def __init__(
        self,
        bundle: Any,
        backend: Backend,
        *,
        color: str = "bgr",
        video: bool = False,
        dwell: int = 3,
        margin: float | None = None,
        route_every: int = 1,
        force: str | None = None,
        router_only: bool = False,
        deadline_ms: float | None = None,
        loops: int | None = None,
        min_confidence: float | None = None,
    ) -> None:
        if min_confidence is not None and not 0.0 <= min_confidence < 1.0:
            raise UserError(
                f"min_confidence={min_confidence!r}: give a probability in [0, 1) (0: act on every verdict)"
            )
        if deadline_ms is not None and not deadline_ms > 0:
            raise UserError(f"deadline_ms={deadline_ms!r}: give a positive number of milliseconds (or None)")
        if int(route_every) < 1:
            raise UserError(
                f"route_every={route_every!r}: route at least every frame (1) or every n-th frame"
            )
        m = bundle.manifest
        self.bundle = bundle
        self.backend = backend
        self.family: str = m.family
        self.conditions: tuple[str, ...] = tuple(m.conditions)
        # UFFN's router outputs are indexed by CONDITIONS; CMUDRN (blind) lists the conditions it removes
        if (
            (self.conditions != CONDITIONS)
            if self.family == "uffn"
            else not set(self.conditions) <= set(CONDITIONS)
        ):
            raise BundleError(
                f"bundle conditions {list(self.conditions)} differ from this runtime's {list(CONDITIONS)}; "
                "rebuild the bundle with this edgerestore version"
            )
        self.stride = int(m.stride or 1)
        self.thumbnail_size = int(m.thumbnail_size or 0)
        self.branch_scales: dict[str, float] = dict(m.branch_scales)
        # do no harm: the router's calibrated confidence must reach `min_confidence` for a frame to be restored
        calibration = dict(getattr(m, "router_calibration", None) or {})
        self.temperature = float(calibration.get("temperature", 1.0))
        self.min_confidence = (
            float(calibration.get("threshold", 0.0)) if min_confidence is None else float(min_confidence)
        )
        prof = m.shape_profile or {}
        self.min_hw: tuple[int, int] = tuple(int(v) for v in prof.get("min", (1, 1)))  # type: ignore[assignment]
        self.max_hw: tuple[int, int] | None = tuple(int(v) for v in prof["max"]) if prof.get("max") else None  # type: ignore[assignment]
        self.color = color
        self.video = video
        self.smoother = ConditionSmoother(dwell, margin)
        self.route_every = route_every
        self.force = force
        self.router_only = router_only
        self.deadline_ms = deadline_ms
        self.stats = RestorerStats()
        names = set(bundle.graph_names)
        if self.family == "cmudrn":
            models = sorted(n for n in names if n.startswith("cmudrn_t"))
            if loops is not None:
                models = [n for n in models if n == f"cmudrn_t{loops}"]
            if len(models) != 1:
                raise UserError(
                    f"bundle has CMUDRN graphs {models or sorted(names)}; choose one with loops=<T>"
                    if len(models) > 1
                    else f"bundle has no CMUDRN graph for loops={loops}; it holds {sorted(names)}"
                )
            self.model_graph: str | None = models[0]
        else:
            self.model_graph = None
            need = {"router", "trunk"} | {f"branch_{c}" for c in CONDITIONS[1:]}
            if not need <= names:
                raise BundleError(f"bundle at {bundle.path} lacks graphs {sorted(need - names)}; rebuild it")
        self._features = self._feature_channels()
        self._lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: Future | None = None
        self._pending: deque[Future] = deque()
        self._index = 0
        self._last: tuple[int, float, np.ndarray | None] | None = None  # (condition, confidence, probs)

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        bundle_dir: str | Path,
        *,
        backend: str = "auto",
        threads: int | None = None,
        trt_module: str | ModuleType | None = None,
        cuda_graphs: bool = False,
        **options: Any,
    ) -> Restorer:
        """Load a bundle (hashes checked) and create its backend once.

        `backend`: "auto" (the bundle's), "onnxruntime" or "tensorrt"; `threads`: ONNX Runtime intra-op
        threads; `trt_module`: "tensorrt" or "tensorrt_rtx"; `cuda_graphs`: capture CUDA graphs (TensorRT).
        Other options: `color` ("bgr"|"rgb"), `video` (smooth the condition), `dwell`, `margin`,
        `route_every`, `force` (a condition name), `router_only`, `deadline_ms`, `loops` (CMUDRN T),
        `min_confidence` (do no harm: a frame whose calibrated router confidence is below it passes through
        untouched, flagged "uncertain"; default: the threshold calibrated at training, in the manifest)."""
        from edgerestore.engines.bundle import load_bundle

        bundle = load_bundle(Path(bundle_dir), expect_backend=None if backend == "auto" else backend)
        kind = bundle.manifest.backend if backend == "auto" else backend
        if kind == "tensorrt" and trt_module is None:
            trt_module = bundle.manifest.builder.get("name")  # the module the engines were built with
        engine = _make_backend(kind, bundle, threads, trt_module, cuda_graphs)
        try:
            for name in bundle.graph_names:
                engine.load(name, bundle.graph_path(name))
            engine.finalize()
            return cls(bundle, engine, **options)
        except BaseException:
            engine.close()
            raise

    def _feature_channels(self) -> int | None:
        if self.model_graph is not None:
            return None
        for t in self.backend.graphs["trunk"].outputs:
            if t.name == "features" and isinstance(t.shape[1], int) and t.shape[1] > 0:
                return int(t.shape[1])
        spec = (self.bundle.manifest.graphs.get("trunk") or {}).get("outputs") or []
        for t in spec:
            if t.get("name") == "features" and isinstance(t["shape"][1], int):
                return int(t["shape"][1])
        return None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            self.backend.close()

    def __enter__(self) -> Restorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forget the video state (smoothed condition, routing phase), e.g. on a scene cut."""
        with self._lock:
            self.smoother.reset()
            self._last = None
            self._index = 0

    # -- per frame --------------------------------------------------------------------------------------
    def _prepare(self, frame: Any) -> _Prepared:
        t0 = time.perf_counter()
        bgr, fmt = normalise_frame(frame, self.color)
        padded = pad_to(bgr, self.stride, self.min_hw)
        if self.max_hw is not None and (padded.shape[0] > self.max_hw[0] or padded.shape[1] > self.max_hw[1]):
            h, w = bgr.shape[:2]
            raise UserError(
                f"frame of {h}x{w} exceeds the bundle's max shape {self.max_hw[0]}x{self.max_hw[1]} (HxW); "
                "resize the frame or rebuild the bundle with a larger `edgerestore build --max HxW`"
            )
        thumb = None
        if self.model_graph is None and self.force is None:  # a forced frame skips the router (see _route)
            thumb = router_thumbnail(bgr, self.thumbnail_size)[None]
        padded = padded[None]  # [1, H, W, 3], still contiguous
        return _Prepared(frame, bgr, padded, thumb, fmt, t0, (time.perf_counter() - t0) * 1e3, -1)

    def _raw(
        self, prep: _Prepared, condition: str, confidence: float, flags: set[str], probs: Any = None
    ) -> RestoreResult:
        timings = dict.fromkeys(STAGES, 0.0)
        timings["pre"] = prep.pre_ms
        timings["total"] = (time.perf_counter() - prep.t_start) * 1e3
        return RestoreResult(
            prep.original, condition, confidence, False, timings, frozenset(flags), probs, prep.index
        )

    def _route(self, prep: _Prepared, flags: set[str]) -> tuple[int, float, np.ndarray | None]:
        if self.force is not None:
            flags.add("forced")
            if self.force not in CONDITIONS:
                raise UserError(
                    f"force={self.force!r} is not a condition; expected one of {', '.join(CONDITIONS)}"
                )
            return CONDITIONS.index(self.force), math.nan, None
        if self.video and self._last is not None and self.route_every > 1 and prep.index % self.route_every:
            flags.add("route_skipped")
            return self._last[0], math.nan, None
        be = self.backend
        if prep.thumbnail is None:  # prepared while a condition was forced
            prep.thumbnail = router_thumbnail(prep.bgr, self.thumbnail_size)[None]
        be.bind_input("router", "thumbnail", prep.thumbnail)
        be.run("router", {"probs": (1, len(CONDITIONS))})
        be.synchronize()
        probs = calibrated(np.array(be.read("router", "probs")[0], dtype=np.float32), self.temperature)
        probs = probs.astype(np.float32)
        winner = int(np.argmax(probs))
        vote = probs
        if winner and not acts_on(probs, self.min_confidence):
            flags.add("uncertain")  # below the calibrated threshold: this frame votes for passing through
            vote = probs.copy()
            vote[0] = 1.0
        if self.video:
            chosen = self.smoother.update(vote)
            if chosen != int(np.argmax(vote)):
                flags.add("smoothed")
        else:
            chosen = int(np.argmax(vote))
        self._last = (chosen, float(probs[chosen]), probs)
        return chosen, float(probs[chosen]), probs

    def _infer(self, prep: _Prepared) -> RestoreResult:
        with self._lock:
            prep.index = self._index
            self._index += 1
            be = self.backend
            be.reset_timings()
            flags: set[str] = set()
            hp, wp = prep.padded.shape[1:3]
            if (hp, wp) != prep.bgr.shape[:2]:
                flags.add("padded")
            small: np.ndarray | None = None
            reduce_ms = 0.0
            if self.model_graph is not None:
                condition, confidence, probs = "blind", math.nan, None
                be.bind_input(self.model_graph, "frame", prep.padded)
                be.run(self.model_graph, {"restored": (1, hp, wp, 3)})
                out = be.read(self.model_graph, "restored")
                branch_key = self.model_graph
            else:
                index, confidence, probs = self._route(prep, flags)
                condition = CONDITIONS[index]
                self.stats.per_condition[condition] = self.stats.per_condition.get(condition, 0) + 1
                if self.router_only or index == 0:
                    flags.add("router_only" if self.router_only else "clean")
                    self.stats.frames += 1
                    self.stats.clean += index == 0
                    result = self._raw(prep, condition, confidence, flags, probs)
                    result.timings.update(self._stage_times(be, None))
                    result.timings["total"] = (time.perf_counter() - prep.t_start) * 1e3
                    return result
                branch_key = f"branch_{condition}"
                t_small = time.perf_counter()
                frame_in, small = self._branch_input(prep.bgr, prep.padded, condition)
                if small is not None:
                    hp, wp = frame_in.shape[1:3]
                    flags.add("reduced")
                    reduce_ms = (time.perf_counter() - t_small) * 1e3
                be.bind_input("trunk", "frame", frame_in)
                be.run(
                    "trunk", {"features": (1, self._features, hp // 2, wp // 2)} if self._features else None
                )
                be.bind_input(branch_key, "frame", be.input("trunk", "frame"))  # no second upload
                be.bind_input(branch_key, "features", be.output("trunk", "features"))
                be.run(branch_key, {"restored": (1, hp, wp, 3)})
                out = be.read(branch_key, "restored")
            be.synchronize()
            t_post = time.perf_counter()
            h, w = prep.bgr.shape[:2]
            if small is None:
                cropped = np.array(out[0, :h, :w], copy=True)  # own memory: backend buffers are reused
            else:
                cropped = self._add_correction(prep.bgr, small, out[0, : small.shape[0], : small.shape[1]])
            image = denormalise_frame(cropped, prep.fmt, prep.original)
            timings = dict.fromkeys(STAGES, 0.0)
            timings.update(self._stage_times(be, branch_key))
            timings["pre"] = prep.pre_ms + reduce_ms
            timings["post"] = (time.perf_counter() - t_post) * 1e3
            timings["total"] = (time.perf_counter() - prep.t_start) * 1e3
            self.stats.frames += 1
            self.stats.restored += 1
            return RestoreResult(
                image, condition, confidence, True, timings, frozenset(flags), probs, prep.index
            )

    def _branch_input(
        self, bgr: np.ndarray, padded: np.ndarray, condition: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(the [1, H, W, 3] frame the trunk and `condition`'s branch run on, the area-downscaled frame or None).
        `padded` is the full frame padded for the graphs; a reduced-resolution branch gets its downscaled copy
        padded the same way."""
        h, w = bgr.shape[:2]
        size = reduced_size(h, w, self.branch_scales.get(condition, 1.0))
        if size == (h, w):
            return padded, None
        small = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return pad_to(small, self.stride, self.min_hw)[None], small

    @staticmethod
    def _add_correction(bgr: np.ndarray, small: np.ndarray, restored_small: np.ndarray) -> np.ndarray:
        """The full-resolution result of a reduced-resolution branch: the frame plus the bilinearly upsampled
        correction (restored − input at the reduced size), as the model's `UFFN.restore` composes it."""
        correction = cv2.subtract(np.ascontiguousarray(restored_small), small, dtype=cv2.CV_32F)
        up = cv2.resize(correction, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)
        return cv2.add(bgr, up, dtype=cv2.CV_8U)  # rounded and saturated; OpenCV's ops: ~10x numpy's here

    @staticmethod
    def _stage_times(be: Backend, branch: str | None) -> dict[str, float]:
        t = be.timings_ms()
        out = {"router": t.get("router", 0.0), "trunk": t.get("trunk", 0.0), "copies": t.get("copies", 0.0)}
        out["branch"] = t.get(branch, 0.0) if branch else 0.0
        return out

    def __call__(self, frame: Any) -> RestoreResult:
        """Restore one frame (see the class and module docs). With `deadline_ms`, never waits longer than
        the budget: a late frame comes back raw with flag "deadline_missed" (and "busy" if the previous
        late frame is still running); the late result is dropped."""
        prep = self._prepare(frame)
        if self.deadline_ms is None:
            return self._infer(prep)
        with self._queue_lock:
            if self._inflight is not None and not self._inflight.done():
                self.stats.deadline_missed += 1
                return self._raw(prep, "unknown", math.nan, {"deadline_missed", "busy"})
            future = self._worker().submit(self._infer, prep)
            self._inflight = future
        remaining = self.deadline_ms / 1e3 - (time.perf_counter() - prep.t_start)
        try:
            return future.result(timeout=max(0.0, remaining))
        except FutureTimeout:
            self.stats.deadline_missed += 1
            future.add_done_callback(self._count_late)
            return self._raw(prep, "unknown", math.nan, {"deadline_missed"})

    def _count_late(self, future: Future) -> None:
        self.stats.late_dropped += 1

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgerestore-infer")
        return self._executor

    # -- pipelined use ----------------------------------------------------------------------------------
    def submit(self, frame: Any) -> Future:
        """Prepare `frame` in the calling thread and queue it for inference on the worker thread (frames
        run in submission order). Returns a Future of the RestoreResult; `result()` pops the oldest."""
        prep = self._prepare(frame)
        with self._queue_lock:
            future = self._worker().submit(self._infer, prep)
            self._pending.append(future)
        return future

    def result(self, timeout: float | None = None) -> RestoreResult:
        """The oldest submitted frame's result (waits up to `timeout` seconds)."""
        with self._queue_lock:
            if not self._pending:
                raise UserError("result() called with no submitted frame; call submit(frame) first")
            future = self._pending.popleft()
        return future.result(timeout=timeout)

    def stream(self, frames: Iterable[Any], depth: int = 2) -> Iterator[RestoreResult]:
        """Results for `frames` in order, keeping up to `depth` frames in flight so reading and preparing
        the next frame overlaps running the current one."""
        in_flight: deque[Future] = deque()
        for frame in frames:
            in_flight.append(self._worker().submit(self._infer, self._prepare(frame)))
            if len(in_flight) >= depth:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
