"""Finding (degraded input, clean target) image pairs in the folder layouts public datasets ship in.

Torch-free (pathlib + re): the evaluation command, the CLI and the PyTorch datasets all pair files through
here. Must not import torch, nor the runtime.

Layouts recognised (folder names case-insensitive; extensions may differ between input and target):

| layout | input | target | name rule |
|---|---|---|---|
| `input-target` | `input/a.png` | `target/a.jpg` | same stem |
| `ddn-rain1400` (Fu et al. 2017) | `rainy_image/1_1.jpg` … `1_14.jpg` | `ground_truth/1.jpg` | many → one |
| `rain100` (JORDER / RCDNet) | `rain/norain-1.png` | `norain/norain-1.png` | same stem |
| `rain100` (PReNet) | `rainy/rain-001.png` | `norain-001.png` in the set folder | `rain-`/`norain-` dropped |
| `rain100-flat` | `rain-001.png` | `norain-001.png` side by side | `rain-`/`norain-` dropped |
| `reside` (ITS / SOTS / OTS) | `hazy/1400_1.png`, `hazy/1_1_0.90179.png` | `clear/1400.png` or `gt/` | many → one |
| `raindrop` (Qian et al. 2018) | `data/0_rain.png` | `gt/0_clean.png` | `_rain`/`_clean` dropped |
| `csd` (Chen et al. 2021) | `Snow/1.tif` | `Gt/1.tif` | same stem |
| `snow100k` (Liu et al. 2018) | `synthetic/x.jpg` | `gt/x.jpg` | same stem |

Names are matched by the first rule that finds a target: exact stem; stem without the layout's marker
words (`rain`, `norain`, `clean`, `gt`, … and JORDER's `x2` scale suffix); that stem with trailing
`_<part>`s dropped one at a time (several degraded versions of one target); the same with numbers' leading
zeros ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError
from edgerestore.imageio import IMAGE_EXTENSIONS, is_image_file

# Folder names, in order of preference when several are present.
INPUT_DIRS: tuple[str, ...] = (
    "input", "inputs", "lq", "degraded", "rainy_image", "rain", "rainy", "hazy", "haze", "data", "snow",
    "synthetic", "raindrop",
)  # fmt: skip
TARGET_DIRS: tuple[str, ...] = (
    "target", "targets", "gt", "ground_truth", "groundtruth", "clear", "clean", "norain", "hq", "label",
)  # fmt: skip

_LAYOUT_NAMES: dict[tuple[str, str], str] = {
    ("input", "target"): "input-target",
    ("rainy_image", "ground_truth"): "ddn-rain1400",
    ("rain", "norain"): "rain100",
    ("rainy", "norain"): "rain100",
    ("rainy", "."): "rain100",
    ("hazy", "clear"): "reside",
    ("hazy", "gt"): "reside",
    ("data", "gt"): "raindrop",
    ("snow", "gt"): "csd",
    ("synthetic", "gt"): "snow100k",
}

_MARKERS = ("norain", "rainy", "rain", "clean", "clear", "gt", "groundtruth", "input", "target", "hazy")
_MARKER_RE = re.compile(r"(?:^|(?<=[_\-. ]))(?:" + "|".join(_MARKERS) + r")(?:[_\-. ]|$)", re.IGNORECASE)
_SCALE_SUFFIX_RE = re.compile(r"(?<=\d)x[234]$", re.IGNORECASE)

# Folder-name words → condition, checked in this order ("raindrop" before "rain").
_CONDITION_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("raindrop", ("raindrop", "raindrops", "drop", "drops")),
    ("snow", ("snow", "snowy", "csd", "srrs")),
    ("haze", ("haze", "hazy", "sots", "its", "ots", "reside", "fog", "foggy", "dehaze", "dehazing")),
    ("rain", ("rain", "rainy", "ddn", "derain", "deraining", "streak", "streaks")),
    ("clean", ("clean", "clear")),
)


@dataclass(frozen=True)
class Pair:
    """One degraded input and its clean target; `name` is the input's stem (unique within a set)."""

    input: Path
    target: Path
    name: str


@dataclass(frozen=True)
class PairedSet:
    """A folder of pairs: where it is, which layout it was read as, and the condition it shows."""

    root: Path
    name: str
    layout: str
    condition: str | None
    pairs: tuple[Pair, ...]

    def __len__(self) -> int:
        return len(self.pairs)


def guess_condition(path: str | Path, extra_names: Iterable[str] = ()) -> str | None:
    """The condition a folder shows, from the words of its name, then `extra_names` (e.g. its input
    folder's), then its parent's name (`Rain1400/testing`).

    Words are runs of letters, so `rain100l_3` → rain, `sots_indoor_dev` → haze, `Snow100K-S` → snow.
    Returns None when no word names a condition.
    """
    path = Path(path).resolve()
    names = [path.name, *extra_names, path.parent.name]
    for name in names:
        words = set(re.findall(r"[a-z]+", name.lower()))
        for condition, keys in _CONDITION_WORDS:
            if words.intersection(keys):
                return condition
    return None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _subdir(root: Path, candidates: Sequence[str]) -> tuple[str, Path] | None:
    by_name = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for name in candidates:
        if name in by_name:
            return name, by_name[name]
    return None


def _normalise(stem: str) -> str:
    """The stem without marker words and scale suffix: `norain-1x2` → `1`, `0_rain` → `0`."""
    key = stem
    for _ in range(3):  # markers may be stacked, e.g. `rain-gt-1`
        new = _MARKER_RE.sub("", key).strip("_-. ")
        if not new or new == key:
            break
        key = new
    key = _SCALE_SUFFIX_RE.sub("", key)
    return key.lower() or stem.lower()


def _strip_zeros(key: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group())), key)


def _input_keys(stem: str) -> list[tuple[int, str]]:
    """(table, key) lookups for an input stem, best first; table 0 = exact, 1 = normalised, 2 = no zeros."""
    norm = _normalise(stem)
    parts = norm.split("_")
    shorter = ["_".join(parts[:k]) for k in range(len(parts), 0, -1)]
    keys = [(0, stem), *((1, k) for k in shorter), *((2, _strip_zeros(k)) for k in shorter)]
    return [(t, k) for t, k in keys if k]


def _target_tables(targets: Sequence[Path]) -> list[dict[str, Path | None]]:
    """Exact / normalised / zero-stripped lookup tables; a key shared by two targets maps to None."""
    tables: list[dict[str, Path | None]] = [{}, {}, {}]
    for path in targets:
        norm = _normalise(path.stem)
        for table, key in ((0, path.stem), (1, norm), (2, _strip_zeros(norm))):
            tables[table][key] = None if key in tables[table] else path
    return tables


def pair_files(
    inputs: Sequence[Path], targets: Sequence[Path], where: str = "", allow_unmatched: bool = False
) -> list[Pair]:
    """Pair input files with target files by name (rules in the module docstring).

    Raises `UserError` naming the first unmatched inputs unless `allow_unmatched` (then they are skipped).
    """
    tables = _target_tables(targets)
    pairs: list[Pair] = []
    unmatched: list[str] = []
    for path in inputs:
        target = None
        for table, key in _input_keys(path.stem):
            target = tables[table].get(key)
            if target is not None and target != path:
                break
            target = None
        if target is None:
            unmatched.append(path.name)
        else:
            pairs.append(Pair(input=path, target=target, name=path.stem))
    if unmatched and not allow_unmatched:
        examples = ", ".join(unmatched[:3]) + (", …" if len(unmatched) > 3 else "")
        raise UserError(
            f"{len(unmatched)} of {len(inputs)} inputs in {where or 'the set'} have no target with a "
            f"matching name ({examples}); rename them so stems match (a.png ↔ a.jpg) or pass only paired files"
        )
    return pairs


def _layout_dirs(root: Path) -> tuple[str, Path, Path, list[Path] | None] | None:
    """(layout, input dir, target dir, explicit input list for flat layouts) or None if nothing fits."""
    found_in = _subdir(root, INPUT_DIRS)
    found_tg = _subdir(root, TARGET_DIRS)
    if found_in and found_tg and found_in[1] != found_tg[1]:
        in_name, in_dir = found_in
        tg_name, tg_dir = found_tg
        return _LAYOUT_NAMES.get((in_name, tg_name), "paired"), in_dir, tg_dir, None
    if found_in and not found_tg:
        own = _images(root)
        if own:  # PReNet's Rain100L/H: rainy/rain-001.png ↔ norain-001.png beside the folder
            return _LAYOUT_NAMES.get((found_in[0], "."), "paired"), found_in[1], root, None
    own = _images(root)
    rainy = [p for p in own if p.stem.lower().startswith("rain-")]
    if rainy and any(p.stem.lower().startswith("norain-") for p in own):
        return "rain100-flat", root, root, rainy
    return None


def describe_layouts() -> str:
    """One line listing the layouts, for error messages."""
    return "input/+target/, rainy_image/+ground_truth/, rain/+norain/, hazy/+clear/ (or gt/), data/+gt/, Snow/+Gt/, synthetic/+gt/"


def open_paired_set(
    root: str | Path, condition: str | None = None, allow_unmatched: bool = False
) -> PairedSet:
    """Detect the layout of `root`, pair its files and guess its condition (unless `condition` is given)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    found = _layout_dirs(root)
    if found is None:
        raise UserError(f"no paired images in {root}: expected subfolders like {describe_layouts()}")
    layout, in_dir, tg_dir, explicit = found
    if explicit is not None:
        inputs = explicit
        targets = [p for p in _images(root) if p.stem.lower().startswith("norain-")]
    else:
        inputs = _images(in_dir)
        targets = [p for p in _images(tg_dir) if tg_dir != root or p.stem.lower().startswith("norain")]
    if not inputs:
        raise UserError(f"no images in {in_dir} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    if not targets:
        raise UserError(
            f"no target images for {in_dir} in {tg_dir} (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    where = f"{in_dir}" if in_dir == tg_dir else f"{in_dir} (targets in {tg_dir})"
    pairs = pair_files(inputs, targets, where=where, allow_unmatched=allow_unmatched)
    if not pairs:
        raise UserError(f"no input in {in_dir} matches a target in {tg_dir} by name")
    if condition is not None and condition not in CONDITIONS:
        raise UserError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    guessed = condition or guess_condition(root, extra_names=(in_dir.name,))
    return PairedSet(root=root, name=root.name, layout=layout, condition=guessed, pairs=tuple(pairs))


def find_pairs(root: str | Path, allow_unmatched: bool = False) -> list[Pair]:
    """The (input, target, name) pairs of a dataset folder in any supported layout."""
    return list(open_paired_set(root, allow_unmatched=allow_unmatched).pairs)


def is_paired_set(root: str | Path) -> bool:
    """True if `root` itself has a recognised paired layout (it may still fail to pair)."""
    root = Path(root)
    return root.is_dir() and _layout_dirs(root) is not None


def find_sets(root: str | Path, condition: str | None = None) -> list[PairedSet]:
    """`root` as one paired set, or, if it has no paired layout itself, each subfolder that has one
    (e.g. a `dev/` folder holding `rain100l_3/`, `sots_indoor_dev/`, …)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    if is_paired_set(root):
        return [open_paired_set(root, condition=condition)]
    subsets = [p for p in sorted(root.iterdir()) if p.is_dir() and is_paired_set(p)]
    if not subsets:
        raise UserError(
            f"{root} is neither a paired set nor a folder of paired sets: expected subfolders like "
            f"{describe_layouts()}"
        )
    return [open_paired_set(p, condition=condition) for p in subsets]
