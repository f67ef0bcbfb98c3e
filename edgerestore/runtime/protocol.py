"""What the apps (camera, demo, restore, bench, the video pipeline) need of a restorer, as `typing.Protocol`
types: `Restorer` satisfies them, and so does any stand-in with the same few members (the tests' fake, a
wrapper around another model). Code that takes a restorer types it `RestorerLike` instead of `Any` and calls
these members directly instead of probing with `getattr`.

Imports nothing of the runtime's (typing and numpy only).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


class ManifestLike(Protocol):
    """The manifest fields the apps show: ``<profile> <backend> <precision>``."""

    profile: str
    family: str
    backend: str
    precision: str


class BundleLike(Protocol):
    """A loaded bundle: where it is and its manifest."""

    path: Path
    manifest: ManifestLike


class ResultLike(Protocol):
    """One frame's outcome (`edgerestore.runtime.restorer.RestoreResult`): the image to show (uint8 BGR),
    the condition acted on, the router's confidence (nan when it did not run), whether the frame was
    restored, per-stage times in ms (``total`` among them) and flags."""

    image: np.ndarray
    condition: str
    confidence: float
    restored: bool
    timings: Mapping[str, float]
    flags: Set[str]


class RestorerLike(Protocol):
    """A restorer as the apps use it: call it on a uint8 BGR frame; `force` a condition (None: the router
    decides); `reset` the video state between clips; `close` it at the end; `bundle` says what it runs."""

    force: str | None
    bundle: BundleLike

    def __call__(self, frame: np.ndarray) -> ResultLike: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class PipelinedRestorerLike(RestorerLike, Protocol):
    """A restorer that also queues frames (`Restorer.submit` / `result`): `submit` prepares a frame on the
    calling thread and runs it on the restorer's worker; `result` returns the oldest one's result. Used
    only without a `deadline_ms` (which `submit` does not apply)."""

    deadline_ms: float | None

    def submit(self, frame: np.ndarray) -> Future[ResultLike]: ...

    def result(self, timeout: float | None = None) -> ResultLike: ...


def describe(restorer: RestorerLike) -> tuple[str, str]:
    """(backend, precision) of a restorer, as its bundle's manifest names them."""
    m = restorer.bundle.manifest
    return str(m.backend), str(m.precision)


__all__ = [
    "BundleLike",
    "ManifestLike",
    "PipelinedRestorerLike",
    "RestorerLike",
    "ResultLike",
    "describe",
]
