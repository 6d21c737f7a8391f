"""Benchmark: mother-model quality on WRENCH youtube + trec from `label fit`'s probabilistic labels.

    python bench/train_quality.py [--ws DIR] [--data ../shared/data] [--set key=value ...]
                                  [--tasks spam,trec] [--out bench/results/train_quality.json]

(--ws defaults to /tmp/mm-train-quality; an existing fitted workspace is reused.)

1. A workspace (``--ws``, created when it has no fits yet) gets the CLI's own
   steps: ``mothermodel init``, ``import wrench .../youtube --task spam``,
   ``import wrench .../trec --task trec``, ``label fit spam --json``,
   ``label fit trec --json``. The label fit's figures are recomputed from its
   Parquet ``pred`` column (the same numbers ``label fit --json`` prints).
2. The newest probabilistic labels (``.mothermodel/labels/<task>/pl-*.parquet``:
   row, pred, p_0..p_{k-1}) and label matrix (``lm-*``: which rows a source
   covered) are read with the dataset's Parquet (``.mothermodel/data/``).
3. Both tasks train jointly in one mother model (default encoder, CPU unless
   ``--set device=...``); train rows' gold labels are never read (TaskData.gold
   is filled for valid and test rows only). Settings are TrainConfig fields,
   overridden with ``--set``; choose them on valid, report test.

Prints and writes JSON: wall times (training alone and end to end after the
label fits; the total includes the per-stage evaluations), per task valid/test accuracy and
macro-F1 next to the label fit's, and each stage's accuracy (first stage, self-training rounds).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see trainer/__init__.py)
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
WRENCH = {"spam": "youtube", "trec": "trec"}


def cli(*args: str, ws: Path) -> str:
    exe = Path(sys.executable).parent / "mothermodel"
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "mothermodel.cli"]) + ["-w", str(ws), *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-1000:]}")
    return p.stdout


def prepare(ws: Path, data: Path, tasks: list[str]) -> None:
    """A workspace where each task is imported and label-fitted (skipped for tasks already fitted)."""
    if not (ws / ".mothermodel").is_dir():
        exe = Path(sys.executable).parent / "mothermodel"
        subprocess.run([str(exe), "init", str(ws)], check=True, capture_output=True)
    for t in tasks:
        if list((ws / ".mothermodel" / "labels" / t).glob("pl-*.parquet")):
            continue
        cli("import", "wrench", str(data / WRENCH[t]), "--task", t, ws=ws)
        res = json.loads(cli("label", "fit", t, "--json", ws=ws))
        print(f"label fit {t}: test accuracy {res['metrics']['test']['accuracy']:.4f}", file=sys.stderr)


def newest(folder: Path, pattern: str) -> Path:
    files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"no {pattern} under {folder}")
    return files[-1]


def task_data(ws: Path, task: str, data: Path):
    """(TaskData, label fit's valid/test metrics recomputed from its `pred` column, as `label fit` reports them)."""
    import numpy as np
    import pyarrow.parquet as pq

    from mothermodel.trainer.data import TaskData

    mm = ws / ".mothermodel"
    ds = pq.read_table(newest(mm / "data", f"{task}-*.parquet")).to_pydict()
    n = len(ds["_row"])
    pl = pq.read_table(newest(mm / "labels" / task, "pl-*.parquet"))
    k = sum(1 for c in pl.column_names if c.startswith("p_"))
    probs = np.zeros((n, k), np.float32)
    rows = np.asarray(pl.column("row"))
    probs[rows] = np.stack([np.asarray(pl.column(f"p_{c}")) for c in range(k)], axis=1)
    covered = np.zeros(n, bool)
    covered[np.asarray(pq.read_table(newest(mm / "labels" / task, "lm-*.parquet"), columns=["row"]).column("row"))] = True
    split = np.asarray(ds["split"], dtype=object)
    gold = np.asarray(ds["label"], np.int64)
    gold = np.where(split == "train", -1, gold)  # train gold is never read, not even for evaluation
    classes = json.loads((data / WRENCH[task] / "label.json").read_text())
    classes = [classes[str(i)] for i in range(k)]
    from mothermodel.labeling.metrics import metrics

    pred = np.full(n, -1, np.int64)
    pred[rows] = np.asarray(pl.column("pred"))
    fit = {s: metrics(gold[(split == s)], pred[(split == s)], k) for s in ("valid", "test")}
    return TaskData(name=task, classes=classes, texts=ds["text"], split=split, probs=probs, covered=covered,
                    gold=gold, dataset=task), fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ws", type=Path, default=Path("/tmp/mm-train-quality"))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--tasks", default="spam,trec")
    ap.add_argument("--set", action="append", default=[], help="TrainConfig field=value (JSON values)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_quality.json")
    args = ap.parse_args()
    tasks = args.tasks.split(",")

    prepare(args.ws.resolve(), args.data, tasks)
    t0 = time.perf_counter()

    from mothermodel.trainer.config import TrainConfig
    from mothermodel.trainer.evaluate import evaluate
    from mothermodel.trainer.selftrain import fit
    from mothermodel.trainer.model import build_model, head_specs

    from mothermodel.trainer.config import parse_settings

    overrides = {"device": "cpu", **parse_settings(args.set)}
    cfg = TrainConfig(**overrides)
    loaded = [task_data(args.ws.resolve(), t, args.data) for t in tasks]
    data, fits = [d for d, _ in loaded], {d.name: f for d, f in loaded}
    model, tok = build_model(head_specs(data), cfg)
    t1 = time.perf_counter()
    stages: list[dict] = []
    eval_s = [0.0]

    def stage_end(stage, r):
        # every stage's figures (valid decides whether a stage is worth its time)
        te = time.perf_counter()
        sm = evaluate(model, tok, data, tokens=r.tokens, max_length=cfg.max_length,
                      batch_size=cfg.eval_batch_size, splits=["valid", "test"])
        eval_s[0] += time.perf_counter() - te
        stages.append({"stage": stage, "steps": r.steps, "seconds": round(r.seconds, 1),
                       "accuracy": {t: {s: round(sm[t][s]["accuracy"], 4) for s in sm[t]} for t in sm}})
        print(f"stage {stage}: {stages[-1]}", file=sys.stderr, flush=True)
        last["m"] = sm

    last: dict = {}
    results = fit(model, tok, data, cfg, progress=True, on_stage_end=stage_end)
    t2 = time.perf_counter()
    m = last["m"]
    t3 = t2
    steps = sum(r.steps for r in results)
    train_s = sum(r.seconds for r in results)
    examples = sum(r.examples for r in results)
    out = {
        "command": "python bench/train_quality.py " + " ".join(f"--set {s}" for s in args.set),
        "config": cfg.to_dict(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch_threads": __import__("torch").get_num_threads()},
        "seconds": {"load": round(t1 - t0, 1), "train_loop": round(train_s, 1),
                    "evaluate": round(eval_s[0], 1), "total_after_label_fit": round(t3 - t0, 1)},
        "steps": steps, "examples_per_s": round(examples / max(train_s, 1e-9), 1), "stages": stages,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tasks": {t.name: {
            "mother_model": {s: {k: round(v, 4) for k, v in m[t.name][s].items()} for s in m[t.name]},
            "label_fit": {s: {k: round(v, 4) for k, v in fits[t.name][s].items()} for s in fits[t.name]},
        } for t in data},
    }
    text = json.dumps(out, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
