"""Slice heads (issue 22, "Slices and multi-label tasks"): per-slice test accuracy with and without them.

    python bench/slices.py [--sets youtube trec] [--seeds 123 1 2] [--quick] [--data ../shared/data]
                           [--ws-root /tmp/mm-bench-slices] [--skip-snorkel] [--snorkel-python PATH]
                           [--train-arg=--max-steps --train-arg=20] [--out bench/results/slices.json]

Per WRENCH set (../shared/data; skipped when absent), in its own workspace under --ws-root:
1. ``init``, ``import wrench``, the task resubmitted with its LF columns and the declared slices below
   (``slice_heads`` off), ``label fit`` (weak labels only; train gold is never read).
2. Per seed in --seeds, two UNTRAINED copies of that workspace: one as it is (no slice heads), one resubmitted
   with ``slice_heads=True`` and ``label fit`` again (slice heads join the task's fingerprint); each trained
   with ``train --device cpu --seed S``. Recorded: the served (guard's choice) test and valid accuracy overall
   and per slice, the slice's scored rows, and the guard's choice.
3. The peer, in the same run: Snorkel 0.10's ``SliceAwareClassifier`` (in its own interpreter,
   --snorkel-python) and the same network without slices (a plain classifier), on frozen MiniLM embeddings
   (the bundled encoder, mean-pooled, 128 tokens), trained on our ``label fit``'s predicted class (argmax of
   the probabilistic labels) on the train rows some LF covers (the rows the mother model learns from: its
   default ``uncovered_weight`` is 0), with the workspace's own slice membership (``label apply``'s file,
   so both sides see identical slices). One fixed recipe, nothing tuned: base MLP Linear(384,128)+ReLU,
   ``head_dim`` 128, Adam lr 1e-3, 30 epochs, batch 64, seeded with the same seeds. Snorkel's slice combiner
   handles two classes only (``SliceCombinerModule`` raises on more), so for trec (6 classes) the slice-aware
   peer is one-vs-rest: one binary ``SliceAwareClassifier`` per class, prediction = argmax of the classes'
   positive probabilities; the same one-vs-rest plain classifier is reported beside it (and the plain
   6-way softmax classifier too), so the lift compares like with like.

Figures: test accuracy (valid in the JSON), median over seeds. Targets (the issue's): per declared slice,
with slice heads >= without + 2 points; overall with slice heads >= without - 0.5 point. Test is reported,
never used: the slices were chosen on valid (below), the guard and every default choose on valid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from snorkel_peer import DEFAULT_SNORKEL, snorkel_interpreter  # noqa: E402

# The declared slices: regions of the text where a weak-only mother model (CLI defaults, seed 123) was weaker
# than overall on VALID (valid accuracy inside vs outside the slice, n = valid rows in the slice). Chosen on
# valid only; test was not looked at. (kind, name, pattern or keywords): keyword = case-insensitive substring,
# regex = re.search semantics in RE2 syntax (DuckDB applies it).
SLICES = {
    "trec": [
        ("keyword", "asks_name", ["name"]),     # valid n=34: 0.353 inside vs 0.798 outside
        ("regex", "has_number", r"\d"),         # valid n=52: 0.712 vs 0.775
        ("regex", "starts_what", r"^[Ww]hat"),  # valid n=279: 0.663 vs 0.900
        ("regex", "quoted", r'"|``'),           # valid n=28: 0.500 vs 0.784
    ],
    "youtube": [
        ("regex", "has_number", r"\d"),               # valid n=41: 0.854 vs 0.975
        ("regex", "shouting", r"\b[A-Z]{3,}\b"),      # valid n=27: 0.889 vs 0.946
        ("regex", "long", r"(?s)^.{150,}"),           # valid n=22: 0.909 vs 0.939
    ],
}
PROVENANCE = ("chosen on VALID with a weak-only mother model (CLI defaults): slices of the text where its valid "
              "accuracy inside was below outside; figures in the comments of bench/slices.py")
LIFT, OVERALL_TOL = 0.02, 0.005
SNORKEL_RECIPE = {"hidden": 128, "lr": 1e-3, "epochs": 30, "batch_size": 64}


def cli(ws: Path, *args: str) -> dict:
    """One CLI command with --json; its parsed output."""
    cmd = [str(Path(sys.executable).with_name("mothermodel")), "-w", str(ws), *args, "--json"]
    print("$ mothermodel -w", ws, " ".join(args), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def declared(name: str):
    from mothermodel import KeywordLF, RegexLF

    return [KeywordLF(n, p, label=0) if kind == "keyword" else RegexLF(n, p, label=0)
            for kind, n, p in SLICES[name]]


def submit(ws: Path, name: str, slice_heads: bool) -> None:
    """The task again: its LF columns, the declared slices, slice heads on or off."""
    from mothermodel import Column, Task
    from mothermodel.api import Registry

    reg = Registry.open(ws)
    t = reg.store.task(name)
    m = sum(1 for s in t.sources if s.kind == "column")
    reg.submit(Task(name=name, dataset=name, classes=list(t.classes), sources=[Column(f"lf_{j}") for j in range(m)],
                    slices=declared(name), slice_heads=slice_heads), replace=True)


def fit_record(fit: dict) -> dict:
    sl = (fit.get("slices") or {}).get("metrics") or {}
    return {"overall": {s: ((fit.get("metrics") or {}).get(s) or {}).get("accuracy") for s in ("valid", "test")},
            "slices": {n: {s: {k: (v.get(s) or {}).get(k) for k in ("n", "accuracy")} for s in ("valid", "test")}
                       for n, v in sl.items()},
            "probs_hash": None}


def train_record(tr: dict, name: str) -> dict:
    m, pre = tr["metrics"], f"{name}/{name}"
    g = tr["guard"][name]
    rec = {"overall": {s: m.get(f"{pre}/{s}/served_accuracy") for s in ("valid", "test")},
           "overall_model": {s: m.get(f"{pre}/{s}/accuracy") for s in ("valid", "test")},
           "guard": {k: g.get(k) for k in ("served_by", "stage", "final_stage", "margin", "reason")},
           "model_version": tr.get("model_version"), "warm_start": tr.get("warm_start"), "steps": tr.get("steps"),
           "stages": tr.get("stages"), "seconds": tr.get("seconds"),
           "slices": {}}
    for _, sl, _ in SLICES[name]:
        rec["slices"][sl] = {s: {"served_accuracy": m.get(f"{pre}/{s}/slice:{sl}/served_accuracy"),
                                 "accuracy": m.get(f"{pre}/{s}/slice:{sl}/accuracy"),
                                 "label_model_accuracy": m.get(f"{pre}/{s}/slice:{sl}/label_model_accuracy"),
                                 "n": m.get(f"{pre}/{s}/slice:{sl}/n")} for s in ("valid", "test")}
    return rec


def probs_hash(ws: Path, name: str) -> str:
    from mothermodel.api import Registry

    return Registry.open(ws).store.snapshot().latest_probs[name].content_hash


def peer_inputs(ws: Path, name: str, out: Path) -> dict:
    """The Snorkel child's input (.npz): embeddings, our labels' argmax, coverage, membership, gold, split."""
    import numpy as np
    import pyarrow.parquet as pq

    from embedding_sources import matrix
    from mothermodel.api import Registry
    from mothermodel.labeling.apply.embedding import Encoder

    reg = Registry.open(ws)
    t = reg.store.task(name)
    ds = reg.store.dataset(t.dataset)
    table = reg.store.read_dataset(ds)
    rows = table.column("_row").to_numpy()
    assert (rows == np.arange(len(rows))).all(), "dataset rows not in _row order"
    texts = table.column(ds.text_field).to_pylist()
    L, _, gold, split = matrix(ws, name)
    probs = pq.read_table(ws / ".mothermodel" / reg.store.snapshot().latest_probs[name].path).to_pydict()
    pred = np.full(len(rows), -1, np.int64)
    pred[np.asarray(probs["row"])] = np.asarray(probs["pred"])
    covered = (L >= 0).any(1)
    names = [sl for _, sl, _ in SLICES[name]]
    log = reg.label_log(name)
    mem = pq.read_table(ws / ".mothermodel" / log["slice_memberships"][0]["path"]).to_pydict()
    S = np.zeros((len(rows), len(names)), np.int64)
    for r, s in zip(mem["row"], mem["slice"]):
        S[r, names.index(s)] = 1
    # the same slicing functions in Python's re, as a check that the membership is what the spec says
    py = np.zeros_like(S)
    for j, (kind, _, p) in enumerate(SLICES[name]):
        for i, x in enumerate(texts):
            hit = any(k.lower() in x.lower() for k in p) if kind == "keyword" else re.search(p, x) is not None
            py[i, j] = int(hit)
    t0 = time.perf_counter()
    cache = out.with_name(f"{name}-minilm.npy")
    if cache.is_file():
        X = np.load(cache)
    else:
        X = Encoder("default").embed(texts, 128)
        np.save(cache, X)
    seconds = round(time.perf_counter() - t0, 1)
    np.savez(out, X=X, y=pred, covered=covered, S=S, gold=gold, split=split.astype(str), k=len(t.classes),
             names=np.asarray(names))
    tr = split == "train"
    return {"train_rows": int(tr.sum()), "train_rows_used": int((tr & covered & (pred >= 0)).sum()),
            "labels": "argmax of label fit's probabilistic labels on the train rows some LF covers",
            "membership_agrees_with_python_re": {n: int((S[:, j] == py[:, j]).sum()) == len(rows)
                                                 for j, n in enumerate(names)},
            "membership_size": {n: int(S[:, j].sum()) for j, n in enumerate(names)},
            "embed_seconds": seconds}


def run_peer(python: str, npz: Path, seed: int) -> dict:
    p = subprocess.run([python, str(HERE), "--child", str(npz), str(seed)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONHASHSEED="0"))
    if p.returncode != 0:
        raise SystemExit(f"snorkel child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_set(name: str, args, snorkel: str | None) -> dict:
    base = args.ws_root / name
    shutil.rmtree(base, ignore_errors=True)
    subprocess.run([str(Path(sys.executable).with_name("mothermodel")), "init", str(base)], check=True,
                   capture_output=True)
    cli(base, "import", "wrench", str(args.data / name), "--task", name)
    submit(base, name, slice_heads=False)
    fit = cli(base, "label", "fit", name)
    out: dict = {"slices": [{"name": n, "kind": k, "pattern": p} for k, n, p in SLICES[name]],
                 "provenance": PROVENANCE, "labels": fit_record(fit), "runs": {}, "seconds": {}}
    out["labels"]["probs_hash"] = probs_hash(base, name)
    for seed in args.seeds:
        for heads in (False, True):
            tag = f"seed{seed}-{'heads' if heads else 'plain'}"
            ws = args.ws_root / f"{name}-{tag}"
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(base, ws)  # untrained, labels fitted once
            rec: dict = {"seed": seed, "slice_heads": heads}
            if heads:
                submit(ws, name, slice_heads=True)
                refit = cli(ws, "label", "fit", name)
                rec["labels_same_as_plain"] = probs_hash(ws, name) == out["labels"]["probs_hash"]
                rec["labels_overall"] = fit_record(refit)["overall"]
            rec["task_slice_heads"] = cli(ws, "task", "show", name).get("slice_heads")
            t0 = time.perf_counter()
            tr = cli(ws, "train", "--device", "cpu", "--seed", str(seed), *args.train_arg)
            out["seconds"][f"train {tag}"] = round(time.perf_counter() - t0, 1)
            (ws / "bench-train.json").write_text(json.dumps(tr))
            rec.update(train_record(tr, name))
            out["runs"][tag] = rec
    if snorkel:
        npz = args.ws_root / f"{name}-snorkel-input.npz"
        out["snorkel_inputs"] = peer_inputs(base, name, npz)
        out["snorkel_runs"] = {}
        for seed in args.seeds:
            t0 = time.perf_counter()
            out["snorkel_runs"][f"seed{seed}"] = run_peer(snorkel, npz, seed)
            out["seconds"][f"snorkel seed {seed}"] = round(time.perf_counter() - t0, 1)
    out["summary"] = summarise(name, out, args.seeds)
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarise(name: str, res: dict, seeds: list[int]) -> dict:
    """Medians over seeds, test (and valid), per slice and overall; the targets."""
    def runs(heads):
        return [res["runs"][f"seed{s}-{'heads' if heads else 'plain'}"] for s in seeds]

    plain, heads = runs(False), runs(True)
    peer = [res["snorkel_runs"][f"seed{s}"] for s in seeds] if res.get("snorkel_runs") else []
    models = [k for k in ("plain", "plain_ovr", "slice_aware") if peer and k in peer[0]]
    summ: dict = {"seeds": seeds, "slices": {}, "targets": {}}
    for split in ("test", "valid"):
        o_p, o_h = med([r["overall"][split] for r in plain]), med([r["overall"][split] for r in heads])
        summ.setdefault("overall", {})[split] = {
            "without": o_p, "with": o_h, "lift_points": None if None in (o_p, o_h) else round(100 * (o_h - o_p), 2),
            "labels": res["labels"]["overall"][split],
            **({f"snorkel_{k}": med([p[k]["overall"][split] for p in peer]) for k in models} if peer else {})}
        for _, sl, _ in SLICES[name]:
            w = med([r["slices"][sl][split]["served_accuracy"] for r in plain])
            h = med([r["slices"][sl][split]["served_accuracy"] for r in heads])
            d = med([(b["slices"][sl][split]["served_accuracy"] or 0) - (a["slices"][sl][split]["served_accuracy"]
                                                                           or 0) for a, b in zip(plain, heads)])
            summ["slices"].setdefault(sl, {})[split] = {
                "n": (plain[0]["slices"][sl][split]["n"] if plain[0]["slices"][sl][split]["n"] is not None
                      else (res["labels"]["slices"].get(sl, {}).get(split) or {}).get("n")),
                "without": w, "with": h,
                "lift_points": None if None in (w, h) else round(100 * (h - w), 2),
                "median_paired_lift_points": round(100 * d, 2),
                "labels": (res["labels"]["slices"].get(sl, {}).get(split) or {}).get("accuracy"),
                **({f"snorkel_{k}": med([p[k]["slices"][sl][split] for p in peer]) for k in models} if peer else {})}
    ref = "snorkel_plain_ovr" if "plain_ovr" in models else "snorkel_plain"
    for v in [summ["overall"], *summ["slices"].values()]:  # Snorkel's own lift: slice-aware over its like plain
        for x in v.values():
            if x.get("snorkel_slice_aware") is not None and x.get(ref) is not None:
                x["snorkel_lift_points"] = round(100 * (x["snorkel_slice_aware"] - x[ref]), 2)
    for sl, v in summ["slices"].items():
        t = v["test"]
        if not t["n"] or t["with"] is None or t["without"] is None:  # no test row in the slice: not measured
            summ["targets"][f"{name}/{sl}: lift >= 2 points"] = None
            continue
        summ["targets"][f"{name}/{sl}: lift >= 2 points"] = t["with"] - t["without"] >= LIFT - 1e-9
    o = summ["overall"]["test"]
    summ["targets"][f"{name}: overall within 0.5 point"] = o["with"] >= o["without"] - OVERALL_TOL - 1e-9
    return summ


# ---------------------------------------------------------------- the Snorkel side (its own interpreter)

def child(npz: str, seed: int) -> None:
    """Snorkel 0.10's SliceAwareClassifier and the same network without slices: numpy, torch, snorkel only."""
    import types

    import numpy as np
    import torch
    import torch.nn as nn

    # snorkel.classification imports torch.utils.tensorboard (for its TensorBoardWriter) at import time, which
    # needs the tensorboard package; the Snorkel venv lacks it and nothing here logs to TensorBoard (logging off)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torch.utils.tensorboard")
        stub.SummaryWriter = object
        sys.modules["torch.utils.tensorboard"] = stub
    from snorkel.classification import DictDataLoader, DictDataset, MultitaskClassifier, Operation, Task, Trainer
    from snorkel.slicing import SliceAwareClassifier

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    d = np.load(npz)
    X, y, covered, S, gold, split, k = (d["X"].astype(np.float32), d["y"], d["covered"], d["S"], d["gold"],
                                        d["split"], int(d["k"]))
    names = [str(n) for n in d["names"]]
    R = SNORKEL_RECIPE
    tr = (split == "train") & covered & (y >= 0)
    key, task = "emb", "task"

    def mlp():
        return nn.Sequential(nn.Linear(X.shape[1], R["hidden"]), nn.ReLU())

    def dataset(sel, labels, split_name):
        return DictDataset(name="ds", split=split_name, X_dict={key: torch.from_numpy(X[sel])},
                           Y_dict={task: torch.from_numpy(labels[sel].astype(np.int64))})

    def srec(sel):
        return np.rec.fromarrays([S[sel, j] for j in range(len(names))], names=names)

    def fit(model, loader):
        torch.manual_seed(seed)
        np.random.seed(seed)
        Trainer(n_epochs=R["epochs"], lr=R["lr"], optimizer="adam", seed=seed, progress_bar=False,
                ).fit(model, [loader])

    def probs(model, sel):
        dl = DictDataLoader(dataset(sel, np.maximum(gold, 0), "eval"), batch_size=256, shuffle=False)
        return np.asarray(model.predict(dl)["probs"][task])  # the base task's head (slice-aware: the combined one)

    def plain(cardinality, labels):
        torch.manual_seed(seed)
        t = Task(name=task, module_pool=nn.ModuleDict({"base": mlp(), "head": nn.Linear(R["hidden"], cardinality)}),
                 op_sequence=[Operation(name="input_op", module_name="base", inputs=[("_input_", key)]),
                              Operation(name="head_op", module_name="head", inputs=["input_op"])])
        model = MultitaskClassifier([t], device=-1)
        torch.manual_seed(seed)
        fit(model, DictDataLoader(dataset(tr, labels, "train"), batch_size=R["batch_size"], shuffle=True))
        return model

    def sliceaware(labels):
        torch.manual_seed(seed)
        model = SliceAwareClassifier(base_architecture=mlp(), head_dim=R["hidden"], slice_names=names,
                                     input_data_key=key, task_name=task, device=-1)
        torch.manual_seed(seed)
        loader = model.make_slice_dataloader(dataset(tr, labels, "train"), srec(tr), batch_size=R["batch_size"],
                                             shuffle=True)
        fit(model, loader)
        return model

    evals = {s: split == s for s in ("valid", "test")}

    def figures(pred_of):
        out = {"overall": {}, "slices": {n: {} for n in names}}
        for s, sel in evals.items():
            p, g = pred_of(sel), gold[sel]
            out["overall"][s] = round(float((p == g).mean()), 4)
            for j, n in enumerate(names):
                m = S[sel, j] == 1
                out["slices"][n][s] = round(float((p[m] == g[m]).mean()), 4) if m.any() else None
        return out

    def timed(make, pred_of):
        t0 = time.perf_counter()
        models = make()
        out = figures(lambda sel: pred_of(models, sel))
        out["seconds"] = round(time.perf_counter() - t0, 1)
        return out

    def ovr(models, sel):  # one-vs-rest: argmax over the classes' binary models of P(class)
        return np.stack([probs(m, sel)[:, 1] for m in models], 1).argmax(1)

    res = {"train_rows": int(tr.sum()), "k": k}
    res["plain"] = timed(lambda: plain(k, y), lambda m, sel: probs(m, sel).argmax(1))
    if k == 2:
        res["slice_aware"] = timed(lambda: sliceaware(y), lambda m, sel: probs(m, sel).argmax(1))
    else:  # SliceCombinerModule is binary only: one binary model per class
        res["plain_ovr"] = timed(lambda: [plain(2, (y == c).astype(np.int64)) for c in range(k)], ovr)
        res["slice_aware"] = timed(lambda: [sliceaware((y == c).astype(np.int64)) for c in range(k)], ovr)
    print(json.dumps(res))


# ---------------------------------------------------------------- report

def table(res: dict) -> None:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{'set/slice':22} {'n':>4} {'labels':>7} {'without':>8} {'with':>7} {'lift':>6} {'S plain':>8} "
          f"{'S ovr':>7} {'S slice':>8}   (test, median over seeds; S = Snorkel)")
    for name, r in res["sets"].items():
        s = r["summary"]
        rows = [(f"{name}/{sl}", v["test"]) for sl, v in s["slices"].items()] + [(f"{name} overall",
                                                                                  s["overall"]["test"])]
        for label, t in rows:
            lift = "-" if t.get("lift_points") is None else f"{t['lift_points']:+.1f}"
            print(f"{label:22} {int(t['n']) if t.get('n') is not None else '':>4} {f(t.get('labels')):>7} "
                  f"{f(t['without']):>8} {f(t['with']):>7} {lift:>6} {f(t.get('snorkel_plain')):>8} "
                  f"{f(t.get('snorkel_plain_ovr')):>7} {f(t.get('snorkel_slice_aware')):>8}")
    for name, r in res["sets"].items():
        for k, ok in r["summary"]["targets"].items():
            print({True: "met     ", False: "MISSED  ", None: "n/a     "}[ok] + k
                  + (" (no test row in the slice)" if ok is None else ""))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["youtube", "trec"], choices=sorted(SLICES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[123, 1, 2], help="training seeds (median)")
    ap.add_argument("--quick", action="store_true", help="seed 123 only")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--ws-root", type=Path, default=Path("/tmp/mm-bench-slices"))
    ap.add_argument("--skip-snorkel", action="store_true")
    ap.add_argument("--snorkel-python", default=DEFAULT_SNORKEL)
    ap.add_argument("--train-arg", action="append", default=[], help="extra argument for `train` (repeatable)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "slices.json")
    args = ap.parse_args()
    if args.quick:
        args.seeds = [123]
    missing = [n for n in args.sets if not (args.data / n).is_dir()]
    if missing:
        print(f"skipped: {args.data} has no {', '.join(missing)}")
        return
    snorkel = snorkel_interpreter(args.snorkel_python, args.skip_snorkel)
    if snorkel is None and not args.skip_snorkel:
        print(f"skipped: no Snorkel interpreter at {args.snorkel_python} (--skip-snorkel runs ours alone)")
        return
    args.ws_root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    res = {"command": "python bench/slices.py " + " ".join(sys.argv[1:]), "seeds": args.seeds,
           "train_args": args.train_arg, "snorkel": None if snorkel is None else
           {"python": snorkel, "recipe": SNORKEL_RECIPE, "features": "bundled all-MiniLM-L6-v2, mean-pooled, "
            "normalised, 128 tokens, frozen"},
           "targets_rule": {"slice": "median test accuracy with slice heads >= without + 2 points",
                            "overall": "median overall test accuracy with slice heads >= without - 0.5 point"},
           "sets": {}}
    t0 = time.perf_counter()
    for n in args.sets:
        res["sets"][n] = run_set(n, args, snorkel)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(args.out)
    table(res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
