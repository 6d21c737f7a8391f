"""Benchmark: never worse than its labels, per task, on the dev stand-ins (CLI defaults, CPU).

    python bench/guard.py [--groups chemprot+yoruba youtube+trec] [--data ../shared/data]
                          [--ws-root /tmp/mm-bench-guard] [--train-arg=--set --train-arg=span_pooling=false]
                          [--label NAME] [--out bench/results/guard.json]

Each group is one workspace and one mother model (the tasks trained together), built as a new user would:
``init``, ``import wrench`` per set, ``label fit --model majority`` (the peer every label model must beat,
kept as its own version), ``label fit`` (the default, the version the model learns from), ``train --device
cpu``, ``distill --all``, ``status``. Per task it reports test and valid accuracy of majority vote, the label
fit, every stage of the mother model, what the guard chose to serve the task (and its margin over the labels
on valid), and the deployable (the student, with the fallback students it tried); then the issue's targets:
mother model >= labels + 3 points (chemprot), deployable >= max(labels, majority vote) (yoruba),
``label fit`` >= majority vote - 0.5 point (every set), youtube >= 0.95, trec >= 0.80.

Test figures are reported, never used: the guard and every default choose on valid. Writes JSON with the
commands, the figures and the wall times; an existing group result under ``--label`` is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
CLI = [str(Path(sys.executable).with_name("mothermodel"))]  # the console script beside this Python


def cli(ws: Path, *args: str) -> dict:
    """One CLI command with --json; its parsed output."""
    cmd = [*CLI, "-w", str(ws), *args, "--json"]
    print("$ mothermodel -w", ws, " ".join(args), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def acc(metrics: dict, split: str):
    v = (metrics or {}).get(split) or {}
    return v.get("accuracy")


def run_group(names: list[str], args: argparse.Namespace) -> dict:
    ws = args.ws_root / "+".join(names)
    shutil.rmtree(ws, ignore_errors=True)
    subprocess.run([*CLI, "init", str(ws)], check=True, capture_output=True)
    out: dict = {"tasks": {}, "seconds": {}}
    for n in names:
        cli(ws, "import", "wrench", str(args.data / n), "--task", n)
        mv = cli(ws, "label", "fit", n, "--model", "majority")
        fit = cli(ws, "label", "fit", n)
        out["tasks"][n] = {"majority": {s: acc(mv["metrics"], s) for s in ("valid", "test")},
                           "labels": {s: acc(fit["metrics"], s) for s in ("valid", "test")},
                           "label_fit_chosen": (fit.get("selected") or {}).get("chosen"),
                           "label_fit_uses_dev": fit.get("label_model_uses_dev")}
    t0 = time.perf_counter()
    tr = cli(ws, "train", "--device", "cpu", *args.train_arg)
    out["seconds"]["train"] = round(time.perf_counter() - t0, 1)
    (ws / "bench-train.json").write_text(json.dumps(tr))  # kept beside the workspace, for a look later
    t0 = time.perf_counter()
    di = cli(ws, "distill", "--all")
    out["seconds"]["distill"] = round(time.perf_counter() - t0, 1)
    (ws / "bench-distill.json").write_text(json.dumps(di))
    st = {t["name"]: t for t in cli(ws, "status")["tasks"]}
    dist = {d["task"]: d for d in di["distilled"]}
    m = tr["metrics"]
    for n in names:
        g = tr["guard"][n]
        rec = out["tasks"][n]
        pre = f"{n}/{n}"
        rec["stages"] = {s: {f"stage-{i}": m.get(f"{pre}/{s}/stage{i}_accuracy") for i in range(tr["stages"])}
                         for s in ("valid", "test")}
        rec["mother_model"] = {s: m.get(f"{pre}/{s}/accuracy") for s in ("valid", "test")}  # the chosen stage
        rec["served"] = {s: m.get(f"{pre}/{s}/served_accuracy") for s in ("valid", "test")}
        rec["guard"] = {k: g.get(k) for k in ("served_by", "stage", "final_stage", "margin", "agreement", "reason",
                                               "cause")}
        d = dist[n]
        rec["deployable"] = {s: d["metrics"].get(f"{pre}/{s}/accuracy") for s in ("valid", "test")}
        rec["teacher"] = d.get("teacher", {}).get("kind")
        rec["student_choice"] = d.get("student_choice")
        rec["status_serving"] = (st[n].get("serving") or {}).get("served_by")
    return out


def targets(res: dict) -> dict:
    t = {}
    for group in res["groups"].values():
        for n, r in group["tasks"].items():
            lab, mv, mm, dep = (r["labels"]["test"], r["majority"]["test"], r["mother_model"]["test"],
                                r["deployable"]["test"])
            t[f"{n}: label fit >= majority - 0.5"] = lab >= mv - 0.005
            t[f"{n}: deployable >= max(labels, mother model) - 0.5"] = dep >= max(lab, mm) - 0.005
            if n == "chemprot":
                t["chemprot: mother model >= labels + 3"] = mm >= lab + 0.03
            if n == "yoruba":
                t["yoruba: deployable >= max(labels, majority)"] = dep >= max(lab, mv)
            if n == "youtube":
                t["youtube: mother model >= 0.95"] = mm >= 0.95
            if n == "trec":
                t["trec: mother model >= 0.80"] = mm >= 0.80
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", nargs="+", default=["chemprot+yoruba", "youtube+trec"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--ws-root", type=Path, default=Path("/tmp/mm-bench-guard"))
    ap.add_argument("--train-arg", action="append", default=[], help="extra argument for `train` (repeatable)")
    ap.add_argument("--label", default="defaults", help="name of this configuration in the JSON")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "guard.json")
    args = ap.parse_args()
    missing = [n for g in args.groups for n in g.split("+") if not (args.data / n).is_dir()]
    if missing:
        print(f"skipped: {args.data} has no {', '.join(missing)}", file=sys.stderr)
        return
    args.ws_root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    res = {"command": " ".join(sys.argv), "train_args": args.train_arg, "groups": {}}
    for g in args.groups:
        res["groups"][g] = run_group(g.split("+"), args)
    res["targets"] = targets(res)
    all_res = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.label in all_res:  # other groups of this configuration, measured in another invocation, stay
        res["groups"] = {**all_res[args.label]["groups"], **res["groups"]}
        res["targets"] = targets(res)
    all_res[args.label] = res
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(all_res, indent=2))
    tmp.replace(args.out)
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print(f"{'task':10} {'MV':>6} {'labels':>6} {'model':>6} {'served by':>12} {'margin':>7} {'deploy':>6}  (test; valid in JSON)")
    for g in res["groups"].values():
        for n, r in g["tasks"].items():
            print(f"{n:10} {f(r['majority']['test']):>6} {f(r['labels']['test']):>6} {f(r['mother_model']['test']):>6} "
                  f"{r['guard']['served_by']:>12} {r['guard']['margin'] if r['guard']['margin'] is not None else '-':>7} "
                  f"{f(r['deployable']['test']):>6}")
    for k, ok in res["targets"].items():
        print(("met     " if ok else "MISSED  ") + k)


if __name__ == "__main__":
    main()
