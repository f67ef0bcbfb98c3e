"""`edgerestore bench`: latency of a bundle (or a profile, built when missing) per stage and size, baselines
per device and regression compare, the camera pipeline's throughput and latency, the CMUDRN / UFFN sweeps,
and the PyTorch vs ONNX Runtime (vs TensorRT) table.

Timing a bundle imports only the runtime (no torch); `--profile` builds, `--sweep` and `--compare-backends`
import torch and the exporter (inside run()).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgerestore.conditions import CONDITIONS

DEFAULT_OUT = Path("bench_out")


INPUT_FRAMES = 30  # frames read from --input and cycled through


def input_frames(uri: str, limit: int = INPUT_FRAMES) -> list:
    """Up to `limit` frames from the input `uri` (the same URIs as `camera --source`); `UserError` when it
    opens but gives none."""
    from edgerestore.errors import UserError
    from edgerestore.runtime import video

    video.quiet_video_logs()
    source = video.open_source(source=uri) if not uri.isdigit() else video.open_source(device=uri)
    try:
        frames = []
        while len(frames) < limit and (frame := source.read()) is not None:
            frames.append(frame)
    finally:
        source.close()
    if not frames:
        raise UserError(f"--input {uri}: no frames could be read")
    return frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to time")
    what.add_argument("--bundle", type=Path, action="append", help="an engine bundle folder (repeatable)")
    what.add_argument("--profile", help="a zoo profile (e.g. uffn-tiny): its bundles, built when missing")
    what.add_argument(
        "--precision", default="fp32", help="with --profile: fp32, fp16, int8, or a list (default: fp32)"
    )
    what.add_argument(
        "--backend", default="onnxruntime", choices=("auto", "onnxruntime", "tensorrt"), help="with --profile"
    )
    what.add_argument(
        "--checkpoint", type=Path, help="with --profile: weights (default: weights/<profile>.pt)"
    )
    what.add_argument("--export-root", type=Path, default=Path("export"), help="default: export/")
    what.add_argument("--engines-root", type=Path, default=Path("engines"), help="default: engines/")

    how = parser.add_argument_group("how")
    how.add_argument(
        "--sizes", default="360p", help="frame sizes: 360p,720p,1080p or HxW list (default: 360p)"
    )
    how.add_argument("--frames", type=int, default=100, help="timed frames per size (default: 100)")
    how.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="split the frames into this many rounds, interleaved across bundles and sizes; compare judges "
        "rounds (default: 10, or --frames if fewer)",
    )
    how.add_argument("--warmup", type=int, default=10, help="untimed frames first (default: 10)")
    how.add_argument(
        "--condition",
        choices=CONDITIONS,
        default=None,
        help="force this branch (default: the router decides on synthetic weather frames)",
    )
    how.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: bundle's)"
    )
    how.add_argument(
        "--reference",
        action="store_true",
        help="time a fixed ONNX Runtime graph (the reference workload) right after every frame, in the same "
        "rounds, for --judge cpu and --judge relative (implied by them; record their baseline with it; ONNX "
        "Runtime only)",
    )
    how.add_argument(
        "-o", "--out", type=Path, default=DEFAULT_OUT, help="JSON and plots go here (default: bench_out/)"
    )
    how.add_argument("--no-plot", action="store_true", help="skip the latency plot PNG")
    how.add_argument(
        "--roofline",
        action="store_true",
        help="instead: each graph's GFLOP/s and %% of this machine's fp32 peak (measured in the same run by "
        "an ONNX Runtime MatMul), --frames interleaved rounds; table, roofline.json and roofline.png",
    )
    how.add_argument(
        "--profile-nodes",
        action="store_true",
        help="with --roofline: also the slowest nodes per graph (ONNX Runtime's profiler, --frames runs)",
    )
    how.add_argument(
        "--input",
        metavar="URI",
        default=None,
        help="time on frames from this input (a video file, image folder, glob, camera or stream URI; up to "
        f"{INPUT_FRAMES} frames, scaled to each size) instead of synthetic weather frames",
    )

    base = parser.add_argument_group("baselines")
    base.add_argument(
        "--save-baseline",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="store this run as the baseline (default path: benchmarks/baselines/<device-key>.json)",
    )
    base.add_argument(
        "--compare",
        metavar="BASELINE",
        help="a baseline JSON, or a folder of them (picks <device-key>.json); exit 1 if a stage regressed, "
        "0 when unchanged or inconclusive (said on stderr)",
    )
    base.add_argument("--tolerance", default="10%", help="allowed slow-down per stage (default: 10%%)")
    base.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="confidence of the bootstrap interval of each stage's ratio (default: 0.95)",
    )
    base.add_argument(
        "--max-extra-load",
        type=float,
        default=None,
        help="a run whose machine had more than this many extra runnable tasks than the baseline's is "
        "inconclusive, not regressed (default: the core count + 1)",
    )
    base.add_argument(
        "--judge",
        choices=("wall", "cpu", "relative"),
        default="wall",
        help="what --compare judges: the wall-clock stages (wall, the default: latency on a dedicated device), "
        "the process's CPU time per frame (cpu: the work, which other processes on a shared machine change "
        "far less), or the wall-clock stages (relative: a machine slower for everything cancels out); cpu and "
        "relative divide each round by the reference workload's time in the same round (--reference, "
        "implied) and need ONNX Runtime and --threads 1",
    )
    base.add_argument(
        "--min-ms",
        type=float,
        help="skip stages faster than this in the baseline (default 0.05; 1 with --judge relative)",
    )
    base.add_argument(
        "--stat",
        default=None,
        choices=("mean", "p50", "p90", "p99", "max"),
        help="each round's statistic; compare takes the median over rounds (default: p50; mean for --judge cpu, "
        "a round's CPU work per frame)",
    )

    pipe = parser.add_argument_group("camera pipeline")
    pipe.add_argument(
        "--pipeline",
        action="store_true",
        help="also run each size through the camera pipeline and check targets",
    )
    pipe.add_argument(
        "--camera-fps", type=float, default=30.0, help="paced camera for capture-to-display (30)"
    )
    pipe.add_argument("--min-fps", type=float, default=15.0, help="pipeline FPS target (default: 15)")

    study = parser.add_argument_group("studies (build what they need; import torch)")
    study.add_argument(
        "--sweep",
        action="store_true",
        help="latency heatmaps: CMUDRN size x loops and UFFN size x precision (PNG + CSV)",
    )
    study.add_argument(
        "--sweep-sizes", default="100,150,200", help="square sides in px (full study: 100,...,1000)"
    )
    study.add_argument("--sweep-loops", default="1,2,3,4,5,6,7", help="CMUDRN loop counts (default 1..7)")
    study.add_argument("--sweep-precisions", default="fp32,fp16,int8", help="UFFN precisions")
    study.add_argument(
        "--sweep-profiles",
        default="cmudrn-t3,uffn-tiny",
        help="profiles to sweep (default: cmudrn-t3,uffn-tiny)",
    )
    study.add_argument(
        "--compare-backends",
        action="store_true",
        help="PyTorch eager vs ONNX Runtime fp32 vs INT8 (vs TensorRT) for --profile, with guard quality",
    )


def _int_list(text: str, what: str) -> list[int]:
    from edgerestore.errors import UserError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise UserError(f"{what} needs positive integers, got {text!r}")
    return values


def _bundles(args: argparse.Namespace) -> list[Path]:
    from edgerestore.errors import UserError

    if args.bundle and args.profile:
        raise UserError("give --bundle DIR or --profile NAME, not both")
    if args.bundle:
        for b in args.bundle:
            if not (b / "manifest.json").is_file():
                raise UserError(
                    f"{b} is not an engine bundle (no manifest.json); build one with `edgerestore build`"
                )
        return list(args.bundle)
    if not args.profile:
        from edgerestore.commands._bundle import default_bundle_dir

        return [default_bundle_dir()]
    from edgerestore.contract import PRECISIONS
    from edgerestore.pipeline import ensure_bundle

    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise UserError(f"--precision {args.precision!r}: expected {', '.join(PRECISIONS)} or a list of them")
    return [
        ensure_bundle(
            args.profile,
            p,
            args.backend,
            export_root=args.export_root,
            engines_root=args.engines_root,
            checkpoint=args.checkpoint,
            untrained=True,
        ).bundle
        for p in precisions
    ]


def _run_sweep(args: argparse.Namespace) -> int:
    from edgerestore.measure.studies import sweep_cmudrn, sweep_uffn
    from edgerestore.pipeline import load_model

    sizes = _int_list(args.sweep_sizes, "--sweep-sizes")
    for profile in [p.strip() for p in args.sweep_profiles.split(",") if p.strip()]:
        if profile.startswith("cmudrn"):
            model, _, source = load_model(profile, args.checkpoint if args.profile == profile else None)
            result = sweep_cmudrn(
                model,
                sizes,
                _int_list(args.sweep_loops, "--sweep-loops"),
                args.out,
                profile=profile,
                frames=max(1, args.frames),
                warmup=args.warmup,
                threads=args.threads,
                weights=source,
            )
        else:
            source = ""
            result = sweep_uffn(
                profile,
                [s + s % 2 for s in sizes],
                [p.strip() for p in args.sweep_precisions.split(",") if p.strip()],
                args.out,
                condition=args.condition if args.condition not in (None, "clean") else "rain",
                frames=max(1, args.frames),
                warmup=args.warmup,
                threads=args.threads,
                export_root=args.export_root,
                engines_root=args.engines_root,
            )
        print(f"\n{profile}: model p50 ms (rows: size, columns: {result.col_label}) {source}")
        print("| size | " + " | ".join(str(c) for c in result.cols) + " |")
        print("|---" * (len(result.cols) + 1) + "|")
        for i, s in enumerate(result.rows):
            print(f"| {s}x{s} | " + " | ".join(f"{v:.1f}" for v in result.p50_ms[i]) + " |")
        print(f"wrote {result.csv} and {result.png}")
    return 0


def _run_compare_backends(args: argparse.Namespace) -> int:
    from edgerestore.errors import UserError
    from edgerestore.measure.cases import parse_sizes
    from edgerestore.measure.report import write_json_atomic
    from edgerestore.measure.studies import backends_table, compare_backends

    if not args.profile:
        raise UserError("--compare-backends needs --profile NAME (e.g. uffn-tiny)")
    payload = []
    for size in parse_sizes(args.sizes):
        rows, device = compare_backends(
            args.profile,
            size,
            condition=args.condition,
            frames=args.frames,
            warmup=args.warmup,
            threads=args.threads or 2,
            export_root=args.export_root,
            engines_root=args.engines_root,
            checkpoint=args.checkpoint,
        )
        print(f"\n{args.profile} on {device.key}")
        print(backends_table(rows, size, args.condition))
        payload.append({"size": list(size), "device": device.to_dict(), "rows": [r.to_dict() for r in rows]})
    path = write_json_atomic(
        args.out / f"backends_{args.profile}.json", {"format": "edgerestore-backends/1", "runs": payload}
    )
    print(f"wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    from edgerestore.errors import UserError
    from edgerestore.files import check_writable
    from edgerestore.measure.cases import CaseTimer, bench_cases, cover_resize, parse_sizes
    from edgerestore.measure.device import device_of
    from edgerestore.measure.pipeline import measure_pipeline
    from edgerestore.measure.plots import plot_latency
    from edgerestore.measure.reference import Reference
    from edgerestore.measure.regression import (
        baseline_destination,
        check_device,
        check_judge,
        check_judge_threads,
        check_shared_cases,
        compare,
        resolve_baseline,
        validate_report,
    )
    from edgerestore.measure.report import BenchReport, load_json, write_json_atomic
    from edgerestore.measure.stats import INCONCLUSIVE, REGRESSED, parse_tolerance, round_sizes

    if args.frames < 1 or args.warmup < 0:
        raise UserError("--frames must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads} must be >= 1 (leave it out for the bundle's own)")
    check_writable(args.out, "--out", folder=True)  # before minutes of timing, not after
    if args.sweep:
        return _run_sweep(args)
    if args.compare_backends:
        return _run_compare_backends(args)
    if args.profile_nodes and not args.roofline:
        raise UserError("--profile-nodes goes with --roofline")
    if args.roofline:
        from edgerestore.measure.roofline import run_roofline

        return run_roofline(
            _bundles(args),
            parse_sizes(args.sizes),
            args.out,
            rounds=args.frames,
            warmup=args.warmup,
            threads=args.threads,
            plot=not args.no_plot,
            profile=args.profile_nodes,
        )
    tolerance = parse_tolerance(args.tolerance)
    sizes = parse_sizes(args.sizes)
    if args.rounds is None:
        args.rounds = min(10, args.frames)
    round_sizes(args.frames, args.rounds)  # --rounds within 1..--frames, before anything opens
    if not 0.5 <= args.confidence < 1.0:
        raise UserError(f"--confidence {args.confidence:g} must be in [0.5, 1)")
    baseline = base_path = None
    if args.compare:  # a malformed baseline is refused before any bundle is opened, not after timing
        if Path(args.compare).is_file():
            base_path = Path(args.compare)
            baseline = validate_report(load_json(base_path, "baseline"), f"baseline {base_path}")
        elif not Path(args.compare).is_dir():
            raise UserError(f"--compare {args.compare}: no such baseline file or folder")

    from contextlib import ExitStack

    from edgerestore.runtime.restorer import Restorer

    real = input_frames(args.input) if args.input else None
    reference = args.reference or args.judge in ("cpu", "relative")
    with ExitStack() as stack:
        timers, restorers, device = [], [], None
        for bundle in _bundles(args):
            restorer = stack.enter_context(Restorer.open(bundle, threads=args.threads))
            dev = device_of(restorer)
            if device is not None and dev.key != device.key:
                raise UserError(
                    f"bundles run on different devices ({device.key} vs {dev.key}); bench them separately"
                )
            device = dev
            restorers.append(restorer)
            ref = Reference.for_restorer(restorer) if reference else None
            timers += [
                CaseTimer(
                    restorer,
                    size,
                    condition=args.condition,
                    pool=None if real is None else [("input", cover_resize(f, size)) for f in real],
                    reference=ref,
                )
                for size in sizes
            ]
        assert device is not None
        if args.compare:  # foreign, malformed or disjoint baselines are refused before any timing
            if baseline is None:
                base_path = resolve_baseline(args.compare, device.key)
                baseline = validate_report(load_json(base_path, "baseline"), f"baseline {base_path}")
            check_device(baseline, device.key)
            check_shared_cases(baseline, [t.id for t in timers])
            check_judge(baseline, device.kind, args.judge, device.threads)
        else:  # a baseline for --judge cpu / relative must be one they accept
            check_judge_threads(args.judge, {"this run": device.threads})
        if args.save_baseline is not None:
            check_writable(baseline_destination(args.save_baseline, device.key), "--save-baseline")
        timing = "cuda_events" if restorers[0].backend.name == "tensorrt" else "perf_counter"
        cases = bench_cases(timers, frames=args.frames, warmup=args.warmup, rounds=args.rounds, progress=True)
        pipelines = []
        for case, timer in zip(cases, timers):
            if case.family == "uffn" and args.condition is None and "trunk" not in case.stages:
                print(
                    f"note: the router judged every frame of {case.id} clean, so no trunk or branch ran; "
                    "use --condition to time a branch",
                    file=sys.stderr,
                )
            if args.pipeline:
                pb = measure_pipeline(
                    timer.restorer,
                    timer.size,
                    frames=args.frames,
                    warmup=args.warmup,
                    condition=args.condition,
                    camera_fps=args.camera_fps,
                )
                print("\n".join(pb.lines(args.min_fps)))
                pipelines.append({"case": case.id, **pb.to_dict()})
    report = BenchReport(
        device=device,
        cases=cases,
        timing_source=timing,
        settings={
            "frames": args.frames,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "threads": args.threads,
            "sizes": args.sizes,
            "reference": reference,
        },
        pipeline=pipelines,
    )
    print(
        f"\ndevice {device.key} ({device.name}, {device.cores} cores, {device.runtime} {device.runtime_version}, "
        f"threads {device.threads}); timings: {timing}"
    )
    print(report.table())
    payload = report.to_dict()
    json_path = write_json_atomic(args.out / "bench.json", payload)
    print(f"wrote {json_path}")
    if not args.no_plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            print(
                "note: matplotlib is not installed, so no latency plot (pip install matplotlib)",
                file=sys.stderr,
            )
        else:
            png = plot_latency(cases, args.out / "bench_latency.png", title=device.key)
            print(f"wrote {png}")
    if args.save_baseline is not None:
        path = baseline_destination(args.save_baseline, device.key)
        write_json_atomic(path, report.to_dict(samples=False))
        print(f"baseline for {device.key} stored in {path}")
    if baseline is not None:
        result = compare(
            payload,
            baseline,
            tolerance,
            args.stat,
            min_ms=args.min_ms,
            confidence=args.confidence,
            max_extra_load=args.max_extra_load,
            judge=args.judge,
        )
        print("\n" + "\n".join(result.lines()))
        if result.verdict == REGRESSED:
            print(
                f"edgerestore bench: latency regression vs {base_path}: {result.summary()}", file=sys.stderr
            )
            return 1
        if result.verdict == INCONCLUSIVE:
            print(f"edgerestore bench: vs {base_path}: {result.summary()}", file=sys.stderr)
    return 0
