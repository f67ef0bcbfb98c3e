"""Does the documented regression check tell noise from a change on this machine? (issue 25, item 2)

    python benchmarks/regression_trials.py --runs 20                       # saves a baseline first
    python benchmarks/regression_trials.py --runs 20 --baseline B.json     # against a saved baseline
    python benchmarks/regression_trials.py --runs 20 -- --profile uffn-tiny --precision int8 --sizes 360p,720p

Runs the README's commands as a user would, each as its own `edgerestore bench` process: first
`edgerestore bench ARGS --save-baseline B.json` (unless `--baseline` names one), then `--runs` unchanged runs
of `edgerestore bench ARGS --compare B.json` and `--runs` runs of the same command with one busy CPU hog
(`python -c 'while 1: pass'`) started just before it and killed after it, alternating (unchanged, hogged,
unchanged, ...) so that a drift of the machine's load lands on both kinds alike. Each run's verdict is the
check's own (its exit status: 1 = regressed; its stdout: inconclusive / unchanged). Prints one line per run
(verdict, the `total` ratios and intervals, the 1-minute load average, the run's wall time) and the counts:
false alarms = unchanged runs called regressed, catches = hogged runs called regressed. `--json` writes
every line. Goal: 0 false alarms in 20 and 20 catches in 20, each run well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

DEFAULT_ARGS = ["--profile", "uffn-tiny", "--precision", "int8", "--sizes", "360p,720p"]


def bench(args: list[str], out: Path) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "edgerestore.cli", "bench", *args, "--out", str(out), "--no-plot"],
        capture_output=True,
        text=True,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def verdict_of(code: int, output: str) -> str:
    """The check's verdict: exit 1 is regressed; else its summary line says unchanged or inconclusive."""
    if code == 1:
        return "regressed"
    if code != 0:
        raise SystemExit(f"the check failed (exit {code}):\n{output[-3000:]}")
    m = re.findall(r"^(unchanged|inconclusive)\b", output, re.M)
    if not m:
        raise SystemExit(f"no verdict in the check's output:\n{output[-3000:]}")
    return m[-1]


def total_ratios(output: str) -> str:
    """`total` per case from the check's table (ratio [interval] verdict), and its machine-load line."""
    parts = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[1] == "total":
            size = cells[0].split("/")[3] if cells[0].count("/") >= 3 else cells[0]
            parts.append(f"{size} x{cells[5]} {cells[6]} {cells[7]}")
    load = re.search(r"machine load .*: baseline ([\d.]+), this run ([\d.]+)", output)
    if load:
        parts.append(f"runnable others {load.group(2)} (baseline {load.group(1)})")
    return "; ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="unchanged runs, and as many hogged runs (20)")
    ap.add_argument("--baseline", type=Path, help="a saved baseline (default: save one first)")
    ap.add_argument("--json", type=Path, help="write every run's line here")
    ap.add_argument("bench_args", nargs="*", help=f"after --: the bench arguments ({' '.join(DEFAULT_ARGS)})")
    a = ap.parse_args()
    args = a.bench_args or DEFAULT_ARGS
    tmp = Path(tempfile.mkdtemp(prefix="edgerestore-trials-"))
    baseline = a.baseline or tmp / "baseline.json"
    load0 = os.getloadavg()
    print(f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} CPUs", flush=True)
    if a.baseline is None:
        code, output, wall = bench([*args, "--save-baseline", str(baseline)], tmp / "baseline")
        if code != 0:
            raise SystemExit(f"saving the baseline failed (exit {code}):\n{output[-3000:]}")
        print(f"baseline saved in {wall:.0f} s: {baseline}", flush=True)
    records: list[dict] = []
    counts = {"unchanged": Counter(), "hog": Counter()}
    for i in range(a.runs):
        for kind in ("unchanged", "hog"):
            hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if kind == "hog" else None
            try:
                code, output, wall = bench([*args, "--compare", str(baseline)], tmp / f"{kind}{i}")
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            verdict = verdict_of(code, output)
            counts[kind][verdict] += 1
            load = os.getloadavg()[0]
            rec = {"kind": kind, "run": i + 1, "verdict": verdict, "wall_s": round(wall, 1), "load1": load}
            rec["total"] = total_ratios(output)
            records.append(rec)
            print(
                f"{kind:9} {i + 1:2}: {verdict:12} {wall:4.0f} s  load {load:5.2f}  {rec['total']}",
                flush=True,
            )
    load1 = os.getloadavg()
    false_alarms, caught = counts["unchanged"]["regressed"], counts["hog"]["regressed"]
    walls = [r["wall_s"] for r in records]
    summary = {
        "bench_args": args,
        "runs": a.runs,
        "unchanged": dict(counts["unchanged"]),
        "hog": dict(counts["hog"]),
        "false_alarms": false_alarms,
        "caught": caught,
        "load_before": load0,
        "load_after": load1,
        "wall_s": [min(walls), max(walls)],
    }
    print(f"\nunchanged runs: {dict(counts['unchanged'])}; hogged runs: {dict(counts['hog'])}")
    print(
        f"false alarms {false_alarms}/{a.runs}, caught {caught}/{a.runs}; runs took {min(walls):.0f}-"
        f"{max(walls):.0f} s; load average before {load0[0]:.2f}, after {load1[0]:.2f}"
    )
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "runs": records}, indent=1))
    return 0 if false_alarms == 0 and caught == a.runs else 1


if __name__ == "__main__":
    sys.exit(main())
