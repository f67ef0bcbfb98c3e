"""How a `Restorer`'s results reach the caller: `InferenceThread`, the one thread frames queue on (with a
deadline, `submit` / `result`, `stream`), and `Ledger`, what was delivered (`RestorerStats`) with the
deadline's bookkeeping — a result the caller stopped waiting for is not counted when it finishes, only as
dropped, and a branch slower than the deadline is warned about once.

Must not import torch.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from edgerestore.errors import UserError

log = logging.getLogger("edgerestore.restorer")

CLOSED = "this Restorer is closed; open a new one with Restorer.open(bundle_dir)"


@dataclass
class RestorerStats:
    frames: int = 0
    restored: int = 0
    clean: int = 0
    deadline_missed: int = 0
    late_dropped: int = 0
    per_condition: dict[str, int] = field(default_factory=dict)


class Ledger:
    """`stats` of the delivered results, under one lock. A prepared frame (anything with `finished` and
    `abandoned` flags) is either finished by the thread or given up on by a caller past its deadline,
    never both unnoticed."""

    def __init__(self) -> None:
        self.stats = RestorerStats()
        self._lock = threading.Lock()
        self._warned_late: set[str] = set()  # branches already warned about as slower than the deadline

    def finished(self, prep: Any, result: Any) -> Any:
        """Count a result unless the caller already gave up on it (a missed deadline: the raw frame was
        delivered instead and counted then)."""
        with self._lock:
            prep.finished = True
            if not prep.abandoned:
                self._count(result)
        return result

    def delivered(self, result: Any) -> Any:
        """Count a result delivered in place of one that missed its deadline."""
        with self._lock:
            self._count(result)
        return result

    def give_up(self, prep: Any) -> bool:
        """The caller stops waiting for `prep`: True, unless it finished meanwhile (then deliver it)."""
        with self._lock:
            if not prep.finished:
                prep.abandoned = True
        return prep.abandoned

    def late(self, future: Future, deadline_ms: float | None) -> None:
        """A given-up frame's result arrived (dropped); warn once per branch slower than `deadline_ms`."""
        with self._lock:
            self.stats.late_dropped += 1
        if future.cancelled() or future.exception() is not None:
            return
        late = future.result()
        if deadline_ms is None or late.condition in self._warned_late or late.timings["total"] <= deadline_ms:
            return
        self._warned_late.add(late.condition)
        log.warning(
            "deadline_ms=%g is below the %s branch's latency on this machine (%.0f ms measured): its frames "
            "pass through raw; raise deadline_ms, lower the frame size or use a faster bundle",
            deadline_ms,
            late.condition,
            late.timings["total"],
        )

    def _count(self, result: Any) -> None:
        st = self.stats
        st.frames += 1
        st.restored += bool(result.restored)
        st.clean += result.condition == "clean"
        if "deadline_missed" in result.flags:
            st.deadline_missed += 1
        elif result.condition != "blind":
            st.per_condition[result.condition] = st.per_condition.get(result.condition, 0) + 1


class InferenceThread:
    """The one thread a restorer's frames run on, in the order they were queued. After `close()` (which
    lets the queued frames finish) every call raises `UserError`."""

    def __init__(self) -> None:
        self.closed = False
        self.inflight: Future | None = None  # the frame a deadline-bound call is waiting for
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()  # submit()'s frames, for result()

    def _submit(self, run: Callable[[Any], Any], prep: Any) -> Future:  # with the lock held
        if self.closed:
            raise UserError(CLOSED)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgerestore-infer")
        return self._executor.submit(run, prep)

    def run(self, run: Callable[[Any], Any], prep: Any) -> Future:
        with self._lock:
            return self._submit(run, prep)

    def run_unless_busy(self, run: Callable[[Any], Any], prep: Any) -> Future | None:
        """`run` it, unless the previous deadline-bound frame still occupies the thread (None)."""
        with self._lock:
            if self.closed:
                raise UserError(CLOSED)
            if self.inflight is not None and not self.inflight.done():
                return None
            self.inflight = self._submit(run, prep)
            return self.inflight

    def queue(self, run: Callable[[Any], Any], prep: Any) -> Future:
        """`run` it, kept for `oldest()`."""
        with self._lock:
            future = self._submit(run, prep)
            self._pending.append(future)
        return future

    def oldest(self) -> Future:
        with self._lock:
            if not self._pending:
                raise UserError("result() called with no submitted frame; call submit(frame) first")
            return self._pending.popleft()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
