"""The bench report (`edgerestore-bench/1`, docs/DESIGN.md): `BenchReport`, its table, and JSON / CSV files
written atomically.

numpy only; never torch.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerestore.errors import UserError
from edgerestore.files import write_text_atomic
from edgerestore.measure.cases import (
    CPU_STAGE,
    REFERENCE_CPU_STAGE,
    REFERENCE_STAGE,
    REPORT_STAGES,
    CaseResult,
)
from edgerestore.measure.device import BenchDevice

FORMAT = "edgerestore-bench/1"


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


#: Rows `cases_table` shows only where they were recorded.
_OPTIONAL_ROWS = (CPU_STAGE, REFERENCE_STAGE, REFERENCE_CPU_STAGE)


def cases_table(
    cases: Sequence[CaseResult], stages: Sequence[str] = (*REPORT_STAGES, *_OPTIONAL_ROWS)
) -> str:
    """A markdown table: one row per case and stage (mean, p50, p90, p99, max in ms, FPS on `total`); the
    CPU time and reference rows only where they were recorded."""
    lines = [
        "| case | stage | frames | mean ms | p50 | p90 | p99 | max | FPS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        for s in stages:
            st = c.stages.get(s)
            if st is None and s in _OPTIONAL_ROWS:
                continue
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


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buf.getvalue())
