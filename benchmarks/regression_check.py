"""Does `bench --compare` tell noise from a change? One run of this script answers it on this machine.

    python benchmarks/regression_check.py                          # builds uffn-tiny fp32 in a temp folder
    python benchmarks/regression_check.py --bundle engines/uffn-tiny-onnxruntime-fp32 --runs 20

Records a baseline (the same rounds `edgerestore bench --save-baseline` records), then times `--runs`
unchanged runs against it, then `--runs` runs with one busy CPU hog (a process spinning on one core) beside
them, and prints each run's verdict and the ratio of the `total` stage. The goal (issue 25): no unchanged run
is called regressed; every hogged run is. Keep it short on a shared machine (small frames, few rounds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="an ONNX Runtime bundle (default: build uffn-tiny fp32)")
    ap.add_argument("--size", default="180x320")
    ap.add_argument("--condition", default="rain")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--stat", default="p50", choices=("mean", "p50", "p90", "p99", "max"))
    ap.add_argument("--dump", type=Path, help="write every run's report (baseline, unchanged, hog) as JSON")
    args = ap.parse_args()

    from edgerestore.measure.cases import CaseTimer, bench_cases, parse_size
    from edgerestore.measure.device import device_of
    from edgerestore.measure.regression import compare
    from edgerestore.measure.report import BenchReport, write_json_atomic
    from edgerestore.measure.stats import REGRESSED
    from edgerestore.runtime.restorer import Restorer

    tmp = tempfile.TemporaryDirectory()
    bundle = args.bundle
    if bundle is None:
        from edgerestore.pipeline import ensure_bundle

        root = Path(tmp.name)
        bundle = ensure_bundle(
            "uffn-tiny", "fp32", "onnxruntime", export_root=root / "export", engines_root=root / "engines",
            progress=False, echo=lambda _: None, untrained=True,
        ).bundle  # fmt: skip
    size = parse_size(args.size)
    with Restorer.open(bundle, threads=args.threads) as r:
        device = device_of(r)

        def run() -> dict:
            timer = CaseTimer(r, size, condition=args.condition)
            cases = bench_cases([timer], frames=args.frames, warmup=3, rounds=args.rounds)
            return BenchReport(device, cases, "perf_counter").to_dict(samples=False)

        baseline = run()
        dumped: dict = {"baseline": baseline, "unchanged": [], "hog": []}
        verdicts: dict[str, Counter] = {"unchanged": Counter(), "hog": Counter()}
        for kind in ("unchanged", "hog"):
            hog = None
            if kind == "hog":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for i in range(args.runs):
                    report = run()
                    dumped[kind].append(report)
                    result = compare(report, baseline, tolerance=args.tolerance, stat=args.stat)
                    total = next(c for c in result.checks if c.stage == "total")
                    verdicts[kind][result.verdict] += 1
                    print(
                        f"{kind:9} run {i + 1:2}: {result.verdict:12} total x{total.ratio:.2f} "
                        f"[{total.estimate.low:.2f}, {total.estimate.high:.2f}], other runnable tasks "
                        f"{result.load[1]} (baseline {result.load[0]})",
                        flush=True,
                    )
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    if args.dump:
        write_json_atomic(args.dump, dumped)
    print(
        f"\ndevice {device.key}, {args.size} {args.condition}, {args.frames} frames in {args.rounds} rounds"
    )
    for kind, counts in verdicts.items():
        print(f"{kind}: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
    false_alarms = verdicts["unchanged"][REGRESSED]
    missed = args.runs - verdicts["hog"][REGRESSED]
    print(f"false alarms {false_alarms}/{args.runs}, missed slowdowns {missed}/{args.runs}")
    return 0 if false_alarms == 0 and missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
