"""Atomic file writes (write beside the destination, then rename, so readers never see half a file) and
`sha256_file`, the one file hash every record uses (checkpoints, graphs, bundles, shipped files).

Files get the usual permissions (umask), unlike `tempfile.mkstemp`'s 0600. No heavy imports. A path that
cannot be written is a one-line `UserError` naming it, never a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from edgerestore.errors import UserError


def _why_unwritable(path: Path, exc: OSError | None = None) -> str:
    """Why `path` cannot be written: a non-folder on the way, a folder in its place, or `exc`'s reason."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a folder"
            break
    if path.is_dir():
        return "it is a folder"
    return (exc.strerror or str(exc)) if exc is not None else "not writable"


def check_writable(path: str | Path, option: str, *, folder: bool = False) -> None:
    """Before any work: `UserError` naming `option` unless `path` (a file, or with `folder=True` a folder)
    could be created. Probes the nearest existing folder with a temporary file; creates nothing that stays."""
    path = Path(path)
    hint = f"; choose a writable {option}"
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"cannot write {path}: it is not a folder{hint}")
    base = path if folder and path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
    if not base.is_dir() or (not folder and path.is_dir()):
        raise UserError(f"cannot write {path}: {_why_unwritable(path)}{hint}")
    probe = base / f".edgerestore-probe.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        open(probe, "xb").close()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}{hint}") from None


@contextlib.contextmanager
def exclusive_lock(path: str | Path, option: str, holder: str):
    """Hold `<path>.lock` (an advisory `flock`, released by the kernel when the process dies, even by
    SIGKILL) for the duration; `UserError` naming `option` when another process holds it, e.g. two trainings
    writing the same checkpoint. The lock file records the holder's pid and is removed on exit."""
    import fcntl

    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(
            f"cannot write {lock}: {_why_unwritable(lock, exc)}; choose a writable {option}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UserError(
                f"{holder} (pid {other}) is writing {path}; wait for it or choose another {option}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)


def remove_stale_partials(path: Path) -> None:
    """Remove `.<name>.<pid>-<id>.partial` files beside `path` left by writers that died mid-write (SIGKILL,
    power loss): their pid no longer runs. A live writer's file is left alone."""
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f".{path.name}.*.partial"):
            pid_text = tmp.name[len(path.name) + 2 :].split("-", 1)[0]
            if not pid_text.isdigit() or int(pid_text) == os.getpid():
                continue
            try:
                os.kill(int(pid_text), 0)
            except ProcessLookupError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            except PermissionError:  # someone else's live process
                pass


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A temporary file name beside `path` to write to; it becomes `path` when the block ends, and is removed
    when the block fails or is interrupted (so `path` appears whole or not at all). An OSError is a one-line
    UserError naming `path`; stale partial files of dead writers are removed first."""
    path = Path(path)
    remove_stale_partials(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {path}: {_why_unwritable(path, exc)}") from None
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (`atomic_output`)."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in `chunk`-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
