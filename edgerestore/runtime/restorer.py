"""`Restorer`: the object users embed in a camera loop. Router first, then only the selected branch.

Per frame (UFFN bundles): normalise the input to uint8 BGR, area-resize a thumbnail, run the `router`; a
`clean` verdict returns the frame untouched; otherwise pad (reflect) to the stride, run the `trunk` and the
ONE selected `branch_<condition>` (the trunk's features stay inside the backend), crop back and convert to
the input's format. A branch the manifest lists in `branch_scales` runs (with the trunk) on the
area-downscaled frame, and the local affine map it applied there (gain and offset, the guided filter) is upsampled and applied to the frame (flag "reduced"; as `UFFN.restore`
composes it). CMUDRN bundles have one graph and no router: every frame runs it.

Video mode smooths the condition (minimum dwell, optional confidence margin) so one misjudged frame does
not flip the branch; routing can run every N frames; a condition can be forced; the router can run alone.
With `deadline_ms`, a frame whose result would arrive late is returned raw, flagged, instead of stalling.
Safe from several threads (a lock around the backend), also while `close()` runs (later calls raise
`UserError`); `submit()`/`result()` and `stream()` overlap preparing the next frame with running the
current one.

Input rule (`runtime/frames.py`, `normalise_frame`): numpy uint8 or uint16 arrays, gray, BGR / RGB, BGRA /
RGBA, each side >= MIN_SIDE, any size above: a frame that once padded exceeds the bundle's max shape or
`tile_pixels` runs in overlapping tiles (`runtime/tiles.py`) in bounded memory, with the router on the whole
frame's thumbnail; the result has the input's dtype, channel count and order. A reduced branch's map is
applied at full size by `runtime/guided.py`; video hysteresis is `runtime/smoothing.py`.

Must not import torch.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from edgerestore.conditions import CONDITIONS, acts_on, calibrated, check_threshold
from edgerestore.contract import (
    FEATURES,
    FRAME,
    MIN_SIDE,
    PROBS,
    RESTORED,
    THUMBNAIL,
    pad_to,
    reduced_size,
    router_thumbnail,
)
from edgerestore.errors import UserError
from edgerestore.runtime.backend import Backend, open_backend
from edgerestore.runtime.delivery import CLOSED, InferenceThread, Ledger
from edgerestore.runtime.frames import FrameFormat, denormalise_frame, normalise_frame
from edgerestore.runtime.guided import GuidedUpsampler
from edgerestore.runtime.layout import read_layout
from edgerestore.runtime.smoothing import ConditionSmoother
from edgerestore.runtime.tiles import TILE_OVERLAP, TILE_PIXELS, padded_side, run_in_tiles

STAGES = ("pre", "router", "trunk", "branch", "copies", "post", "total")


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
    padded: np.ndarray | None  # None: the frame runs in tiles
    thumbnail: np.ndarray | None
    fmt: FrameFormat
    t_start: float
    pre_ms: float
    index: int
    abandoned: bool = False  # the caller stopped waiting (deadline): the result is not delivered
    finished: bool = False


# ---------------------------------------------------------------------------------------------------------
# The restorer
# ---------------------------------------------------------------------------------------------------------


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
        tile_pixels: int = TILE_PIXELS,
        tile_overlap: int = TILE_OVERLAP,
    ) -> None:
        if int(tile_pixels) < MIN_SIDE * MIN_SIDE or int(tile_overlap) < 0:
            raise UserError(
                f"tile_pixels={tile_pixels!r}, tile_overlap={tile_overlap!r}: give at least "
                f"{MIN_SIDE * MIN_SIDE} pixels per tile and an overlap >= 0"
            )
        if min_confidence is not None:
            check_threshold(min_confidence, f"min_confidence={min_confidence!r}")
        if deadline_ms is not None and not deadline_ms > 0:
            raise UserError(f"deadline_ms={deadline_ms!r}: give a positive number of milliseconds (or None)")
        if int(route_every) < 1:
            raise UserError(
                f"route_every={route_every!r}: route at least every frame (1) or every n-th frame"
            )
        lay = read_layout(bundle, backend, loops)
        self.bundle = bundle
        self.backend = backend
        self.family, self.conditions, self.model_graph = lay.family, lay.conditions, lay.model_graph
        self.stride, self.thumbnail_size = lay.stride, lay.thumbnail_size
        self.branch_scales: dict[str, float] = lay.branch_scales
        self.min_hw, self.max_hw, self._features = lay.min_hw, lay.max_hw, lay.features
        # do no harm: the router's calibrated confidence must reach `min_confidence` for a frame to be restored
        self.temperature = lay.temperature
        self.min_confidence = lay.threshold if min_confidence is None else float(min_confidence)
        self.color = color
        self.video = video
        self.smoother = ConditionSmoother(dwell, margin)
        self.route_every = route_every
        self.force = force
        self.router_only = router_only
        self.deadline_ms = deadline_ms
        self.tile_pixels = int(tile_pixels)
        self.tile_overlap = int(tile_overlap)
        self._ledger = Ledger()  # what was delivered, and the deadline's bookkeeping
        self.stats = self._ledger.stats
        self._thread = InferenceThread()  # the one inference thread (deadline, submit, stream)
        self._backend_closed = False
        self._check_blind_options()
        self._lock = threading.RLock()
        self._guided = GuidedUpsampler()  # a reduced branch's map at full size, with its work images
        self._index = 0
        self._last: tuple[int, float, np.ndarray | None] | None = None  # (condition, confidence, probs)
        self._uploaded: np.ndarray | None = None  # the padded frame already bound to the trunk this frame

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
        untouched, flagged "uncertain"; default: the threshold calibrated at training, in the manifest),
        `tile_pixels` and `tile_overlap` (frames of any size, see the module doc)."""
        from edgerestore.engines.bundle import load_bundle

        bundle = load_bundle(Path(bundle_dir), expect_backend=None if backend == "auto" else backend)
        kind = None if backend == "auto" else backend
        engine = open_backend(bundle, kind, threads=threads, trt_module=trt_module, cuda_graphs=cuda_graphs)
        try:
            return cls(bundle, engine, **options)
        except BaseException:
            engine.close()
            raise

    # -- what measuring needs (edgerestore.measure) ------------------------------------------------------
    @property
    def threads(self) -> int | None:
        """The intra-op thread count the backend is configured with (0: ONNX Runtime's default), or None
        for a backend without one (TensorRT)."""
        return self.backend.intra_op_threads

    def padded_frame(self, frame: np.ndarray) -> np.ndarray:
        """`frame` (uint8 BGR HxWx3) as the graphs take it: [1, H', W', 3], reflect-padded to the stride and
        the bundle's min shape."""
        return pad_to(frame, self.stride, self.min_hw)[None]

    def reduced_frame(self, frame: np.ndarray, condition: str) -> np.ndarray | None:
        """The area-downscaled copy of `frame` that `condition`'s branch runs on when the manifest's
        `branch_scales` reduce it, or None when that branch runs at full resolution."""
        h, w = frame.shape[:2]
        size = reduced_size(h, w, self.branch_scales.get(condition, 1.0))
        if size == (h, w):
            return None
        return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)

    def trunk_outputs(self, height: int, width: int) -> dict[str, tuple[int, ...]] | None:
        """The output shapes the trunk runs with on a padded height x width frame (None: the backend takes
        them from the graph)."""
        return {FEATURES: (1, self._features, height // 2, width // 2)} if self._features else None

    def close(self) -> None:
        """Finish the frames already queued, then release the backend. Calls after (or during) `close()`
        from any thread raise `UserError`; closing twice is harmless."""
        self._thread.close()  # no new frame is accepted from here on; the queued ones finish
        with self._lock:
            if not self._backend_closed:
                self._backend_closed = True
                self.backend.close()

    def _check_open(self) -> None:
        if self._thread.closed:
            raise UserError(CLOSED)

    def _check_blind_options(self) -> None:
        """CMUDRN is blind (no router, no branches): `force` and `router_only` cannot apply."""
        if self.model_graph is None:
            return
        for name, value in (("force", self.force), ("router_only", self.router_only or None)):
            if value is not None:
                raise UserError(
                    f"{name}={value!r}: bundle {self.bundle.path} is a blind {self.family.upper()} model with "
                    f"no router or branches; leave {name} unset"
                )

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
    def _fits(self, h: int, w: int) -> bool:
        """Does an h x w frame run whole (padded, within the bundle's max shape and `tile_pixels`)?"""
        hp, wp = padded_side(h, self.stride, self.min_hw[0]), padded_side(w, self.stride, self.min_hw[1])
        within = self.max_hw is None or (hp <= self.max_hw[0] and wp <= self.max_hw[1])
        return within and hp * wp <= self.tile_pixels

    def _prepare(self, frame: Any) -> _Prepared:
        self._check_open()
        t0 = time.perf_counter()
        bgr, fmt = normalise_frame(frame, self.color)
        # a frame too large to run whole is cut into tiles later, without a padded full-size copy
        padded = self.padded_frame(bgr) if self._fits(*bgr.shape[:2]) else None
        thumb = None
        if self.model_graph is None and self.force is None:  # a forced frame skips the router (see _route)
            thumb = router_thumbnail(bgr, self.thumbnail_size)[None]
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
        be.bind_input("router", THUMBNAIL, prep.thumbnail)
        be.run("router", {PROBS: (1, len(CONDITIONS))})
        self._upload_ahead(prep)
        be.synchronize()
        probs = calibrated(np.array(be.read("router", PROBS)[0], dtype=np.float32), self.temperature)
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

    def _upload_ahead(self, prep: _Prepared) -> None:
        """On an asynchronous backend (TensorRT), queue the frame's upload to the trunk behind the router,
        before waiting for the router's verdict: the host-side copy runs while the GPU routes and the trunk
        starts as soon as a branch is chosen (`_graphs` then binds nothing twice). Only for a frame that runs
        whole, when the previous verdict was a full-resolution branch (or there was none): a stream of clean
        or reduced-branch frames does not pay for uploads it never uses."""
        self._uploaded = None
        if not self.backend.asynchronous or prep.padded is None:
            return
        last = None if self._last is None else self._last[0]
        if last == 0 or (last is not None and self.branch_scales.get(CONDITIONS[last], 1.0) != 1.0):
            return
        self.backend.bind_input("trunk", FRAME, prep.padded)
        self._uploaded = prep.padded

    def _infer(self, prep: _Prepared) -> RestoreResult:
        with self._lock:
            if self._backend_closed:
                raise UserError(CLOSED)
            self._check_blind_options()
            prep.index = self._index
            self._index += 1
            be = self.backend
            be.reset_timings()
            self._uploaded = None
            flags: set[str] = set()
            if prep.padded is not None and prep.padded.shape[1:3] != prep.bgr.shape[:2]:
                flags.add("padded")
            reduce_ms = 0.0
            h, w = prep.bgr.shape[:2]
            if self.model_graph is not None:
                condition, confidence, probs = "blind", math.nan, None
                branch_key = self.model_graph
                restored = self._run_frame(branch_key, prep.bgr, prep.padded, flags)
                t_post = time.perf_counter()
            else:
                index, confidence, probs = self._route(prep, flags)
                condition = CONDITIONS[index]
                if self.router_only or index == 0:
                    flags.add("router_only" if self.router_only else "clean")
                    result = self._raw(prep, condition, confidence, flags, probs)
                    result.timings.update(self._stage_times(be, None))
                    result.timings["total"] = (time.perf_counter() - prep.t_start) * 1e3
                    return self._ledger.finished(prep, result)
                branch_key = f"branch_{condition}"
                t_small = time.perf_counter()
                small = self.reduced_frame(prep.bgr, condition)
                if small is None:
                    restored = self._run_frame(branch_key, prep.bgr, prep.padded, flags)
                    t_post = time.perf_counter()
                else:
                    flags.add("reduced")
                    reduce_ms = (time.perf_counter() - t_small) * 1e3
                    restored_small = self._run_frame(branch_key, small, None, flags)
                    t_post = time.perf_counter()
                    restored = self._guided.apply(prep.bgr, small, restored_small, self.tile_pixels)
            image = denormalise_frame(restored, prep.fmt, prep.original)
            timings = dict.fromkeys(STAGES, 0.0)
            timings.update(self._stage_times(be, branch_key))
            timings["pre"] = prep.pre_ms + reduce_ms
            timings["post"] = (time.perf_counter() - t_post) * 1e3
            timings["total"] = (time.perf_counter() - prep.t_start) * 1e3
            result = RestoreResult(
                image, condition, confidence, True, timings, frozenset(flags), probs, prep.index
            )
            return self._ledger.finished(prep, result)

    def _graphs(self, key: str, padded: np.ndarray) -> np.ndarray:
        """Run one padded [1, H, W, 3] frame through the trunk and branch `key` (or CMUDRN graph `key`);
        the backend's output view."""
        be = self.backend
        hp, wp = padded.shape[1:3]
        if key == self.model_graph:
            be.bind_input(key, FRAME, padded)
            be.run(key, {RESTORED: (1, hp, wp, 3)})
        else:
            if self._uploaded is not padded:  # not already queued behind the router (_upload_ahead)
                be.bind_input("trunk", FRAME, padded)
            self._uploaded = None
            be.run("trunk", self.trunk_outputs(hp, wp))
            be.bind_input(key, FRAME, be.input("trunk", FRAME))  # no second upload
            be.bind_input(key, FEATURES, be.output("trunk", FEATURES))
            be.run(key, {RESTORED: (1, hp, wp, 3)})
        out = be.read(key, RESTORED)
        be.synchronize()
        return out

    def _run_frame(
        self, key: str, image: np.ndarray, padded: np.ndarray | None, flags: set[str]
    ) -> np.ndarray:
        """`image` (uint8 BGR HxWx3) restored by graph `key`, in its own memory (backend buffers are reused):
        whole when it fits (`padded`: its padded copy, if already made), else in overlapping tiles (flag
        "tiled") whose cores are stitched: memory is bounded by `tile_pixels`, not by the frame."""
        h, w = image.shape[:2]
        if padded is None and self._fits(h, w):
            padded = self.padded_frame(image)
        if padded is not None:
            return np.array(self._graphs(key, padded)[0, :h, :w], copy=True)
        flags.add("tiled")
        return run_in_tiles(
            image,
            lambda part: self._graphs(key, part),
            stride=self.stride,
            overlap=self.tile_overlap,
            max_pixels=self.tile_pixels,
            max_hw=self.max_hw,
            min_hw=self.min_hw,
        )

    @staticmethod
    def _stage_times(be: Backend, branch: str | None) -> dict[str, float]:
        t = be.timings_ms()
        out = {"router": t.get("router", 0.0), "trunk": t.get("trunk", 0.0), "copies": t.get("copies", 0.0)}
        out["branch"] = t.get(branch, 0.0) if branch else 0.0
        return out

    def __call__(self, frame: Any) -> RestoreResult:
        """Restore one frame (see the class and module docs). With `deadline_ms`, never waits longer than
        the budget: a late frame comes back raw with flag "deadline_missed" (and "busy" if the previous
        late frame is still running); the late result is dropped, and `stats` counts only what was
        delivered. A branch whose measured latency exceeds the deadline is warned about once (logger
        `edgerestore.restorer`): its frames cannot make it."""
        prep = self._prepare(frame)
        if self.deadline_ms is None:
            return self._infer(prep)
        future = self._thread.run_unless_busy(self._infer, prep)
        if future is None:  # the previous late frame still occupies the thread
            return self._missed(prep, {"deadline_missed", "busy"})
        remaining = self.deadline_ms / 1e3 - (time.perf_counter() - prep.t_start)
        try:
            return future.result(timeout=max(0.0, remaining))
        except FutureTimeout:
            if not self._ledger.give_up(prep):  # it finished between the timeout and the lock: deliver it
                return future.result()
            future.add_done_callback(lambda late: self._ledger.late(late, self.deadline_ms))
            return self._missed(prep, {"deadline_missed"})

    def _missed(self, prep: _Prepared, flags: set[str]) -> RestoreResult:
        return self._ledger.delivered(self._raw(prep, "unknown", math.nan, flags))

    # -- pipelined use ----------------------------------------------------------------------------------
    def submit(self, frame: Any) -> Future:
        """Prepare `frame` in the calling thread and queue it for inference on the worker thread (frames
        run in submission order). Returns a Future of the RestoreResult; `result()` pops the oldest."""
        return self._thread.queue(self._infer, self._prepare(frame))

    def result(self, timeout: float | None = None) -> RestoreResult:
        """The oldest submitted frame's result (waits up to `timeout` seconds)."""
        return self._thread.oldest().result(timeout=timeout)

    def stream(self, frames: Iterable[Any], depth: int = 2) -> Iterator[RestoreResult]:
        """Results for `frames` in order, keeping up to `depth` frames in flight so reading and preparing
        the next frame overlaps running the current one."""
        in_flight: deque[Future] = deque()
        for frame in frames:
            in_flight.append(self._thread.run(self._infer, self._prepare(frame)))
            if len(in_flight) >= depth:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
