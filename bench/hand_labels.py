"""Hand labels against the "Weaker Than You Think" anchor (issue 21), in one run.

    python bench/hand_labels.py [--groups youtube+trec chemprot] [--seeds 123] [--anchor-seeds 0] [--distill]

For each group of WRENCH sets (../shared/data; skipped when absent) in a fresh workspace:
1. `import wrench`, `label fit` (weak only: the label figure without hand labels);
2. the valid split's gold labels written to a file and added with `label add` (youtube 120 rows, trec 500,
   chemprot 300): hand labels that are valid rows, so every figure after this says `uses_dev_labels` and no
   valid figure is left (those rows are trained on, never scored); train gold is never read;
3. `label fit` again (the label model anchored on them), `train` (hand rows in every stage, then the clean
   stage on them alone: TrainConfig.hand_epochs), and with --distill `distill --all`;
4. the anchor, in the same run: the bundled encoder fine-tuned on the same valid gold alone (bench/anchor.py).
With several --seeds, steps 3 repeats per training seed (one workspace each, students on the first) and the
mother model's figure is the median, as the anchor's is over --anchor-seeds.
Figures: test accuracy; JSON in bench/results/hand_labels.json. Weak-only mother-model figures for the ratio
come from bench/results/guard.json (same code path without hand labels).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from anchor import run_one  # noqa: E402
from guard import CLI, acc, cli  # noqa: E402


def valid_gold_file(ws: Path, task: str, out: Path) -> int:
    """The valid split's gold labels of TASK's dataset as a hand-label file (row, label); rows written."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mothermodel.api import Registry

    reg = Registry.open(ws)
    t = reg.store.task(task)
    ds = reg.store.dataset(t.dataset)
    table = reg.store.read_dataset(ds)
    gold = ds.gold_column(t)
    keep = pc.and_(pc.equal(table.column(ds.split_field), "valid"), pc.is_valid(table.column(gold)))
    sel = table.filter(keep)
    pq.write_table(pa.table({"row": sel.column("_row"), "label": sel.column(gold)}), out)
    return sel.num_rows


def run_group(names: list[str], args) -> dict:
    ws = args.ws_root / "+".join(names)
    shutil.rmtree(ws, ignore_errors=True)
    subprocess.run([*CLI, "init", str(ws)], check=True, capture_output=True)
    out: dict = {"tasks": {}, "seconds": {}}
    for n in names:
        cli(ws, "import", "wrench", str(args.data / n), "--task", n)
        weak = cli(ws, "label", "fit", n)
        rows = valid_gold_file(ws, n, ws / f"{n}-valid-gold.parquet")
        added = cli(ws, "label", "add", n, str(ws / f"{n}-valid-gold.parquet"), "--by", "bench")
        fit = cli(ws, "label", "fit", n)
        out["tasks"][n] = {"hand_rows": rows, "hand_valid_rows": added["valid_rows"],
                           "labels_weak_only": {s: acc(weak["metrics"], s) for s in ("valid", "test")},
                           "labels_with_hand": {s: acc(fit["metrics"], s) for s in ("valid", "test")},
                           "label_fit_uses_dev_labels": fit["uses_dev_labels"]}
    per_seed: dict[str, list[float]] = {n: [] for n in names}
    spaces = [ws]
    for seed in args.seeds[1:]:  # labels fitted once; each further seed trains in its own untrained copy
        spaces.append(ws.with_name(f"{ws.name}-seed{seed}"))
        shutil.rmtree(spaces[-1], ignore_errors=True)
        shutil.copytree(ws, spaces[-1])
    for i, (seed, run_ws) in enumerate(zip(args.seeds, spaces)):
        t0 = time.perf_counter()
        tr = cli(run_ws, "train", "--device", "cpu", "--seed", str(seed), *args.train_arg)
        out["seconds"][f"train seed {seed}"] = round(time.perf_counter() - t0, 1)
        (run_ws / "bench-train.json").write_text(json.dumps(tr))
        m = tr["metrics"]
        for n in names:
            per_seed[n].append(m.get(f"{n}/{n}/test/served_accuracy"))
            if i:
                continue
            rec = out["tasks"][n]
            pre = f"{n}/{n}"
            rec["stages"] = {f"stage-{j}": m.get(f"{pre}/test/stage{j}_accuracy") for j in range(tr["stages"])}
            rec["guard"] = {k: tr["guard"][n].get(k) for k in ("served_by", "stage", "final_stage", "reason")}
    for n in names:
        out["tasks"][n]["mother_model_with_hand_seeds"] = {"seeds": args.seeds, "test": per_seed[n]}
        out["tasks"][n]["mother_model_with_hand"] = statistics.median(per_seed[n])
    if args.distill:
        t0 = time.perf_counter()
        di = cli(ws, "distill", "--all")
        out["seconds"]["distill"] = round(time.perf_counter() - t0, 1)
        for d in di["distilled"]:
            out["tasks"][d["task"]]["student_with_hand"] = d["metrics"].get(f"{d['task']}/{d['task']}/test/accuracy")
    for n in names:
        accs = []
        for seed in args.anchor_seeds:
            t0 = time.perf_counter()
            r = run_one(n, args.data, seed, 10, 5e-5, 16, 128)
            accs.append(r["test_accuracy"])
            out["seconds"][f"anchor {n} seed {seed}"] = round(time.perf_counter() - t0, 1)
        out["tasks"][n]["anchor"] = {"seeds": args.anchor_seeds, "test": accs, "median": statistics.median(accs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", nargs="+", default=["youtube+trec", "chemprot"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--ws-root", type=Path, default=Path("/tmp/mm-bench-hand"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[123], help="training seeds of ours (median)")
    ap.add_argument("--anchor-seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--distill", action="store_true", help="also distil students and report them")
    ap.add_argument("--train-arg", action="append", default=[], help="extra argument for `train` (repeatable)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hand_labels.json")
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"skipped: no data folder {args.data}")
        return
    weak = {}
    guard_json = REPO / "bench" / "results" / "guard.json"
    if guard_json.is_file():
        for cfg in json.loads(guard_json.read_text()).values():
            for g in cfg.get("groups", {}).values():
                for n, r in g["tasks"].items():
                    weak.setdefault(n, (r.get("served") or {}).get("test"))
    res = {"groups": {}, "weak_only_mother_model_test": weak}
    for g in args.groups:
        res["groups"][g] = run_group(g.split("+"), args)
    rows = []
    for g in res["groups"].values():
        for n, r in g["tasks"].items():
            a, ours, w = r["anchor"]["median"], r["mother_model_with_hand"], weak.get(n)
            rows.append((n, r["hand_rows"], r["labels_weak_only"]["test"], r["labels_with_hand"]["test"], w, ours,
                         r.get("student_with_hand"), a))
            r["targets"] = {"beats anchor": ours is not None and ours > a,
                            "beats weak-only mother model": w is None or (ours is not None and ours > w)}
    print(f"{'task':10} {'hand':>5} {'labels':>7} {'+hand':>7} {'weak MM':>8} {'MM+hand':>8} {'student':>8} "
          f"{'anchor':>7} {'MM+hand/anchor':>14}")
    for n, h, lw, lh, w, o, st, a in rows:
        f = lambda v: f"{v:.3f}" if isinstance(v, float) else "-"  # noqa: E731
        print(f"{n:10} {h:>5} {f(lw):>7} {f(lh):>7} {f(w):>8} {f(o):>8} {f(st):>8} {f(a):>7} "
              f"{(o / a if o and a else float('nan')):>14.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
