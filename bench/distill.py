"""Benchmark: distilled students against their teacher on WRENCH youtube (task spam) and trec, test splits.

    python bench/distill.py --ws WS [--data ../shared/data] [--tasks spam,trec] [--students tiny,ngram]
                            [--rows 1024] [--out bench/results/distill.json]

WS is a workspace with both tasks imported, labels fit and the mother model
trained (docs/benchmarks.md, "Distillation", has the commands). For each task
and student, one run:

1. ``mothermodel distill TASK --student S --json`` and ``mothermodel export TASK
   --format onnx --out DIR`` (the CLI, as a user runs it);
2. accuracy on the test split: the bundle through ``distill/run_bundle.py``'s
   ``Bundle`` (onnxruntime + tokenizers) against gold labels, beside the
   teacher's (the mother model in PyTorch); parameters of each;
3. batch-1 latency: median over the test texts of one text through the bundle
   (tokenisation included, and the onnxruntime call alone);
4. batch-256 throughput on the test texts tiled to ``--rows`` rows, sorted by
   length and cut into batches of 256 (the same padded batches for every model): the student in onnxruntime, the teacher
   in PyTorch on CPU, and the teacher's task head exported to ONNX (what a
   user would otherwise ship) in onnxruntime.

Threads: every engine's default on this machine (2 cores). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see mothermodel/cli.py)
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from train_quality import cli  # the CLI as a subprocess, exit on failure (bench/ is on sys.path when run)

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
WRENCH = {"spam": "youtube", "trec": "trec"}


def test_split(data: Path, name: str) -> tuple[list[str], np.ndarray]:
    rows = json.loads((data / name / "test.json").read_text())
    return [r["data"]["text"] for r in rows.values()], np.array([r["label"] for r in rows.values()])


def batches_of(ids_list: list[list[int]], pad: int, size: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for s in range(0, len(ids_list), size):
        chunk = ids_list[s:s + size]
        width = max(len(x) for x in chunk)
        ids = np.full((len(chunk), width), pad, np.int64)
        mask = np.zeros((len(chunk), width), np.int64)
        for i, x in enumerate(chunk):
            ids[i, :len(x)], mask[i, :len(x)] = x, 1
        out.append((ids, mask))
    return out


def rows_per_s(run, batches, repeat: int = 2) -> float:
    run(*batches[0])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for b in batches:
            run(*b)
        best = min(best, time.perf_counter() - t0)
    return sum(len(b[0]) for b in batches) / best


def ort_runner(path: Path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda ids, mask: sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def teacher_figures(ws: Path, task: str, texts: list[str], gold: np.ndarray, n_rows: int, tmp: Path) -> dict:
    """The teacher's test accuracy, parameters and batch-256 throughput in PyTorch and exported to ONNX."""
    import torch

    from mothermodel.api import Registry
    from mothermodel.distill.onnx_export import TaskLogits, export, max_abs_diff
    from mothermodel.distill.students import param_count
    from mothermodel.trainer import checkpoint as ckpt
    from mothermodel.trainer.predict import predict_proba

    rec = Registry.open(ws).store.model()
    path = ws / ".mothermodel" / rec.path
    model, tok, manifest = ckpt.load_model(path)  # SDPA attention, as the trainer predicts
    max_length = (manifest.get("config") or {}).get("max_length", 128)
    acc = float((predict_proba(model, tok, texts, tasks=[task], max_length=max_length)[task].argmax(1) == gold).mean())
    ids = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    tiled = sorted((ids * (n_rows // len(ids) + 1))[:n_rows], key=len)  # length-sorted batches: little padding
    batches = batches_of(tiled, tok.pad_token_id or 0)
    head = TaskLogits(model, task).eval()
    with torch.no_grad():
        pt = rows_per_s(lambda i, m: head(torch.from_numpy(i), torch.from_numpy(m)), batches)
    print(f"{task} teacher: PyTorch {pt:.0f} rows/s", flush=True)
    eager = TaskLogits(ckpt.load_model(path, attn_implementation="eager")[0], task).eval()  # exports cleanly
    onnx_path = export(eager, tmp / f"teacher-{task}.onnx", tuple(torch.from_numpy(x) for x in batches[0]))
    diff = max_abs_diff(onnx_path, head, [batches[0], batches[-1]])
    return {"model_version": rec.version, "test_accuracy": acc, "params": param_count(model.encoder) + param_count(model.heads[task]),
            "pytorch_rows_per_s": pt, "onnx_rows_per_s": rows_per_s(ort_runner(onnx_path), batches),
            "onnx_max_abs_diff": diff, "batches": batches, "max_length": max_length}


def student_figures(ws: Path, task: str, student: str, texts, gold, batches, tmp: Path) -> dict:
    sys.path.insert(0, str(REPO / "distill"))
    from run_bundle import Bundle  # the standalone runner, as a user runs it

    t0 = time.perf_counter()
    res = json.loads(cli("distill", task, "--student", student, "--json", ws=ws))
    seconds = time.perf_counter() - t0
    out = tmp / f"{task}-{student}"
    cli("export", task, "--format", "onnx", "--out", str(out), ws=ws)
    b = Bundle(out)
    acc = float((np.array([b.classes.index(c) for c in b.predict(texts)]) == gold).mean())
    b.predict(texts[:1])
    e2e, model_only = [], []
    for t in texts:
        t0 = time.perf_counter()
        b.predict([t])
        e2e.append((time.perf_counter() - t0) * 1000)
        ids, mask = b.encode([t])
        t0 = time.perf_counter()
        b.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
        model_only.append((time.perf_counter() - t0) * 1000)
    return {"test_accuracy": acc, "params": res["param_count"], "bundle_bytes": res["bundle_bytes"],
            "onnx_max_abs_diff": res["onnx_max_abs_diff"], "distill_seconds": round(seconds, 1),
            "kd_seconds": res["kd_seconds"], "deployable_version": res["deployable_version"],
            "registered_version": res["registered_model"]["version"],
            "latency_ms_batch1_median": statistics.median(e2e),
            "latency_ms_batch1_onnxruntime_only": statistics.median(model_only),
            "rows_per_s_batch256": rows_per_s(ort_runner(out / "model.onnx"), batches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ws", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--tasks", default="spam,trec")
    ap.add_argument("--students", default="tiny,ngram")
    ap.add_argument("--rows", type=int, default=1024, help="rows per throughput pass (test texts tiled)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "distill.json")
    args = ap.parse_args()
    ws = args.ws.resolve()
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                 "processor": platform.processor() or platform.machine()},
                     "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "tasks": {}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for task in args.tasks.split(","):
            texts, gold = test_split(args.data, WRENCH[task])
            teacher = teacher_figures(ws, task, texts, gold, args.rows, tmp)
            batches = teacher.pop("batches")
            row = {"test_rows": len(texts), "teacher": teacher, "students": {}}
            for student in args.students.split(","):
                s = student_figures(ws, task, student, texts, gold, batches, tmp)
                s["accuracy_minus_teacher"] = s["test_accuracy"] - teacher["test_accuracy"]
                s["params_share_of_teacher"] = s["params"] / teacher["params"]
                s["speedup_vs_teacher_pytorch"] = s["rows_per_s_batch256"] / teacher["pytorch_rows_per_s"]
                s["speedup_vs_teacher_onnx"] = s["rows_per_s_batch256"] / teacher["onnx_rows_per_s"]
                row["students"][student] = s
                print(f"{task} {student}: acc {s['test_accuracy']:.4f} (teacher {teacher['test_accuracy']:.4f}), "
                      f"params {100 * s['params_share_of_teacher']:.1f}%, batch-1 {s['latency_ms_batch1_median']:.3f} ms, "
                      f"batch-256 x{s['speedup_vs_teacher_pytorch']:.1f} vs PyTorch, "
                      f"x{s['speedup_vs_teacher_onnx']:.1f} vs teacher ONNX", flush=True)
            results["tasks"][task] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
