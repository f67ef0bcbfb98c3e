"""Output helpers for the `camera`, `restore` and `demo` verbs: atomic text writes and a progress bar
(tqdm when installed, else a plain one-line counter). No heavy imports."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class _PlainBar:
    """A stand-in for tqdm: `desc n/total` rewritten in place on a terminal, a line every 10 % otherwise."""

    def __init__(self, total: int | None, desc: str, unit: str, disable: bool) -> None:
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.n = 0
        self._tty = sys.stderr.isatty()
        self._last = 0.0
        self._last_decile = -1

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        if self._tty:
            if time.monotonic() - self._last > 0.1 or self.n == self.total:
                self._last = time.monotonic()
                total = f"/{self.total}" if self.total else ""
                print(f"\r{self.desc}: {self.n}{total} {self.unit}", end="", file=sys.stderr, flush=True)
        elif self.total:
            decile = self.n * 10 // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                print(f"{self.desc}: {self.n}/{self.total} {self.unit}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, message: str, file: Any = None) -> None:
        if self._tty and not self.disable:
            print("\r", end="", file=sys.stderr)
        print(message, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        if self._tty and not self.disable:
            print(file=sys.stderr, flush=True)


def progress_bar(total: int | None, desc: str, unit: str = "it", disable: bool = False) -> Any:
    """A progress bar with `update(n)`, `set_postfix_str(s)`, `write(message)` (a line above the bar,
    on stderr) and `close()`."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, desc, unit, disable)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, file=sys.stderr)


def progress(
    items: Iterable[T], total: int | None, desc: str, unit: str = "it", disable: bool = False
) -> Iterator[T]:
    """Iterate `items` with a progress bar."""
    bar = progress_bar(total, desc, unit, disable)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
