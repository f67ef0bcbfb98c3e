"""Real training material beside the synthetic weather: held-out validation splits, real weather photographs
for the router, and real-depth haze pairs re-synthesised at new densities and airlights.

Torch-free (numpy + OpenCV). The PyTorch datasets over these live in `edgerestore.data.datasets` and
`edgerestore.data.router_thumbnails`.

*Hold-out.* A validation split is named by glob patterns (`fnmatch`, matched against each file's full
POSIX path, so ``*/seq0004/*`` holds out one road clip and ``*/141[89]*`` two SOTS scenes, hazy and clear
alike). Every training source applies the same patterns: what matches is validation only, never trained on.

*Haze from real depth.* A RESIDE pair obeys the scattering model I = J·t + A·(1 − t). With the airlight A
known (SOTS-indoor renders A = 1), the transmission is the per-pixel least-squares fit over the colour
channels t = Σ(A − I)(A − J) / Σ(A − J)², smoothed with weights Σ(A − J)² (bright clear pixels, where
A − J ≈ 0, carry no information and are filled from their neighbours). A new density is t' = t^γ
(γ = β'/β: the same measured depth, another scattering coefficient) and a new airlight A' (grey to slightly
tinted, 0.7–1.0, like road fog) gives a new, physically consistent hazy input J·t' + A'·(1 − t').
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgerestore.data.degrade import find_clean_images
from edgerestore.errors import UserError
from edgerestore.imageio import read_image


def is_held_out(path: str | Path, patterns: Sequence[str]) -> bool:
    """Whether `path` matches one of the hold-out glob `patterns` (against its full POSIX path)."""
    text = Path(path).resolve().as_posix()
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


def split_paths(paths: Iterable[Path], patterns: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """(training, held-out) lists of `paths`, by the hold-out `patterns`, order kept."""
    train, held = [], []
    for p in paths:
        (held if is_held_out(p, patterns) else train).append(p)
    return train, held


def shrink_to(rgb: np.ndarray, long_side: int | None) -> np.ndarray:
    """`rgb` area-shrunk so that its longer side is at most `long_side` (unchanged when smaller or None)."""
    if long_side is None or max(rgb.shape[:2]) <= long_side:
        return rgb
    s = long_side / max(rgb.shape[:2])
    size = (max(16, round(rgb.shape[1] * s)), max(16, round(rgb.shape[0] * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def load_images(
    folders: Sequence[str | Path],
    hold_out: Sequence[str] = (),
    long_side: int | None = None,
    min_side: int = 16,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """All images under `folders` (recursive) as uint8 RGB arrays, split into (training, held-out) by the
    hold-out patterns and shrunk to `long_side`; images with a side under `min_side` are left out."""
    train: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for folder in folders:
        paths = find_clean_images(folder)
        a, b = split_paths(paths, hold_out)
        for dest, group in ((train, a), (held, b)):
            for p in group:
                rgb = np.ascontiguousarray(read_image(p)[:, :, ::-1])
                if min(rgb.shape[:2]) >= min_side:
                    dest.append(shrink_to(rgb, long_side))
    return train, held


def parse_real(items: Sequence[str]) -> dict[str, list[Path]]:
    """`--real CONDITION=DIR` options → {condition: [folders]}; one line for a malformed item."""
    from edgerestore.conditions import CONDITIONS

    out: dict[str, list[Path]] = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not folder:
            raise UserError(f"--real expects CONDITION=DIR (e.g. haze=fog_photos/), got {item!r}")
        if name not in CONDITIONS:
            raise UserError(
                f"--real {item}: unknown condition {name!r}; expected one of {', '.join(CONDITIONS)}"
            )
        if not Path(folder).is_dir():
            raise UserError(f"--real {item}: {folder} is not a folder")
        out.setdefault(name, []).append(Path(folder))
    return out


# ----------------------------------------------------------------------------------------------- haze
def transmission_from_pair(
    hazy: np.ndarray, clear: np.ndarray, airlight: float = 1.0, smooth: float = 4.0
) -> np.ndarray:
    """Per-pixel transmission t ∈ [0.02, 1] (float32 H×W) of a hazy/clear pair (float RGB in [0, 1]) under
    I = J·t + A·(1 − t) with a known grey airlight A: least squares over the channels, weighted smoothing
    (σ = `smooth` px) so that pixels with J ≈ A take their neighbours' value."""
    num = (airlight - hazy.astype(np.float32)) * (airlight - clear.astype(np.float32))
    den = (airlight - clear.astype(np.float32)) ** 2
    num, den = num.sum(axis=2), den.sum(axis=2)
    blur = (lambda x: cv2.GaussianBlur(x, (0, 0), smooth)) if smooth > 0 else (lambda x: x)
    t = blur(num) / np.maximum(blur(den), 1e-6)
    return np.clip(t, 0.02, 1.0).astype(np.float32)


def resynthesise_haze(clear: np.ndarray, transmission: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new hazy version (float32 RGB in [0, 1]) of `clear` with its measured `transmission`: density
    t^γ (γ log-uniform in [0.5, 2]) and a new airlight (grey level 0.7–1.0, tint ≤ ±4 %)."""
    gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    t = transmission[..., None] ** gamma
    grey = rng.uniform(0.7, 1.0)
    airlight = np.clip(grey * (1.0 + rng.uniform(-0.04, 0.04, 3)), 0.0, 1.0).astype(np.float32)
    return np.clip(clear * t + airlight * (1.0 - t), 0.0, 1.0).astype(np.float32)


__all__ = [
    "is_held_out",
    "split_paths",
    "shrink_to",
    "load_images",
    "parse_real",
    "transmission_from_pair",
    "resynthesise_haze",
]
