"""Soak a real bundle: 10 000 frames of mixed sizes and conditions from 4 threads, resident memory sampled.

    python benchmarks/soak.py --bundle engines/uffn-tiny-onnxruntime-fp32 [--frames 10000 --threads 4]

Frames are the committed calibration set (clean, rain, haze, raindrop, snow photographs) resized to
96x128, 360x640, 123x457 and 33x47, and every 500th to 1500x2500 (beyond the default max shape: tiled).
Prints one JSON object: frames, seconds, errors, growth of resident memory after warm-up, the samples.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgerestore.runtime.restorer import Restorer
from edgerestore.runtime.soak import calibration_frames, soak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument(
        "--calib", type=Path, default=Path(__file__).resolve().parents[1] / "calibration" / "default"
    )
    args = ap.parse_args()
    with Restorer.open(args.bundle, threads=2) as restorer:  # stills of mixed conditions: no smoothing
        result = soak(
            restorer,
            calibration_frames(args.calib),
            frames=args.frames,
            threads=args.threads,
            large=(1500, 2500),
            large_every=500,
        )
        stats = restorer.stats
    out = {
        "frames": result.frames,
        "threads": result.threads,
        "seconds": round(result.seconds, 1),
        "errors": result.errors[:10],
        "error_count": len(result.errors),
        "tiled": result.tiled,
        "conditions": result.conditions,
        "stats_frames": stats.frames,
        "rss_first_mib": round(result.rss_mib[0][1]),
        "rss_max_mib": round(max(v for _, v in result.rss_mib)),
        "rss_last_mib": round(result.rss_mib[-1][1]),
        "growth_after_warmup_mib": round(result.growth_mib(), 1),
        "samples": [(n, round(v)) for n, v in result.rss_mib],
    }
    print(json.dumps(out))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
