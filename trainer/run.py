"""The mother model over the registry: `train`, `train --if-changed`, `train --resume`, `predict`.

This is the glue between the registry store and the registry-free trainer core
(config, data, model, loop, checkpoint, tracking): it reads each task's freshest
probabilistic labels through `RegistryStore`, decides what changed since the
latest model (lineage, `registry/lineage.py`), warm-starts from that model,
runs the loop, logs to MLflow and records the new model version with, per task,
the fingerprint and labels version it learned.

Files: `.mothermodel/models/run-<id>/step-*/` (checkpoints; the last one is the
model version's folder) and `.mothermodel/models/in-progress.json` while a run is
under way, so `train --resume` can pick an interrupted run up.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from mothermodel.errors import UserError
from mothermodel.registry import lineage
from mothermodel.registry.files import sha256_file, write_text_atomic
from mothermodel.registry.records import ModelTaskRecord, Snapshot
from mothermodel.registry.store import RegistryStore
from mothermodel.trainer.config import TrainConfig

IN_PROGRESS = "in-progress.json"


@dataclass
class TrainOptions:
    """How `train` decides and reports (the model's hyper-parameters are in `TrainConfig`).

    Attributes:
        tasks: tasks to train (default: every task whose dataset has a text field).
        if_changed: train only when the task set, a fingerprint or a labels version changed since the latest model.
        resume: continue the interrupted run recorded in `models/in-progress.json`.
        tracking_uri: MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the workspace's own store).
        progress: progress bar on a terminal, plain lines otherwise.
        changed_policy: a changed task's head is 'finetune'd (default) or 'reinit'ialised on a warm start.
        fresh: train a fresh model (the encoder's own weights, new heads) even where a warm start from the
            latest model is possible: after a task set changed a lot, or to compare from scratch.
    """

    tasks: Optional[Sequence[str]] = None
    if_changed: bool = False
    resume: bool = False
    tracking_uri: Optional[str] = None
    progress: bool = True
    changed_policy: str = "finetune"
    fresh: bool = False


@dataclass
class Lineage:
    """What one task's head learns from."""

    task: str
    dataset: str
    fingerprint: str
    prob_label_version: int
    label_model: str
    label_metrics: dict[str, Any]


def trainable(snap: Snapshot, names: Optional[Sequence[str]]) -> list[str]:
    """The tasks to train: the named ones (checked), else every task on a dataset with text."""
    if names:
        for n in names:
            if n not in snap.tasks:
                raise UserError(f"TASK: unknown task {n!r}")
            if not snap.datasets[snap.tasks[n].dataset].text_field:
                raise UserError(f"TASK: task {n}'s dataset {snap.tasks[n].dataset} has no text field to train on")
        return list(names)
    return [n for n, t in sorted(snap.tasks.items()) if snap.datasets[t.dataset].text_field]


def lineage_of(store: RegistryStore, snap: Snapshot, names: Sequence[str]) -> dict[str, Lineage]:
    """Each task's freshest probabilistic labels; exit 2 naming the task and the fix when there are none."""
    out = {}
    for n in names:
        rec = store.latest_prob_labels(n, fresh=True)
        if rec is None:
            old = store.latest_prob_labels(n, fresh=False)
            why = (f"its labels are stale (task changed since labels v{old.version} were fit)" if old
                   else "it has no probabilistic labels yet")
            raise UserError(f"TASK: cannot train {n}: {why}; run `mothermodel label fit {n}` "
                            "(or `mothermodel watch --once` for every stale task)")
        t = snap.tasks[n]
        out[n] = Lineage(n, t.dataset, t.fingerprint, rec.version, rec.model, rec.metrics)
    return out


def changes(model, lin: dict[str, Lineage]) -> dict[str, list[str]]:
    """Tasks new to, changed since, unchanged since, and removed from the latest model."""
    out: dict[str, list[str]] = {"new": [], "changed": [], "unchanged": [], "removed": []}
    for n, li in lin.items():
        s = lineage.model_staleness(n, li.fingerprint, li.prob_label_version, model)
        key = "unchanged" if not s.stale else ("new" if model is None or n not in model.tasks else "changed")
        out[key].append(n)
    if model is not None:
        out["removed"] = sorted(set(model.tasks) - set(lin))
    return out


def task_data(store: RegistryStore, snap: Snapshot, lin: dict[str, Lineage]) -> list:
    """The trainer's TaskData per task, read through the store (hash-checked)."""
    from mothermodel.trainer.data import TaskData

    out = []
    for n, li in lin.items():
        t = snap.tasks[n]
        pl = store.read_prob_labels(store.prob_labels(n, li.prob_label_version), with_text=True)
        in_tree = t.parent in lin and t.parent_class and snap.tasks[t.parent].dataset == t.dataset
        out.append(TaskData(
            name=n, classes=list(t.classes), texts=pl.texts, split=pl.split, probs=pl.probs, covered=pl.covered,
            gold=pl.gold, dataset=t.dataset,
            parent=t.parent if in_tree else None,
            parent_class=snap.tasks[t.parent].classes.index(t.parent_class) if in_tree else None,
            applicable=pl.applicable if in_tree else None))
    return out


def _tracking_uri(ws, options: TrainOptions) -> str:
    import os

    return options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ws.mlflow_tracking_uri


def train(store: RegistryStore, config: TrainConfig, options: TrainOptions | None = None,
          echo: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train (or warm-start) the mother model on every task's fresh labels; record a model version.

    Returns ``{"model_version", "trained", "metrics": {"task/dataset/split/metric": x}, ...}``.
    """
    options = options or TrainOptions()
    if options.fresh and options.resume:
        raise UserError("--fresh: cannot be combined with --resume (a resumed run continues its own model)")
    ws = store.ws
    snap = store.snapshot()
    names = trainable(snap, options.tasks)
    if not names:
        raise UserError("TASK: no task to train (register a dataset with a text field and a task on it)")
    lin = lineage_of(store, snap, names)
    latest = store.model()
    ch = changes(latest, lin)
    up_to_date = latest is not None and not (ch["new"] or ch["changed"] or ch["removed"])
    if options.if_changed and not options.resume and up_to_date:
        return {"model_version": latest.version, "trained": False, "status": "up to date", "changes": ch,
                "metrics": latest.metrics}
    # A plain `train` with nothing changed is a request to train again (new settings, say): a full run
    # from a fresh model. A warm start would have nothing to train for and record a copy of the latest.
    same_encoder = latest is not None and _same_encoder(ws, latest, config)
    warm_ok = same_encoder and not up_to_date and not options.fresh
    from mothermodel.trainer import checkpoint as ckpt

    # The model a warm start will load: a corrupted one stops the run before it writes anything
    # (--resume takes its encoder from the interrupted run, so check whenever it resumes; a fresh
    # re-run checks it too, so that a damaged latest model is reported rather than silently superseded).
    if latest is not None and (options.resume or same_encoder):
        ckpt.verify_recorded(ws.home / latest.path, latest.content_hash)
    run_dir, resume, config = _run_dir(ws, lin, config, options)
    from mothermodel.trainer.evaluate import evaluate, metric_keys
    from mothermodel.trainer.model import build_model, head_specs, warm_start
    from mothermodel.trainer.selftrain import fit
    from mothermodel.trainer.tracking import Tracker

    tasks = task_data(store, snap, lin)
    specs = head_specs(tasks)
    warm = None
    if warm_ok:
        # verify_all=False: verify_recorded above checked every file against the recorded manifest
        model, tokenizer, warm = warm_start(ws.home / latest.path, specs, config, changed=ch["changed"],
                                            changed_policy=options.changed_policy, verify_all=False)
        echo(f"warm start from model v{latest.version}: " + ", ".join(f"{k} {len(v)}" for k, v in warm.to_dict().items()))
    else:
        model, tokenizer = build_model(specs, config)
    focus = _focus(warm, ch)
    meta = {"tasks": {n: vars(li) for n, li in lin.items()}, "warm_start_from": latest.version if warm else None,
            "focus": focus}
    uri = _tracking_uri(ws, options)
    import logging

    for noisy in ("mlflow", "alembic"):  # the store's first-use migrations log at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with Tracker(uri, artifact_location=ws.mlflow_artifact_uri, run_name=f"train {time.strftime('%Y-%m-%d %H:%M')}",
                 tags={"mothermodel.kind": "train", "mothermodel.workspace": str(ws.root)}) as tracker:
        tracker.log_params({"encoder": config.encoder or "default (all-MiniLM-L6-v2)", "tasks": names,
                            "label_versions": {n: li.prob_label_version for n, li in lin.items()},
                            "fingerprints": {n: li.fingerprint[:16] for n, li in lin.items()},
                            "warm_start": warm.to_dict() if warm else None, "focus": focus,
                            "config": config.to_dict()})
        t0 = time.perf_counter()
        if focus == []:
            # only removals: the remaining heads and the encoder are the latest model's, unchanged
            stages = [_save_untrained(model, tokenizer, config, run_dir, meta)]
        else:
            # the first stage learns the label model's labels, then self-training rounds (selftrain.py);
            # a warm start with unchanged tasks spends its steps on the new and changed ones
            stages = fit(model, tokenizer, tasks, config, checkpoint_dir=run_dir, resume=resume, meta=meta,
                         progress=options.progress, focus=focus,
                         on_step=lambda s: tracker.log_step(s.step, {"loss": s.loss, "lr": s.lr,
                                                                     **{f"loss/{k}": v for k, v in s.task_losses.items()}}))
        seconds = time.perf_counter() - t0
        res = stages[-1]
        examples = sum(r.examples for r in stages)
        trained_seconds = sum(r.seconds for r in stages)
        results = evaluate(res.model, tokenizer, tasks, max_length=config.max_length,
                           batch_size=config.eval_batch_size, tokens=res.tokens or None)
        metrics = metric_keys(results, {n: li.dataset for n, li in lin.items()})
        for n, li in lin.items():  # the label model's figure beside each task's
            for split, m in li.label_metrics.items():
                for k in ("accuracy", "macro_f1"):
                    if k in m:
                        metrics[f"{n}/{li.dataset}/{split}/label_model_{k}"] = m[k]
        tracker.log_metrics(metrics)
        examples_per_s = examples / trained_seconds if trained_seconds > 0 else 0.0
        tracker.log_metrics({"train_seconds": seconds, "examples_per_s": examples_per_s})
        final = res.checkpoint
        manifest = ckpt.verify(final)
        tracker.log_dict(manifest, "manifest.json")
        rec = store.record_model(path=str(final.relative_to(ws.home)), encoder=config.encoder or "default",
                                 content_hash=sha256_file(final / ckpt.MANIFEST), metrics=metrics,
                                 mlflow_run_id=tracker.run_id,
                                 tasks=[ModelTaskRecord(n, li.fingerprint, li.prob_label_version) for n, li in lin.items()])
        tracker.set_tags({"mothermodel.model_version": str(rec.version)})
    (ws.models_dir / IN_PROGRESS).unlink(missing_ok=True)
    return {"model_version": rec.version, "trained": True, "metrics": metrics, "changes": ch,
            "warm_start": warm.to_dict() if warm else None, "focus": focus, "path": rec.path, "mlflow_run_id": rec.mlflow_run_id,
            "mlflow_tracking_uri": uri, "seconds": round(seconds, 2), "examples_per_s": round(examples_per_s, 1),
            "steps": sum(r.steps for r in stages), "stages": len(stages),
            "resumed_from": str(stages[0].resumed_from) if stages[0].resumed_from else None}


def _focus(warm, ch: dict[str, list[str]]) -> Optional[list[str]]:
    """The tasks a warm start trains for (new and changed), or None for a full run.

    A full run when there is no warm start or no task is unchanged: then every
    task needs the whole schedule anyway.
    """
    if warm is None or not ch["unchanged"]:
        return None
    return sorted(ch["new"] + ch["changed"])


def _save_untrained(model, tokenizer, config: TrainConfig, run_dir: Path, meta: dict):
    """A model version that only drops heads: saved as step 0 of a run, no training."""
    from mothermodel.trainer import checkpoint as ckpt
    from mothermodel.trainer.loop import TrainResult

    path = ckpt.CheckpointDir(run_dir / "stage-0", keep=config.keep_checkpoints).write(
        0, model, tokenizer, config=config.to_dict(), meta={**meta, "stage": 0, "total_steps": 0})
    return TrainResult(model, 0, 0, 0.0, 0, 0.0, [], path, None, 1)


def _same_encoder(ws, latest, config: TrainConfig) -> bool:
    from mothermodel.trainer import checkpoint as ckpt

    m = ckpt.read_manifest(ws.home / latest.path)
    return (m.get("config") or {}).get("encoder") == config.encoder


def _run_dir(ws, lin: dict[str, Lineage], config: TrainConfig, options: TrainOptions) -> tuple[Path, bool, TrainConfig]:
    """A new run folder, or with --resume the interrupted run's (when what it learns from is unchanged)."""
    marker = ws.models_dir / IN_PROGRESS
    want = {n: [li.fingerprint, li.prob_label_version] for n, li in lin.items()}
    if options.resume:
        if not marker.is_file():
            raise UserError("--resume: no interrupted training run in this workspace (run `mothermodel train`)")
        prev = json.loads(marker.read_text())
        if prev["lineage"] != want:
            raise UserError("--resume: tasks or labels changed since the interrupted run; run `mothermodel train` "
                            "without --resume")
        cfg = TrainConfig.from_dict({**prev["config"], **{k: getattr(config, k) for k in ("device", "bf16", "compile")}})
        return ws.home / prev["run_dir"], True, cfg
    run_dir = ws.models_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    write_text_atomic(marker, json.dumps({"run_dir": str(run_dir.relative_to(ws.home)), "lineage": want,
                                          "config": config.to_dict()}, sort_keys=True))
    return run_dir, False, config


# --- predictions -------------------------------------------------------------------------


def predict(store: RegistryStore, task: str, *, split: Optional[str] = None, input_file: Optional[str] = None,
            device: str = "auto", batch_size: int = 128):
    """The latest mother model's class probabilities and predicted class names for TASK's rows
    (its dataset, or one split of it) or for the rows of INPUT_FILE (a text column); an Arrow table."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from mothermodel.trainer import checkpoint as ckpt
    from mothermodel.trainer.predict import predict_proba

    model_rec = store.model()
    if model_rec is None:
        raise UserError("TASK: no mother model yet; run `mothermodel train`")
    if task not in model_rec.tasks:
        raise UserError(f"TASK: the latest model (v{model_rec.version}) has no head for {task!r}; "
                        "run `mothermodel train` after `mothermodel label fit " + task + "`")
    t = store.task(task)
    if input_file:
        from mothermodel.registry import datasets

        table = datasets.read_table(input_file)
        if "text" not in table.column_names:
            raise UserError(f"{input_file}: needs a 'text' column (columns: {', '.join(table.column_names[:10])})")
        texts = table.column("text").to_pylist()
        ids = pa.array(np.arange(len(texts)), pa.int64())
    else:
        ds = store.dataset(t.dataset)
        if not ds.text_field:
            raise UserError(f"TASK: dataset {ds.name} has no text field")
        table = store.read_dataset(ds)
        if split is not None:
            if not ds.split_field or split not in set(table.column(ds.split_field).to_pylist()):
                raise UserError(f"--split: no rows in split {split!r}")
            table = table.filter(pc.equal(table.column(ds.split_field), split))
        texts = table.column(ds.text_field).to_pylist()
        ids = table.column("_row")
    folder = store.ws.home / model_rec.path
    ckpt.verify_recorded(folder, model_rec.content_hash)
    model, tokenizer, manifest = ckpt.load_model(folder, verify_all=False)  # verified just above
    max_length = (manifest.get("config") or {}).get("max_length", 128)
    probs = predict_proba(model, tokenizer, [x or "" for x in texts], tasks=[task], max_length=max_length,
                          batch_size=batch_size, device=device)[task]
    cols = {"row": ids, "pred": pa.array([t.classes[i] for i in probs.argmax(axis=1)], pa.string())}
    for j, c in enumerate(t.classes):
        cols[f"p_{c}"] = pa.array(probs[:, j])
    return pa.table(cols).replace_schema_metadata({"task": task, "model_version": str(model_rec.version)})
