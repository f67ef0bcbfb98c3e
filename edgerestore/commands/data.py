"""`edgerestore data`: synthesise weather on clean photographs and look at it.

``edgerestore data preview --clean DIR --out preview.png`` writes a grid with one labelled row per condition
(clean, rain, haze, raindrop, snow), made exactly as training makes its samples. numpy + OpenCV only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgerestore.conditions import CONDITIONS
from edgerestore.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    preview = sub.add_parser(
        "preview",
        help="a grid PNG of synthetic samples, one row per condition",
        description="Write a grid of synthetic weather on clean photographs: one labelled row per condition.",
    )
    preview.add_argument("--clean", required=True, type=Path, help="folder of clean photographs (recursive)")
    preview.add_argument("-o", "--out", required=True, type=Path, help="grid image to write (.png or .jpg)")
    preview.add_argument("--seed", type=int, default=0, help="random seed (same seed, same grid)")
    preview.add_argument("--size", type=int, default=256, help="tile size in pixels (default 256)")
    preview.add_argument("--per-condition", type=int, default=4, help="examples per condition (default 4)")
    preview.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help=f"comma-separated rows (default {','.join(CONDITIONS)}; rain+snow also works)",
    )
    preview.add_argument(
        "--no-augment",
        action="store_true",
        help="plain crops at the photographs' own scale, as the validation set makes them",
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "preview":
        return _preview(args)
    raise UserError(f"unknown action {args.action!r}; expected preview")


def _preview(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from edgerestore.data.degrade import DEGRADE_CONDITIONS, find_clean_images, synthesise_pair
    from edgerestore.imageio import read_image, write_image

    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = [c for c in conditions if c not in DEGRADE_CONDITIONS]
    if bad or not conditions:
        raise UserError(f"unknown condition(s) {bad}; choose from {', '.join(DEGRADE_CONDITIONS)}")
    if not 32 <= args.size <= 2048:
        raise UserError(f"--size {args.size} is out of range; use 32 to 2048 pixels")
    if not 1 <= args.per_condition <= 64:
        raise UserError(f"--per-condition {args.per_condition} is out of range; use 1 to 64")
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--out {args.out} must end in .png or .jpg")
    out_dir = args.out.parent if str(args.out.parent) else Path(".")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"cannot write {args.out}: {out_dir} is not a folder")

    paths = find_clean_images(args.clean)
    rng = np.random.default_rng(args.seed)
    size, label_w = args.size, 110
    rows = []
    for condition in conditions:
        tiles = [_label_tile(condition, label_w, size)]
        for _ in range(args.per_condition):
            image = np.ascontiguousarray(read_image(paths[int(rng.integers(len(paths)))])[:, :, ::-1])
            severity = float(rng.uniform())
            x, _ = synthesise_pair(
                image, condition, rng, size, augment=not args.no_augment, severity=severity
            )
            tile = np.ascontiguousarray((x[:, :, ::-1] * 255.0 + 0.5).astype(np.uint8))
            _put_text(tile, f"severity {severity:.2f}", (4, size - 6), 0.4)
            tiles.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
        rows.append(np.hstack(tiles))
    grid = np.vstack(rows)
    try:
        write_image(args.out, grid)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}; choose a writable --out") from None
    print(f"wrote {args.out} ({len(conditions)} conditions × {args.per_condition} samples, {size}px tiles)")
    return 0


def _label_tile(text: str, width: int, size: int):
    import numpy as np

    tile = np.full((size + 4, width, 3), 255, np.uint8)
    _put_text(tile, text, (6, size // 2 + 6), 0.6, colour=(0, 0, 0), outline=False)
    return tile


def _put_text(
    image, text: str, origin: tuple[int, int], scale: float, colour=(255, 255, 255), outline=True
) -> None:
    import cv2

    if outline:
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
