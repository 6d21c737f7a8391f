"""Benchmark: the multi-task check over seeds: each task trained alone against the joint mother model.

    python bench/train_alone.py [--seeds 123 1 2] [--ws-root /tmp/mm-bench-train] [--runs DIR]
                                [--set FIELD=VALUE ...] [--out bench/results/train_alone.json]

For each seed, three runs of ``bench/train_quality.py`` (same settings, same
label fits): spam + trec jointly, spam alone, trec alone, each in its own
fitted workspace under ``--ws-root`` (``ws-spam-trec``, ``ws-spam``,
``ws-trec``; made with the CLI when missing). "Alone" has the same
configuration, so the same epochs over its own rows: the same per-task budget.

Why seeds: one run is one draw. Youtube's test split has 250 rows (one row =
0.4 point) and trec's figure moved 3.4 points between two seeds of the same
settings (docs/trainer.md, "Alone vs joint"), more than the 1-point margin
the check allows. The check is made on medians over seeds, and every seed's
figures are reported beside them.

Each run's JSON is kept under ``--runs`` (default ``WS_ROOT/alone-runs``); a
run whose JSON is there already is not run again, so an interrupted benchmark
resumes (delete the folder after changing the code or the label fits). Writes
the per-seed figures and the medians as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
RUNS = {"joint": ("spam,trec", "ws-spam-trec"), "spam": ("spam", "ws-spam"), "trec": ("trec", "ws-trec")}


def run_one(kind: str, seed: int, args: argparse.Namespace) -> dict:
    tasks, ws = RUNS[kind]
    out = args.runs / f"{kind}-seed{seed}.json"
    if not out.exists():
        cmd = [sys.executable, str(HERE.parent / "train_quality.py"), "--ws", str(args.ws_root / ws), "--tasks", tasks,
               "--set", "device=cpu", "--set", f"seed={seed}", *[x for s in args.set for x in ("--set", s)],
               "--out", str(out)]
        print(f"{kind} seed {seed}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    res = json.loads(out.read_text())
    return {t: v["mother_model"]["test"]["accuracy"] for t, v in res["tasks"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[123, 1, 2])
    ap.add_argument("--ws-root", type=Path, default=Path("/tmp/mm-bench-train"))
    ap.add_argument("--runs", type=Path, default=None, help="where each run's JSON goes (default: WS_ROOT/alone-runs)")
    ap.add_argument("--set", action="append", default=[], help="TrainConfig field=value for every run")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_alone.json")
    args = ap.parse_args()
    args.runs = args.runs or args.ws_root / "alone-runs"
    args.runs.mkdir(parents=True, exist_ok=True)

    per_seed = []
    for seed in args.seeds:
        joint = run_one("joint", seed, args)
        row = {"seed": seed}
        for t in ("spam", "trec"):
            alone = run_one(t, seed, args)[t]
            row[t] = {"joint": joint[t], "alone": alone, "joint_minus_alone": round(joint[t] - alone, 4)}
        per_seed.append(row)
        print(f"seed {seed}: {json.dumps({t: row[t] for t in ('spam', 'trec')})}", file=sys.stderr, flush=True)
    summary = {}
    for t in ("spam", "trec"):
        j = statistics.median(r[t]["joint"] for r in per_seed)
        a = statistics.median(r[t]["alone"] for r in per_seed)
        summary[t] = {"joint_median": j, "alone_median": a, "joint_minus_alone": round(j - a, 4),
                      "median_of_differences": round(statistics.median(r[t]["joint_minus_alone"] for r in per_seed), 4),
                      "met": round(j - a, 4) >= -0.01}
        print(f"{t}: joint median {j:.3f}, alone median {a:.3f}, joint - alone {100 * (j - a):+.1f} points "
              f"(target >= -1.0)", file=sys.stderr)
    out = {"command": "python bench/train_alone.py " + " ".join(f"--set {s}" for s in args.set)
           + f" --seeds {' '.join(map(str, args.seeds))}",
           "test_accuracy": "per task, test split", "per_seed": per_seed, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
