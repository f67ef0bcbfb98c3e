"""Evaluating a restorer on paired sets (PSNR/SSIM per condition) and real folders (router accuracy).

A restorer is any callable ``restore(bgr_uint8) -> (bgr_uint8, condition | None, probs | None)``
(`edgerestore.restorers`: a PyTorch checkpoint or model, an engine bundle through the runtime, the identity,
the Dark Channel Prior; or a fake in tests). `evaluate` scores it and `write_report` writes report.md,
report.json and side-by-side input | output | target images.

numpy + OpenCV only.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from edgerestore.baselines import dehaze_dcp
from edgerestore.conditions import CONDITIONS
from edgerestore.data.pairs import PairedSet, guess_condition
from edgerestore.errors import UserError
from edgerestore.files import sha256_file, write_text_atomic
from edgerestore.imageio import is_image_file, read_image, write_image
from edgerestore.metrics import SSIM_WINDOW, score, wilson_interval
from edgerestore.progress import Progress, as_progress
from edgerestore.restorers import RestoreFn

METRICS: tuple[str, ...] = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


@dataclass
class ImageResult:
    """One image: scores of the degraded input, the output and (haze sets) DCP against the target."""

    name: str
    expected: str | None
    predicted: str | None
    confidence: float | None
    latency_ms: float
    input: dict[str, float] | None = None
    output: dict[str, float] | None = None
    dcp: dict[str, float] | None = None
    untouched: bool = False  # the output is the input bit for bit (clean verdict, or unsure: passed through)


@dataclass
class SetReport:
    """Means over one set. `input` is the do-nothing reference (degraded input vs target)."""

    name: str
    root: str
    kind: str  # "paired" | "real" | "clean" (the paired sets' targets: does the router leave clean frames alone?)
    layout: str
    condition: str | None
    n: int
    input: dict[str, float] | None
    output: dict[str, float] | None
    dcp: dict[str, float] | None
    router_accuracy: float | None
    latency_ms: float
    images: list[ImageResult] = field(default_factory=list)

    @property
    def untouched(self) -> int:
        """Images whose output is their input bit for bit."""
        return sum(r.untouched for r in self.images)


@dataclass
class EvalReport:
    restorer: str
    sets: list[SetReport]
    confusion: list[list[int]]  # rows: expected condition, columns: predicted, in CONDITIONS order
    conditions: tuple[str, ...] = CONDITIONS
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def _routed(self) -> tuple[int, int]:
        """(correctly routed, routed) images, from the confusion matrix."""
        return sum(self.confusion[i][i] for i in range(len(self.conditions))), sum(map(sum, self.confusion))

    @property
    def router_accuracy(self) -> float | None:
        correct, total = self._routed()
        return None if total == 0 else correct / total

    @property
    def router_accuracy_ci95(self) -> tuple[float, float] | None:
        correct, total = self._routed()
        return None if total == 0 else wilson_interval(correct, total)

    def to_json(self) -> dict:
        data = asdict(self)
        data["router_accuracy"] = self.router_accuracy
        data["router_accuracy_ci95"] = self.router_accuracy_ci95
        return _finite(data)

    def to_markdown(self) -> str:
        return _markdown(self)


def _finite(value):
    """JSON-safe copy: inf/nan become the strings "inf"/"-inf"/"nan" (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _mean_scores(rows: Iterable[dict[str, float] | None]) -> dict[str, float] | None:
    rows = [r for r in rows if r is not None]
    if not rows:
        return None
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def _panel(image: np.ndarray, label: str, height: int) -> np.ndarray:
    scale = height / image.shape[0]
    panel = cv2.resize(image, (max(1, round(image.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    bar = np.zeros((28, panel.shape[1], 3), np.uint8)
    cv2.putText(bar, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, panel])


def side_by_side(panels: Sequence[tuple[np.ndarray, str]], height: int = 360) -> np.ndarray:
    """Labelled panels (image, caption) in a row, each resized to `height` (never enlarged)."""
    height = min(height, min(img.shape[0] for img, _ in panels))
    return np.hstack([_panel(img, label, height) for img, label in panels])


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def _real_sets(real: str | Path) -> list[tuple[str, Path, list[Path]]]:
    root = Path(real)
    if not root.is_dir():
        raise UserError(f"real-image folder {root} does not exist")
    found = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        condition = sub.name.lower() if sub.name.lower() in CONDITIONS else guess_condition(sub)
        if condition is None:
            raise UserError(
                f"cannot tell the condition of {sub}; name each subfolder of {root} after a condition "
                f"({', '.join(CONDITIONS)})"
            )
        images = sorted(p for p in sub.iterdir() if is_image_file(p))
        if images:
            found.append((condition, sub, images))
    if not found:
        raise UserError(f"{root} has no subfolders with images; expected one subfolder per condition")
    return found


def _distinct_targets(sets: Sequence[PairedSet]) -> list[tuple[str, Path]]:
    """(label, path) of each paired set's targets, each distinct image once (SOTS pairs share targets)."""
    seen: set[str] = set()
    out = []
    for s in sets:
        for pair in s.pairs:
            digest = sha256_file(pair.target)
            if digest not in seen:
                seen.add(digest)
                out.append((f"{s.name}__{pair.name}", Path(pair.target)))
    return out


def evaluate(
    restore: RestoreFn,
    sets: Sequence[PairedSet],
    real: Sequence[str | Path] = (),
    out_dir: str | Path | None = None,
    samples_per_set: int = 3,
    baselines: bool = True,
    crop_border: int = 0,
    max_images: int | None = None,
    description: str = "restorer",
    progress: Progress | bool = True,
    clean_targets: bool = True,
) -> EvalReport:
    """Run `restore` over every pair of `sets` and every image of the `real` folders and score it.

    Paired sets: input and output PSNR/SSIM (Y and RGB) against the target, DCP on haze sets when
    `baselines`. Every image whose expected condition is known and whose restorer names a condition
    enters the confusion matrix. With `clean_targets` and a restorer that names conditions, the paired sets'
    distinct targets (real clean photographs) are routed too, as set "clean/targets": how often a clean
    frame is left alone (not in the confusion matrix, whose images are all degraded). The first
    `samples_per_set` images of each set are saved side by side under `out_dir/samples/` (if `out_dir`), and
    removed again if the run fails (a size mismatch found late, an unreadable image, Ctrl-C).
    `max_images` caps the images per set.
    """
    real_sets = [item for folder in real for item in _real_sets(folder)]
    jobs: list[tuple[str, object]] = [("paired", s) for s in sets] + [("real", r) for r in real_sets]
    if clean_targets and sets:
        jobs.append(("clean", None))  # the targets are listed (read, hashed) only if the restorer routes

    def count(kind: str, job) -> int:
        if kind == "clean":
            return 0  # added to the bar when the targets are listed
        n = len(job.pairs) if kind == "paired" else len(job[2])
        return n if max_images is None else min(n, max_images)

    bar = as_progress(progress).bar(sum(count(k, j) for k, j in jobs), "", "img")
    confusion = np.zeros((len(CONDITIONS), len(CONDITIONS)), dtype=np.int64)
    reports: list[SetReport] = []
    samples_dir = Path(out_dir) / "samples" if out_dir is not None else None
    new_dirs = [
        d for d in (samples_dir, Path(out_dir) if out_dir is not None else None) if d and not d.exists()
    ]
    written: list[Path] = []  # removed again if the run fails: no half set of samples without a report
    try:
        for kind, job in jobs:
            if kind == "paired":
                name, root, layout, expected = job.name, job.root, job.layout, job.condition
                items = [(p.name, p.input, p.target) for p in job.pairs]
            elif kind == "clean":
                if not any(r.predicted is not None for s in reports for r in s.images):
                    continue  # the restorer names no condition (a baseline, a blind model): nothing to check
                name, root, layout, expected = "clean/targets", "", "targets of the paired sets", "clean"
                items = [(label, path, None) for label, path in _distinct_targets(sets)]
            else:
                expected, root, files = job
                name, layout = f"real/{root.name}", "folder per condition"
                items = [(f.stem, f, None) for f in files]
            items = items[:max_images] if max_images is not None else items
            if kind == "clean":
                bar.total += len(items)
                bar.refresh()
            bar.set_description(name)
            results: list[ImageResult] = []
            for i, (image_name, input_path, target_path) in enumerate(items):
                degraded = read_image(input_path)
                start = time.perf_counter()
                try:
                    output, predicted, probs = restore(degraded)
                except UserError as exc:  # e.g. a frame the model cannot take: say which file it was
                    raise UserError(f"{input_path}: {exc}") from None
                latency = (time.perf_counter() - start) * 1000.0
                if output.shape != degraded.shape or output.dtype != np.uint8:
                    raise ValueError(
                        f"restorer returned {output.dtype} {output.shape} for a {degraded.shape} uint8 frame"
                    )
                confidence = None
                if probs is not None and predicted in CONDITIONS:
                    confidence = float(np.asarray(probs).ravel()[CONDITIONS.index(predicted)])
                result = ImageResult(image_name, expected, predicted, confidence, latency)
                result.untouched = output is degraded or np.array_equal(output, degraded)
                if expected in CONDITIONS and predicted in CONDITIONS and kind != "clean":
                    confusion[CONDITIONS.index(expected), CONDITIONS.index(predicted)] += 1
                target = None
                if target_path is not None:
                    target = read_image(target_path)
                    if target.shape != degraded.shape:
                        raise UserError(
                            f"{input_path} is {degraded.shape[1]}×{degraded.shape[0]} but its target "
                            f"{target_path} is {target.shape[1]}×{target.shape[0]}; pairs must match in size"
                        )
                    h, w = (side - 2 * crop_border for side in degraded.shape[:2])
                    if min(h, w) < SSIM_WINDOW:  # checked here too, to name the file and the option
                        raise UserError(
                            f"{input_path}: {degraded.shape[1]}×{degraded.shape[0]} is {max(w, 0)}×{max(h, 0)} "
                            f"after cropping {crop_border} px per edge; SSIM needs at least {SSIM_WINDOW}×{SSIM_WINDOW} "
                            "(use a smaller --crop-border)"
                        )
                    result.input = score(degraded, target, crop_border).as_dict()
                    result.output = score(output, target, crop_border).as_dict()
                    if baselines and expected == "haze":
                        result.dcp = score(dehaze_dcp(degraded), target, crop_border).as_dict()
                results.append(result)
                if samples_dir is not None and i < samples_per_set:
                    written.append(_save_sample(samples_dir, name, result, degraded, output, target))
                bar.update(1)
            routed = [r for r in results if r.predicted is not None and r.expected is not None]
            reports.append(
                SetReport(
                    name=name,
                    root=str(root),
                    kind=kind,
                    layout=layout,
                    condition=expected,
                    n=len(results),
                    input=_mean_scores(r.input for r in results),
                    output=_mean_scores(r.output for r in results),
                    dcp=_mean_scores(r.dcp for r in results),
                    router_accuracy=(sum(r.predicted == r.expected for r in routed) / len(routed))
                    if routed
                    else None,
                    latency_ms=float(np.mean([r.latency_ms for r in results])) if results else 0.0,
                    images=results,
                )
            )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in new_dirs:  # samples/, then --out, if this run made them
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        bar.close()
    return EvalReport(restorer=description, sets=reports, confusion=confusion.tolist())


def _save_sample(
    folder: Path, set_name: str, result: ImageResult, degraded: np.ndarray, output: np.ndarray, target
) -> Path:
    input_label = "input" + (f" {_db(result.input['psnr_rgb'])} dB" if result.input else "")
    output_label = "output"
    if result.predicted is not None:
        output_label += f" [{result.predicted}" + (
            f" {result.confidence:.2f}]" if result.confidence is not None else "]"
        )
    if result.output:
        output_label += f" {_db(result.output['psnr_rgb'])} dB"
    panels = [(degraded, input_label), (output, output_label)]
    if target is not None:
        panels.append((target, "target"))
    safe = set_name.replace("/", "_")
    return write_image(folder / f"{safe}__{result.name}.png", side_by_side(panels))


def _table_row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table_head(title: str, columns: list[object], aligns: list[str]) -> list[str]:
    """A section's title, a blank line, then its table's header and alignment rows."""
    return [title, "", _table_row(columns), _table_row(aligns)]


def _accuracy(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _fmt_scores(s: dict[str, float] | None) -> list[str]:
    if s is None:
        return ["–"] * 4
    return [_db(s["psnr_y"]), f"{s['ssim_y']:.4f}", _db(s["psnr_rgb"]), f"{s['ssim_rgb']:.4f}"]


def _markdown(report: EvalReport) -> str:
    lines = [f"# Evaluation of {report.restorer}", "", f"Created {report.created_at}.", ""]
    paired = [s for s in report.sets if s.kind == "paired"]
    if paired:
        lines += [
            "## Paired sets",
            "",
            "PSNR in dB, SSIM; Y = BT.601 luma (deraining papers' convention), RGB = all channels "
            "(dehazing papers'). *input* is the degraded image itself (do nothing); *DCP* is the Dark Channel "
            "Prior baseline (haze sets only).",
            "",
            _table_row(
                [
                    "set",
                    "condition",
                    "n",
                    "what",
                    "PSNR Y",
                    "SSIM Y",
                    "PSNR RGB",
                    "SSIM RGB",
                    "router acc.",
                    "ms/img",
                ]
            ),
            _table_row(["---"] * 3 + ["---"] + ["---:"] * 6),
        ]
        for s in paired:
            acc = _accuracy(s.router_accuracy)
            lines.append(
                _table_row([s.name, s.condition or "?", s.n, "input", *_fmt_scores(s.input), "", ""])
            )
            lines.append(
                _table_row(
                    [
                        "",
                        "",
                        "",
                        "**output**" + (f" ({s.untouched} left alone)" if s.untouched else ""),
                        *_fmt_scores(s.output),
                        acc,
                        f"{s.latency_ms:.1f}",
                    ]
                )
            )
            if s.dcp is not None:
                lines.append(_table_row(["", "", "", "DCP", *_fmt_scores(s.dcp), "", ""]))
        lines.append("")
    clean = [s for s in report.sets if s.kind == "clean"]
    if clean:
        lines += _table_head(
            "## Clean frames (the paired sets' distinct targets, routed like any frame)",
            ["images", "routed clean", "left alone (output = input, bit for bit)", "sent to a branch"],
            ["---:", "---:", "---:", "---"],
        )
        for s in clean:
            wrong: dict[str, int] = {}
            for r in s.images:
                if not r.untouched:
                    wrong[str(r.predicted)] = wrong.get(str(r.predicted), 0) + 1
            acc = _accuracy(s.router_accuracy)
            sent = ", ".join(f"{c} {n}" for c, n in sorted(wrong.items())) or "none"
            lines.append(_table_row([s.n, acc, f"{s.untouched / max(1, s.n):.1%}", sent]))
        lines.append("")
    real = [s for s in report.sets if s.kind == "real"]
    if real:
        lines += _table_head(
            "## Real images (no ground truth)",
            ["folder", "condition", "n", "router acc.", "left alone", "ms/img"],
            ["---", "---", "---:", "---:", "---:", "---:"],
        )
        for s in real:
            acc = _accuracy(s.router_accuracy)
            lines.append(_table_row([s.name, s.condition, s.n, acc, s.untouched, f"{s.latency_ms:.1f}"]))
        lines.append("")
    total = sum(map(sum, report.confusion))
    if total:
        low, high = report.router_accuracy_ci95
        lines += _table_head(
            f"## Router confusion (rows: expected, columns: predicted; accuracy {report.router_accuracy:.1%} "
            f"over {total} images, 95 % interval {low:.0%}–{high:.0%})",
            ["expected \\ predicted", *report.conditions],
            ["---", *["---:"] * len(report.conditions)],
        )
        for cond, row in zip(report.conditions, report.confusion):
            lines.append(_table_row([cond, *row]))
        lines.append("")
    elif any(r.predicted in CONDITIONS for s in report.sets for r in s.images):
        lines += [
            "The restorer names conditions, but no degraded image has a known one (name the set's folder after "
            f"a condition, e.g. rain_test, or pass --data rain=DIR; conditions: {', '.join(CONDITIONS)}): "
            "no router confusion.",
            "",
        ]
    else:
        lines += ["The restorer names no condition (blind model): no router accuracy.", ""]
    return "\n".join(lines)


def write_report(report: EvalReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write report.md and report.json (atomically) under `out_dir`; returns their paths."""
    out = Path(out_dir)
    md, js = out / "report.md", out / "report.json"
    write_text_atomic(js, json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")
    write_text_atomic(md, report.to_markdown())
    return md, js
