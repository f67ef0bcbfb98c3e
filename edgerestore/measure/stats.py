"""The statistics of a latency measurement: per-stage percentiles, round sizes, interleaved timing, and the
ratio-of-medians estimate with its bootstrap interval that turns two sets of rounds into a verdict
(regressed / unchanged / inconclusive).

Percentiles are numpy's default (linear interpolation between order statistics, Hyndman & Fan type 7).

numpy only; never torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgerestore.errors import UserError


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


def round_sizes(frames: int, rounds: int) -> list[int]:
    """`frames` split into `rounds` rounds as evenly as possible (the first ones one frame longer)."""
    if rounds < 1 or frames < rounds:
        raise UserError(f"--rounds {rounds} must be between 1 and --frames ({frames})")
    return [frames // rounds + (i < frames % rounds) for i in range(rounds)]


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


def interleaved(fns: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each function once per round, in turn, and collect what each returns (ms). Measuring A and B
    interleaved keeps a load change on a shared machine from landing on only one of them."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(float(fn()))
    return out
