"""Frames of any size: seams and memory of the Restorer's tiled inference on a real bundle.

    python benchmarks/tiled_inference.py --bundle engines/uffn-tiny-onnxruntime-fp32 --image photo.jpg
    python benchmarks/tiled_inference.py --bundle engines/uffn-tiny-onnxruntime-fp32 --memory 6000x8000

`--image`: for every restoring condition (forced) and each overlap, the PSNR of tiled output against the
whole-frame output of the same frame (tiles forced small with `tile_pixels`, so the frame also fits whole).
`--memory HxW`: restores one textured HxW frame per condition in a fresh subprocess with the default tiles and
prints the peak resident memory (`resource.getrusage`, includes the Python interpreter and the bundle).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edgerestore.imageio import read_image
from edgerestore.runtime.restorer import Restorer

RESTORING = ("rain", "haze", "raindrop", "snow")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def seams(bundle: Path, image: np.ndarray, overlaps: list[int], tile_pixels: int) -> list[dict]:
    rows = []
    with Restorer.open(bundle, threads=2, tile_pixels=image.shape[0] * image.shape[1] * 4) as whole:
        for condition in RESTORING:
            whole.force = condition
            reference = whole(image).image
            for overlap in overlaps:
                with Restorer.open(
                    bundle, threads=2, tile_pixels=tile_pixels, tile_overlap=overlap, force=condition
                ) as tiled:
                    result = tiled(image)
                    assert "tiled" in result.flags or "reduced" in result.flags
                    rows.append(
                        {
                            "condition": condition,
                            "overlap": overlap,
                            "tiled": "tiled" in result.flags,
                            "psnr_db": round(_psnr(result.image, reference), 2),
                        }
                    )
    return rows


def _memory_child(bundle: str, h: int, w: int) -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, size=(h // 16, w // 16, 3), dtype=np.uint8)
    frame = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"frame_mib": frame.nbytes / 2**20, "before_mib": base, "conditions": {}}
    with Restorer.open(bundle, threads=2) as r:
        for condition in RESTORING:
            r.force = condition
            t0 = time.perf_counter()
            result = r(frame)
            out["conditions"][condition] = {
                "s": round(time.perf_counter() - t0, 1),
                "flags": sorted(result.flags),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
            del result
    print(json.dumps(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--overlaps", default="0,16,32,48,64")
    ap.add_argument("--tile-pixels", type=int, default=256 * 384)
    ap.add_argument("--memory", default=None, metavar="HxW")
    ap.add_argument("--_child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        _memory_child(args._child[0], int(args._child[1]), int(args._child[2]))
        return 0
    if args.image is not None:
        image = read_image(args.image)
        for row in seams(args.bundle, image, [int(v) for v in args.overlaps.split(",")], args.tile_pixels):
            print(json.dumps(row))
    if args.memory:
        h, w = (int(v) for v in args.memory.lower().split("x"))
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--bundle",
                str(args.bundle),
                "--_child",
                str(args.bundle),
                str(h),
                str(w),
            ],
            capture_output=True,
            text=True,
        )
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr[-2000:])
        return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
