"""Speed of the exported graphs on the CPU: ONNX Runtime float32 vs PyTorch eager, and INT8 vs float32.

    python benchmarks/export_speed.py [--checkpoint weights/uffn-tiny.pt | --profile uffn-tiny]
                                      [--size 360x640] [--runs 30] [--threads 2]

Exports the model into a temporary directory, makes the `int8_ort` graphs from the default calibration set
(calibration/default, with the accuracy guard's PSNR vs ground truth), then times each graph (router,
trunk, one branch) with the same thread count: PyTorch eager (`inference_mode`, float32 NCHW input already
in [0, 1]), ONNX Runtime float32 and INT8 (uint8 frames in, conversions inside the graph). Prints a
markdown table of medians and 90th percentiles. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _times(fn, runs: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(round(0.9 * (len(samples) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--profile", default="uffn-tiny")
    parser.add_argument("--size", default="360x640", help="HxW")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", default="minmax")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    import torch

    from edgerestore.calibration import load_frames, make_int8, split_holdout
    from edgerestore.export import export_model
    from edgerestore.graphs import ort_session
    from edgerestore.models import zoo

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    if args.checkpoint:
        model, meta = zoo.load_checkpoint(args.checkpoint)
        profile, source = meta["profile"], str(args.checkpoint)
    else:
        torch.manual_seed(0)
        model, profile, source = zoo.build(args.profile).eval(), args.profile, "untrained weights"
    if model.family != "uffn":
        print("this benchmark times the UFFN graphs (router, trunk, branch)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgerestore-bench-") as tmp:
        out = Path(tmp) / profile
        export_model(model, out, profile, parity_sizes=[], progress=False)
        calib, held = split_holdout(load_frames(None), 4)
        int8 = make_int8(out, "int8_ort", calib, held, args.method, progress=False)
        accuracy = {
            k: v for k, v in json.loads((out / "int8_ort" / "precision.json").read_text())["graphs"].items()
        }

        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        s = model.thumbnail_size
        thumb = rng.integers(0, 256, (1, s, s, 3), dtype=np.uint8)
        x = torch.from_numpy(frame[0, ..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
        tx = torch.from_numpy(thumb[0, ..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
        branch = f"branch_{model.conditions[1]}"
        with torch.inference_mode():
            feats_t = model.trunk(x)
        feats = feats_t.numpy()
        eager = {
            "router": lambda: model.router(tx),
            "trunk": lambda: model.trunk(x),
            branch: lambda: model.branch(model.conditions[1])(x, feats_t),
        }
        feeds = {
            "router": {"thumbnail": thumb},
            "trunk": {"frame": frame},
            branch: {"frame": frame, "features": feats},
        }
        rows = []
        for name in ("router", "trunk", branch):
            with torch.inference_mode():
                t_med, t_p90 = _times(eager[name], args.runs)
            f32 = ort_session(out / f"{name}.onnx", args.threads)
            q = ort_session(out / "int8_ort" / f"{name}.onnx", args.threads)
            f_med, f_p90 = _times(lambda s=f32, n=name: s.run(None, feeds[n]), args.runs)
            q_med, q_p90 = _times(lambda s=q, n=name: s.run(None, feeds[n]), args.runs)
            acc = accuracy[name]
            loss = None if acc.get("psnr_vs_gt") is None else acc["psnr_float_vs_gt"] - acc["psnr_vs_gt"]
            rows.append(
                dict(
                    graph=name,
                    torch=(t_med, t_p90),
                    ort_fp32=(f_med, f_p90),
                    ort_int8=(q_med, q_p90),
                    int8_used=acc["precision"],
                    gt_loss_db=loss,
                    agreement=acc.get("router_agreement"),
                )
            )
    print(
        f"{profile} ({source}), frame {h}x{w}, thumbnail {s}x{s}, {args.threads} threads, {args.runs} runs; "
        f"int8_ort ranges: {args.method} on {len(calib)} frames, guard on {len(held)} held-back frames "
        f"({int8.seconds:.0f} s)"
    )
    print(
        "\n| graph | PyTorch eager ms (median / p90) | ORT fp32 ms | fp32 vs eager | ORT int8_ort ms | "
        "int8 vs fp32 | int8 accuracy (held back) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        acc = (
            f"{r['agreement']:.0%} router agreement"
            if r["agreement"] is not None
            else f"{r['gt_loss_db']:+.2f} dB vs GT"
            if r["gt_loss_db"] is not None
            else "—"
        )
        if r["int8_used"] != "int8_ort":
            acc += f" (guard kept {r['int8_used']})"
        print(
            f"| {r['graph']} | {r['torch'][0]:.2f} / {r['torch'][1]:.2f} | {r['ort_fp32'][0]:.2f} / "
            f"{r['ort_fp32'][1]:.2f} | {r['torch'][0] / r['ort_fp32'][0]:.2f}× | {r['ort_int8'][0]:.2f} / "
            f"{r['ort_int8'][1]:.2f} | {r['ort_fp32'][0] / r['ort_int8'][0]:.2f}× | {acc} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
