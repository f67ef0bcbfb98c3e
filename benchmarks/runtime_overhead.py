"""Routing overhead and memory soak of the runtime on ONNX Runtime (CPU), in one run.

    python benchmarks/runtime_overhead.py                        # synthetic graphs (edgerestore.testing)
    python benchmarks/runtime_overhead.py --export export/uffn-tiny   # real graphs from `edgerestore export`
    python benchmarks/runtime_overhead.py --bundle engines/uffn-tiny-onnxruntime-fp32

Budgets (docs: issue 6): a routed frame <= 1.1 x (trunk + that branch) alone; a clean frame <= 1.2 x the
router alone; all branches reported beside; RSS slope after warm-up over a 10,000-frame soak.
Does not import torch.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np


def bundle_from_export(export_dir: Path, out_dir: Path, max_hw: tuple[int, int]) -> Path:
    """Wrap an `edgerestore export` directory (model.json + graphs) as an fp32 ONNX Runtime bundle."""
    import onnxruntime

    from edgerestore.engines import bundle as eb

    meta = json.loads((export_dir / "model.json").read_text())
    graphs, files = {}, {}
    for name, g in meta["graphs"].items():
        path = export_dir / g["file"]
        digest = eb.sha256_file(path)
        graphs[name] = eb.GraphEntry(
            g["file"], "fp32", digest, digest, g.get("inputs", []), g.get("outputs", [])
        )
        files[name] = path
    stride = int(meta.get("stride", 1))
    manifest = eb.Manifest(
        family=meta["family"],
        profile=meta["profile"],
        conditions=list(meta["conditions"]),
        stride=stride,
        thumbnail_size=meta.get("thumbnail_size"),
        backend="onnxruntime",
        precision="fp32",
        graphs=graphs,
        shape_profile={"min": [16, 16], "opt": [360, 640], "max": list(max_hw)},
        builder={"name": "onnxruntime", "version": onnxruntime.__version__},
        device={
            "cpu": platform.processor() or platform.machine(),
            "onnxruntime_version": onnxruntime.__version__,
        },
        session_options={},
    )
    eb.write_bundle(out_dir, manifest, files, force=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--export", type=Path, help="an export/<profile> directory (model.json + graphs)")
    src.add_argument("--bundle", type=Path, help="an ONNX Runtime engine bundle")
    ap.add_argument("--size", default="360x640", help="frame HxW (default 360x640)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    ap.add_argument("--reps", type=int, default=60, help="timed calls per measurement (median)")
    ap.add_argument("--soak", type=int, default=10_000, help="soak frames (0 skips)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))

    from edgerestore.measure.overhead import dispatch_costs, soak
    from edgerestore.runtime.restorer import Restorer
    from edgerestore.testing import PROTOTYPES, write_bundle

    tmp = tempfile.TemporaryDirectory()
    rng = np.random.default_rng(0)
    if args.bundle:
        bundle, what = args.bundle, f"bundle {args.bundle}"
    elif args.export:
        bundle, what = (
            bundle_from_export(args.export, Path(tmp.name) / "b", (1088, 1920)),
            f"export {args.export}",
        )
    else:
        bundle = write_bundle(Path(tmp.name) / "b", thumbnail_size=160, features=16, depth=2)
        what = "synthetic graphs (features 16, depth 2, thumbnail 160)"
    frames = {}
    for c, colour in PROTOTYPES.items():  # synthetic router: colour decides; real router: whatever it says
        f = np.empty((h, w, 3), np.uint8)
        f[:] = colour
        f[::2, ::2] = rng.integers(0, 200, size=f[::2, ::2].shape, dtype=np.uint8) // 4 + np.uint8(
            colour[0] // 2
        )
        frames[c] = f if not args.export and not args.bundle else rng.integers(0, 256, (h, w, 3), np.uint8)
    if args.export or args.bundle:
        frames["clean"] = np.full((h, w, 3), 128, np.uint8)
    print(f"runtime overhead: {what}, python {sys.version.split()[0]}")
    with Restorer.open(bundle, threads=args.threads) as r:
        report = dispatch_costs(r, frames, reps=args.reps)
        print("\n".join(report.lines()))
        result = {"source": what, "dispatch": report.__dict__}
        if args.soak:
            with Restorer.open(bundle, threads=args.threads, video=False) as rs:
                s = soak(rs, list(frames.values()), n=args.soak)
            print(s.line())
            result["soak"] = {k: v for k, v in s.__dict__.items() if k != "samples"}
            result["soak"]["samples"] = s.samples
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
