"""Does the documented regression check tell noise from a change on this machine? (issue 25, item 2)

    python benchmarks/regression_trials.py --runs 20                       # saves a baseline first
    python benchmarks/regression_trials.py --runs 20 --baseline B.json     # against a saved baseline
    python benchmarks/regression_trials.py --runs 20 -- --profile uffn-tiny --precision int8 --sizes 360p,720p

Runs the README's commands as a user would, each as its own `edgerestore bench` process: first
`edgerestore bench ARGS --save-baseline B.json` (unless `--baseline` names one), then `--runs` rounds of
`edgerestore bench ARGS --compare B.json` of each kind, alternating (unchanged, hog, slow, unchanged, ...) so
that a drift of the machine's load lands on every kind alike:

* `unchanged`: the same command, nothing changed;
* `hog`: one busy CPU hog (`python -c 'while 1: pass'`) started just before the check and killed after it;
* `slow`: the graphs made `--slowdown` (1.3) times slower: every ONNX Runtime graph run is followed, inside
  the runtime's timing of that graph, by CPU work of (slowdown - 1) x the process CPU time the run took (the
  sessions of `OnnxRuntimeBackend` wrapped, in the check's process only; the reference workload's session is
  not one of them), so each graph costs `--slowdown` times the work, and its stage, `total` and `cpu` show it.
  At `--threads 1` on an idle core that is `--slowdown` times the wall-clock time too; at more threads the
  added work runs on one thread, so the wall-clock stages grow by more. (An earlier version added the work
  after `Restorer.__call__` returned: the `cpu` stage saw it, the runtime's wall-clock stages did not.)

Each run's verdict is the check's own (its exit status: 1 = regressed; else its summary line), with ARGS'
`--judge`; beside it, `compare` on the run's bench.json gives the verdict of each judge (wall, cpu, relative;
n/a where a judge refuses the runs: cpu without `--threads 1`, relative without `--reference`), so one
experiment measures them all. Prints one line per run and the counts: a false alarm is an unchanged run called
regressed, a catch a hog or slow run called regressed. `--json` writes every line. Goal (issue 25): 0 false
alarms in 20, every slowdown caught, each run well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

DEFAULT_ARGS = ["--profile", "uffn-tiny", "--precision", "int8", "--sizes", "360p,720p"]


#: `slow_graphs(factor)`: from then on, every ONNX Runtime session a backend loads is followed, inside the
#: runtime's timing of its graph, by (factor - 1) x the process CPU time the run took of CPU work.
SLOW_GRAPHS = """
import time
from edgerestore.runtime.ort import OnnxRuntimeBackend

class Slower:
    def __init__(self, session, factor):
        self._session, self._factor = session, factor
    def run_with_iobinding(self, binding):
        c0 = time.process_time()
        self._session.run_with_iobinding(binding)
        end = time.thread_time() + (time.process_time() - c0) * (self._factor - 1.0)
        while time.thread_time() < end:
            pass
    def __getattr__(self, name):
        return getattr(self._session, name)

def slow_graphs(factor):
    plain = OnnxRuntimeBackend.load
    def load(self, name, path):
        info = plain(self, name, path)
        self._sessions[name] = Slower(self._sessions[name], factor)
        return info
    OnnxRuntimeBackend.load = load
"""
SLOW = (
    SLOW_GRAPHS
    + """
import sys
slow_graphs(float(sys.argv.pop(1)))
from edgerestore.cli import main
sys.exit(main(sys.argv[1:]))
"""
)


def bench(args: list[str], out: Path, slowdown: float | None = None) -> tuple[int, str, float]:
    cli = ["-m", "edgerestore.cli"] if slowdown is None else ["-c", SLOW, str(slowdown)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *cli, "bench", *args, "--out", str(out), "--no-plot"], capture_output=True, text=True
    )
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def judged(out: Path, baseline: Path, args: list[str]) -> dict[str, str]:
    """The verdict of each judge on the run's bench.json (the check's own compare, its other options); "n/a"
    where that judge refuses the runs (the cpu judge at more than one intra-op thread)."""
    from edgerestore.errors import UserError
    from edgerestore.measure.regression import JUDGES, compare
    from edgerestore.measure.stats import parse_tolerance

    def opt(name: str, default: str) -> str:
        return args[args.index(name) + 1] if name in args else default

    current = json.loads((out / "bench.json").read_text())
    base = json.loads(baseline.read_text())
    tolerance, stat = parse_tolerance(opt("--tolerance", "10%")), opt("--stat", "") or None

    def verdict(judge: str) -> str:
        try:
            return compare(current, base, tolerance, stat, judge=judge).verdict
        except UserError:
            return "n/a"

    return {j: verdict(j) for j in JUDGES}


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
    """The judged `total` (or `cpu`) per case from the check's table (ratio [interval] verdict), and its
    machine-load line."""
    parts = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[1] in ("total", "cpu"):
            size = cells[0].split("/")[3] if cells[0].count("/") >= 3 else cells[0]
            parts.append(f"{size} {cells[1]} x{cells[5]} {cells[6]} {cells[7]}")
    load = re.search(r"machine load .*: baseline ([\d.]+), this run ([\d.]+)", output)
    if load:
        parts.append(f"runnable others {load.group(2)} (baseline {load.group(1)})")
    return "; ".join(parts)


def rejudge(folder: Path, args: list[str]) -> int:
    """Counts of each judge's verdicts over the runs saved in `folder` (as `main` leaves them)."""
    counts: dict[str, dict[str, Counter]] = {}
    for run in sorted(folder.glob("*/bench.json")):
        kind = run.parent.name.rstrip("0123456789")
        if kind == "baseline":
            continue
        for j, v in judged(run.parent, folder / "baseline.json", args).items():
            counts.setdefault(j, {}).setdefault(kind, Counter())[v] += 1
    for j, d in counts.items():
        print(f"judge {j}: " + "; ".join(f"{k} {dict(v)}" for k, v in sorted(d.items())))
    return 0


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped experiment still kills its hog
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="runs of each kind (20)")
    ap.add_argument("--kinds", default="unchanged,hog,slow", help="which kinds, in turn (unchanged,hog,slow)")
    ap.add_argument("--slowdown", type=float, default=1.3, help="the slow kind's factor (1.3)")
    ap.add_argument("--baseline", type=Path, help="a saved baseline (default: save one first)")
    ap.add_argument("--json", type=Path, help="write every run's line here")
    ap.add_argument(
        "--rejudge",
        type=Path,
        metavar="DIR",
        help="judge an earlier experiment's saved runs (DIR/baseline.json, DIR/<kind><i>/bench.json) again with "
        "this compare and print the counts; times nothing",
    )
    ap.add_argument("bench_args", nargs="*", help=f"after --: the bench arguments ({' '.join(DEFAULT_ARGS)})")
    a = ap.parse_args()
    args = a.bench_args or DEFAULT_ARGS
    if a.rejudge:
        return rejudge(a.rejudge, args)
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    if not set(kinds) <= {"unchanged", "hog", "slow"}:
        raise SystemExit(f"--kinds {a.kinds}: expected unchanged, hog and/or slow")
    tmp = Path(tempfile.mkdtemp(prefix="edgerestore-trials-"))
    baseline = a.baseline or tmp / "baseline.json"
    load0 = os.getloadavg()
    print(f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} CPUs", flush=True)
    print(f"check: edgerestore bench {' '.join(args)} --compare {baseline}", flush=True)
    if a.baseline is None:
        code, output, wall = bench([*args, "--save-baseline", str(baseline)], tmp / "baseline")
        if code != 0:
            raise SystemExit(f"saving the baseline failed (exit {code}):\n{output[-3000:]}")
        print(f"baseline saved in {wall:.0f} s: {baseline}", flush=True)
    records: list[dict] = []
    counts: dict[str, Counter] = {k: Counter() for k in kinds}
    by_judge: dict[str, dict[str, Counter]] = {}
    for i in range(a.runs):
        for kind in kinds:
            out = tmp / f"{kind}{i}"
            hog = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if kind == "hog" else None
            try:
                code, output, wall = bench(
                    [*args, "--compare", str(baseline)], out, a.slowdown if kind == "slow" else None
                )
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            verdict = verdict_of(code, output)
            judges = judged(out, baseline, args)
            counts[kind][verdict] += 1
            for j, v in judges.items():
                by_judge.setdefault(j, {k: Counter() for k in kinds})[kind][v] += 1
            load = os.getloadavg()[0]
            rec = {"kind": kind, "run": i + 1, "verdict": verdict, "judges": judges, "wall_s": round(wall, 1)}
            rec |= {"load1": load, "total": total_ratios(output)}
            records.append(rec)
            others = " ".join(f"{j}={v}" for j, v in judges.items())
            print(
                f"{kind:9} {i + 1:2}: {verdict:12} ({others}) {wall:3.0f} s  load {load:5.2f}  {rec['total']}",
                flush=True,
            )
    load1 = os.getloadavg()
    walls = [r["wall_s"] for r in records]
    false_alarms = counts.get("unchanged", Counter())["regressed"]
    caught = {k: counts[k]["regressed"] for k in kinds if k != "unchanged"}
    summary = {
        "check": ["edgerestore", "bench", *args, "--compare", str(baseline)],
        "runs": a.runs,
        "verdicts": {k: dict(v) for k, v in counts.items()},
        "by_judge": {j: {k: dict(v) for k, v in d.items()} for j, d in by_judge.items()},
        "false_alarms": false_alarms,
        "caught": caught,
        "load_before": load0,
        "load_after": load1,
        "wall_s": [min(walls), max(walls)],
    }
    print()
    for j, d in by_judge.items():
        print(f"judge {j}: " + "; ".join(f"{k} {dict(v)}" for k, v in d.items()))
    print(
        f"the check: false alarms {false_alarms}/{a.runs}, caught "
        + ", ".join(f"{k} {n}/{a.runs}" for k, n in caught.items())
        + f"; runs took {min(walls):.0f}-{max(walls):.0f} s; load average before {load0[0]:.2f}, "
        f"after {load1[0]:.2f}"
    )
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "runs": records}, indent=1))
    return 0 if false_alarms == 0 and all(n == a.runs for n in caught.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
