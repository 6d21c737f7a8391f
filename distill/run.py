"""Distillation over the registry: `distill TASK`, `distill --all` (`export TASK`: bundle.py, without torch).

One distillation, in the order that keeps a kill -9 harmless:

1. under a per-task lock, remove what a killed run left (``.tmp-*`` and
   unrecorded bundle folders, registered MLflow versions the registry never
   recorded, runs left RUNNING);
2. the latest mother model predicts the task's whole dataset (the teacher's
   soft labels; gold labels only score);
3. the student learns them (kd.py), is exported to ONNX and checked against
   PyTorch with onnxruntime; the bundle is written to a temporary folder and
   renamed (bundle.py);
4. only then is it logged to MLflow and registered as a new version of the
   model named after the task (pyfunc.py);
5. last, the registry records the deployable (one transaction).

Files: ``.mothermodel/deployables/<task>/m<model>-<student>-<id>/`` (bundles).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from tokenizers import Tokenizer

from mothermodel.atomic import sha256_file
from mothermodel.distill import bundle, kd, onnx_export
from mothermodel.distill.bundle import export  # `export TASK` lives in bundle.py (no torch); kept importable here
from mothermodel.distill.config import DistillConfig, DistillOptions  # DistillOptions: kept importable here
from mothermodel.distill.pyfunc import end_stale_runs, lineage_tags, register, remove_orphans
from mothermodel.distill.run_bundle import Bundle
from mothermodel.distill.students import build_student, char_tokenizer, param_count
from mothermodel.errors import CommandFailed, UserError
from mothermodel.labeling import slices
from mothermodel.labeling.model.votes import one_hot_where
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.db import fault_point
from mothermodel.registry.metric_key import MetricKey, flatten, per_split
from mothermodel.trainer import checkpoint as ckpt
from mothermodel.trainer.data import pad_ids, tokenize
from mothermodel.trainer.loop import StepBar
from mothermodel.trainer.predict import predict_tokens
from mothermodel.trainer.run import served_checkpoint
from mothermodel.trainer.tracking import Tracker

__all__ = ["DistillOptions", "distill", "distill_all", "export", "deployable_dir"]


def deployable_dir(store: AbstractStore, task: str) -> Path:
    return store.ws.home / "deployables" / task


@contextlib.contextmanager
def _task_lock(folder: Path, task: str) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"TASK: another `mothermodel distill {task}` is running in this workspace") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tracking_uri(store: AbstractStore, options: DistillOptions) -> str:
    return options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or store.ws.mlflow_tracking_uri


def _check_model(store: AbstractStore, task: str):
    """The latest model, which must be fresh for `task` (else exit 2 naming the fix)."""
    model = store.model()
    if model is None:
        raise UserError("TASK: no mother model yet; run `mothermodel train` first")
    state = store.staleness([task])[task]["model"]  # this task's rows only, not every task's status
    if state.stale:
        raise UserError(f"TASK: cannot distill {task}: the mother model is stale for it ({state.reason}); "
                        "run `mothermodel train --if-changed` (or `mothermodel watch --once`) first")
    # Before any MLflow run or bundle folder exists: a corrupted teacher changes nothing.
    ckpt.verify_recorded(store.ws.home / model.path, model.content_hash)
    return model


def _cleanup(store: AbstractStore, task: str, client: Any, experiment_id: str, run_id: str) -> list[str]:
    """Remove a killed distillation's leftovers: unrecorded bundle folders and registered versions, RUNNING runs."""
    recorded = store.deployables(task)
    folder = deployable_dir(store, task)
    removed = bundle.remove_leftovers(folder, {Path(d.path).name for d in recorded})
    workspace = str(store.ws.root)
    gone = remove_orphans(client, task, workspace, {d.mlflow_model_version for d in recorded if d.mlflow_model_version})
    end_stale_runs(client, experiment_id, task, workspace, keep=run_id)
    return removed + [f"registered version {v}" for v in gone]


def _task_metrics(task: str, dataset: str, student: dict, teacher: dict) -> dict[MetricKey | str, float]:
    """The student's figures per split (`accuracy`, `macro_f1`, `agreement` with its teacher) and its teacher's
    (`teacher_*`), by `MetricKey`."""
    out: dict[MetricKey | str, float] = {}
    out.update(per_split(task, dataset, student, ("accuracy", "macro_f1", "agreement")))
    out.update(per_split(task, dataset, teacher, ("accuracy", "macro_f1"), prefix="teacher_"))
    out.update(per_split(task, dataset, {s: m for s, m in student.items() if "/slice:" in s}, ("n",)))
    return out


def distill(store: AbstractStore, task: str, config: DistillConfig, options: DistillOptions | None = None,
            echo: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Distil the latest mother model's `task` head into a student; write, register and record its bundle."""
    options = options or DistillOptions()
    t = store.task(task)
    model_rec = _check_model(store, task)
    folder = deployable_dir(store, task)
    with _task_lock(folder, task):
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        uri = _tracking_uri(store, options)
        ws = store.ws
        with Tracker(uri, artifact_location=ws.mlflow_artifact_uri,
                     run_name=f"distill {task}: {config.student} student of model v{model_rec.version}",
                     tags={"mothermodel.kind": "distill", "mothermodel.task": task,
                           "mothermodel.workspace": str(ws.root)}) as tracker:
            removed = _cleanup(store, task, tracker.client, tracker.experiment_id, tracker.run_id)
            if removed:
                echo(f"removed an interrupted distillation's leftovers: {', '.join(removed)}")
            res = _distill(store, t, model_rec, config, options, tracker, folder, echo)
    return res


def _distill(store: AbstractStore, t, model_rec, config: DistillConfig, options: DistillOptions, tracker,
             folder: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    task, ws = t.name, store.ws
    mt = model_rec.tasks[task]
    pl_rec = store.prob_labels(task, mt.prob_label_version)
    pl = store.read_prob_labels(pl_rec, with_text=True)
    served, digest = served_checkpoint(store, model_rec, task)
    if served != ws.home / model_rec.path:  # an earlier stage serves the task: check it as _check_model did
        ckpt.verify_recorded(served, digest)
    teacher, tokenizer, teacher_manifest = ckpt.load_model(served, verify_all=False)  # verified above
    max_length = config.max_length or (teacher_manifest.get("config") or {}).get("max_length", 128)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    texts = [x or "" for x in pl.texts]
    tokens = tokenize(tokenizer, texts, max_length)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    k = len(t.classes)
    source = _teacher_source(mt, model_rec)
    if mt.served_by == "labels":
        # The guard chose the labels for this task: the student learns their posteriors on every row.
        echo(f"distill {task}: the labels v{pl_rec.version} teach (the guard: {mt.guard.get('reason', '')})")
        teacher_probs = _label_posteriors(pl.probs)
    else:
        echo(f"distill {task}: teacher {source['name']} predicts {len(tokens)} rows")
        teacher_probs = predict_tokens(teacher, tokens, tasks=[task], pad_id=pad_id,
                                       batch_size=config.teacher_batch_size)[task]
    teacher_probs = one_hot_where(teacher_probs, pl.hand)  # where a person labelled a row, the student learns that
    enc = teacher.encoder
    teacher_params = param_count(enc) + param_count(teacher.heads[task])
    lineage = {"model_version": model_rec.version, "fingerprint": t.fingerprint,
               "label_versions": {task: {"prob_labels": pl_rec.version, "label_matrix": pl_rec.label_matrix_version}},
               "teacher": source}
    tracker.log_params({"task": task, "student": config.student, "teacher_model_version": model_rec.version,
                        "teacher": source["name"],
                        "task_fingerprint": t.fingerprint[:16], "label_versions": lineage["label_versions"],
                        "config": config.to_dict(), "max_length": max_length, "rows": len(tokens)})
    teacher_scores = kd.score(teacher_probs, pl.gold, pl.split, k)
    fit = (mt.guard or {}).get("encoder_fit") or {}

    def one(cfg: DistillConfig, tok, toks, length: int) -> dict[str, Any]:
        """Train one student of `cfg.student` on `toks` (tokenised by `tok`) and score it."""
        student = build_student(cfg, k, teacher_encoder=enc, token_ids=toks.ids,
                                special_ids=tok.all_special_ids, unk_id=tok.unk_token_id or 0,
                                max_positions=max(length, 8))
        n_params = param_count(student)
        echo(f"distill {task}: {cfg.student} student, {n_params:,} parameters "
             f"({100 * n_params / teacher_params:.1f}% of the teacher's {teacher_params:,})")
        res = _kd(student, toks, teacher_probs, cfg, tok.pad_token_id or 0, options, tracker, task, echo)
        probs = kd.student_proba(student, toks, pad_id=tok.pad_token_id or 0)
        return {"config": cfg, "student": student, "tokenizer": tok, "tokens": toks, "max_length": length,
                "pad_id": tok.pad_token_id or 0, "res": res, "params": n_params, "probs": probs,
                "scores": kd.score(probs, pl.gold, pl.split, k, reference=teacher_probs)}

    tried = [one(config, tokenizer, tokens, max_length)]
    why = _fallback_reason(config, tried[0]["scores"], teacher_scores, fit)
    if why:
        echo(f"distill {task}: also trying the character n-gram student ({why})")
        ctok = char_tokenizer(texts, config.max_chars)
        chars = config.replace(student="chars")
        tried.append(one(chars, ctok, tokenize(ctok, texts, config.max_chars), config.max_chars))
    best, choice = _keep_best(tried, why)
    student, tokenizer, tokens, max_length, pad_id = (best[k_] for k_ in
                                                      ("student", "tokenizer", "tokens", "max_length", "pad_id"))
    config, res, n_params = best["config"], best["res"], best["params"]
    scores = {"student": best["scores"], "teacher": teacher_scores}
    member = slices.read(store, t, store.dataset(t.dataset))
    if member is not None:  # per declared slice: the student's figures beside its teacher's
        for who, pred in (("student", best["probs"].argmax(axis=1)), ("teacher", teacher_probs.argmax(axis=1))):
            scores[who] = {**scores[who], **slices.split_figures(member.by_name(), pl.gold, pred, pl.split)}
    metrics = _task_metrics(task, t.dataset, scores["student"], scores["teacher"])

    def build(tmp: Path) -> dict[str, Any]:
        files = _write_files(tmp, student, tokenizer, tokens, t.classes, max_length, pad_id, config, echo)
        fault_point("distill_bundle")  # kill tests: files written into the .tmp- folder, not yet renamed
        return files | {
            "task": task, "classes": list(t.classes), "student": config.student, **lineage,
            "input": pl.input.to_dict() if pl.input is not None else None, "student_choice": choice,
            "student_shape": student.shape, "max_length": max_length, "pad_id": pad_id,
            "param_count": n_params, "teacher_param_count": teacher_params, "metrics": scores,
            "inputs": {"input_ids": "int64 [batch, length]", "attention_mask": "int64 [batch, length]"},
            "outputs": {"logits": f"float32 [batch, {k}]"}}

    final = folder / f"m{model_rec.version}-{config.student}-{uuid.uuid4().hex[:8]}"
    manifest = bundle.write(final, build)
    content_hash = sha256_file(final / "manifest.json")
    latency = _latency_ms(final, pl.texts, config.latency_rows)
    size = bundle.size_bytes(manifest)
    metrics.update({"param_count": n_params, "teacher_param_count": teacher_params, "bundle_bytes": size,
                    "latency_ms_batch1": latency, "onnx_max_abs_diff": manifest["onnx_check"]["max_abs_diff"],
                    "kd_seconds": res.seconds})
    tracker.log_metrics(metrics)
    tracker.log_dict(manifest, "bundle_manifest.json")
    tags = lineage_tags({**manifest, "sha256": content_hash}, str(ws.root))
    run = tracker.client.get_run(tracker.run_id)
    version = register(tracker.client, tracker.run_id, run.info.artifact_uri, final, task, tags)
    fault_point("distill_registered")  # kill tests: registered in MLflow, not yet recorded
    rec = store.record_deployable(task=t, model_version=model_rec.version, student=config.student,
                                  path=str(final.relative_to(ws.home)), content_hash=content_hash,
                                  mlflow_model_version=version, metrics=flatten(metrics))
    tracker.set_tags({"mothermodel.deployable_version": str(rec.version), "mothermodel.registered_version": version,
                      "mlflow.runName": f"distill {task} v{rec.version}: {config.student} student of model "
                                        f"v{model_rec.version}", **tags})
    echo(f"deployable {task} v{rec.version}: {config.student} student taught by {source['name']}, registered as "
         f"MLflow model {task} version {version}; {_summary(scores)}")
    return {"task": task, "deployable_version": rec.version, "model_version": model_rec.version,
            "student": config.student, "path": rec.path, "registered_model": {"name": task, "version": version},
            "mlflow_run_id": tracker.run_id, "mlflow_tracking_uri": tracker.tracking_uri, "metrics": flatten(metrics),
            "param_count": n_params, "teacher_param_count": teacher_params, "bundle_bytes": size,
            "latency_ms_batch1": latency, "onnx_max_abs_diff": manifest["onnx_check"]["max_abs_diff"],
            "kd_steps": res.steps, "kd_seconds": round(res.seconds, 2), "teacher": source,
            "student_choice": choice}


def _teacher_source(mt, model_rec) -> dict[str, Any]:
    """What teaches the student, as the manifest and MLflow record it: the guard's choice for the task."""
    g = mt.guard or {}
    if mt.served_by == "labels":
        return {"kind": "labels", "name": f"labels v{mt.prob_label_version}", "prob_labels": mt.prob_label_version,
                "reason": g.get("reason")}
    stage = g.get("stage")
    name = f"model v{model_rec.version}" + (f" stage {stage}" if stage is not None and stage != g.get("final_stage")
                                            else "")
    return {"kind": "model", "name": name, "model_version": model_rec.version, "stage": stage,
            "reason": g.get("reason")}


def _label_posteriors(probs):
    """The labels' posteriors as a teacher's: rows without a usable posterior become uniform."""
    p = np.array(probs, dtype=np.float64, copy=True)
    bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (p.sum(axis=1) <= 0)
    p[bad] = 1.0
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _fallback_reason(config: DistillConfig, student: dict, teacher: dict, fit: dict) -> Optional[str]:
    """Why the character n-gram student is tried too (None: it is not)."""
    if not config.fallback or config.student == "chars":
        return None
    if fit.get("poor"):
        return f"the encoder fits this text badly: whole-word share {fit['whole_word_share']:.2f}"
    s, te = (student.get("valid") or {}).get("accuracy"), (teacher.get("valid") or {}).get("accuracy")
    if s is not None and te is not None and s < te - config.fallback_margin:
        return f"the {config.student} student is {100 * (te - s):.1f} points below its teacher on valid"
    return None


def _keep_best(tried: list[dict], why: Optional[str]) -> tuple[dict, dict[str, Any]]:
    """The student to ship: the most accurate on valid (the configured one on ties or without gold)."""
    acc = {c["config"].student: (c["scores"].get("valid") or {}).get("accuracy") for c in tried}
    best = tried[0]
    if len(tried) > 1 and all(a is not None for a in acc.values()):
        best = max(tried, key=lambda c: (acc[c["config"].student], c is tried[0]))
    return best, {"chosen": best["config"].student, "valid_accuracy": acc, "tried_because": why,
                  "rule": "highest valid accuracy; the configured student on ties or without gold labels"}


def _kd(student, tokens, teacher_probs, config: DistillConfig, pad_id: int, options: DistillOptions, tracker,
        task: str, echo: Callable[[str], None]):
    """Knowledge distillation with a progress bar (terminal) or lines, and the loss logged to MLflow."""
    every = max(1, int(np.ceil(len(tokens) * config.epochs / config.batch_size)) // 10)
    use_bar = options.progress and sys.stderr.isatty()
    bar = None

    def on_step(step: int, total: int, loss: float) -> None:
        nonlocal bar
        if step % 10 == 0:
            tracker.log_step(step, {f"kd_loss/{config.student}": loss})
        if use_bar:
            bar = bar or StepBar(f"{task}: {config.student} student", total)  # the total is known from step 1
            bar.update(step, f"KD loss {loss:.4f}")
        elif options.progress and (step % every == 0 or step == total):
            echo(f"  {config.student} student: step {step}/{total}, KD loss {loss:.4f}")

    try:
        return kd.train_student(student, tokens, teacher_probs, config, pad_id=pad_id, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()


def _summary(scores: dict[str, dict[str, dict]]) -> str:
    parts = [f"{s} accuracy {scores['student'][s]['accuracy']:.3f} (teacher {scores['teacher'][s]['accuracy']:.3f})"
             for s in scores["student"] if s != "train" and "/slice:" not in s]
    return "; ".join(parts) or "no gold labels to score"


def _write_files(tmp: Path, student, tokenizer, tokens, classes, max_length: int, pad_id: int,
                 config: DistillConfig, echo: Callable[[str], None]) -> dict[str, Any]:
    """model.onnx (checked against PyTorch), tokenizer.json, labels.json; returns the check's manifest entry."""
    rng = np.random.default_rng(config.seed)
    rows = rng.choice(len(tokens), size=min(config.check_rows, len(tokens)), replace=False)
    zeros = np.zeros(len(tokens), np.int64)
    batches = [tuple(x.numpy() for x in pad_ids([tokens], zeros[rows[s:s + 16]], rows[s:s + 16], pad_id))
               for s in range(0, len(rows), 16)]
    batches.append(tuple(x.numpy() for x in pad_ids([tokens], zeros[rows[:1]], rows[:1], pad_id)))  # batch 1
    onnx_export.export(student, tmp / "model.onnx", tuple(torch.from_numpy(x) for x in batches[0]))
    diff = onnx_export.max_abs_diff(tmp / "model.onnx", student, batches)
    if not diff <= config.check_tolerance:
        raise CommandFailed(f"ONNX export check failed: onnxruntime's logits differ from PyTorch's by {diff:.2e} "
                            f"(> {config.check_tolerance:g}); nothing was written")
    echo(f"  ONNX check: max |onnxruntime - PyTorch| = {diff:.1e} on {len(rows)} rows")
    tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    tok.enable_truncation(max_length)  # the runner truncates as training did
    tok.no_padding()
    tok.save(str(tmp / "tokenizer.json"))
    (tmp / "labels.json").write_text(json.dumps({str(i): c for i, c in enumerate(classes)}, indent=2))
    return {"onnx_check": {"max_abs_diff": diff, "rows": int(len(rows)), "tolerance": config.check_tolerance,
                           "passed": True}}


def _latency_ms(folder: Path, texts, n: int) -> float:
    """Median milliseconds of one text through the bundle (tokenisation included), onnxruntime on CPU."""
    b = Bundle(folder)
    sample = [x or "" for x in texts[:n]] or [""]
    b.predict(sample[:1])  # warm-up
    times = []
    for x in sample:
        t0 = time.perf_counter()
        b.predict([x])
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 4)


def distill_all(store: AbstractStore, config: DistillConfig, options: DistillOptions | None = None,
                echo: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Distil every task whose deployable is stale (and whose model is fresh); list the others with why."""
    done, skipped, fresh = [], [], []
    for name, st in store.staleness().items():
        if not st["deployable"].stale:
            fresh.append(name)
        elif st["model"].stale:
            skipped.append({"task": name, "reason": f"model stale: {st['model'].reason}"})
        else:
            done.append(distill(store, name, config, options, echo))
    return {"distilled": done, "skipped": skipped, "up_to_date": fresh}

