"""The one progress reporter: `Progress` hands out bars (tqdm when installed, else a plain one-line counter,
on stderr) to the long steps — export, precision, build, evaluation, training, the frame verbs — or silent
ones when it is disabled. A step takes `progress: Progress | bool` (`as_progress` reads either). No heavy
imports."""

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

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def write(self, message: str, file: Any = None) -> None:
        if self._tty and not self.disable:
            print("\r", end="", file=sys.stderr)
        print(message, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        if self._tty and not self.disable:
            print(file=sys.stderr, flush=True)


class Progress:
    """Whether and how long steps report progress: `bar(...)` for a step counted by hand, `each(...)` to
    iterate with one. Disabled, every bar is silent."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = bool(enabled)

    def __bool__(self) -> bool:
        return self.enabled

    def __repr__(self) -> str:
        return f"Progress({self.enabled})"

    def bar(
        self, total: int | None, desc: str, unit: str = "it", initial: int = 0, leave: bool = True
    ) -> Any:
        """A bar with `update(n)`, `set_postfix_str(s)`, `set_description(s)`, `write(message)` (a line
        above the bar, on stderr) and `close()`, starting at `initial`; `leave=False` clears it when closed."""
        try:
            from tqdm import tqdm
        except ImportError:
            plain = _PlainBar(total, desc, unit, not self.enabled)
            plain.n = initial
            return plain
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            initial=initial,
            disable=not self.enabled,
            leave=leave,
            dynamic_ncols=True,
        )

    def each(self, items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
        """Iterate `items` with a bar (a sequence gives its own total)."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        bar = self.bar(total, desc, unit)
        try:
            for item in items:
                yield item
                bar.update(1)
        finally:
            bar.close()


def as_progress(progress: Progress | bool) -> Progress:
    """The reporter a `progress` argument names: a `Progress` as it is, True / False as an enabled or silent
    one."""
    return progress if isinstance(progress, Progress) else Progress(progress)
