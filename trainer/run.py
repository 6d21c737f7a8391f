"""The mother model over the registry: `train`, `train --if-changed`, `train --resume`, `predict`.

This is the glue between the registry store and the registry-free trainer core
(config, data, model, loop, checkpoint, tracking): it reads each task's freshest
probabilistic labels through the store (`AbstractStore`), decides what changed since the
latest model (lineage, `registry/lineage.py`), warm-starts from that model,
runs the loop, logs to MLflow and records the new model version with, per task,
the fingerprint and labels version it learned.

Files: `.mothermodel/models/run-<id>/step-*/` (checkpoints; the last one is the
model version's folder) and `.mothermodel/models/in-progress.json` while a run is
under way, so `train --resume` can pick an interrupted run up.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mothermodel.atomic import sha256_file, write_text_atomic
from mothermodel.errors import UserError
from mothermodel.inputs import TaskInput, as_text
from mothermodel.labeling import slices
from mothermodel.registry import datasets, faults, lineage
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.datasets import input_texts
from mothermodel.registry.metric_key import MetricKey, flatten
from mothermodel.registry.records import ModelTaskRecord, Snapshot
from mothermodel.registry.workspace import TRAIN_MARKER, training
from mothermodel.textfit import measure, tokenizer_file
from mothermodel.trainer import checkpoint as ckpt
from mothermodel.trainer import guard, selftrain
from mothermodel.trainer.config import TrainConfig, TrainOptions
from mothermodel.trainer.data import TaskData, resolve_config, tokenize
from mothermodel.trainer.encoder import default_encoder_dir
from mothermodel.trainer.evaluate import evaluate
from mothermodel.trainer.loop import TrainResult
from mothermodel.trainer.model import build_model, head_specs, warm_start
from mothermodel.trainer.outcome import TaskResult, TrainOutcome, TrainRun
from mothermodel.trainer.predict import predict_proba, predict_tokens
from mothermodel.trainer.tracking import Tracker

IN_PROGRESS = TRAIN_MARKER  # registry/workspace.py owns the name: status and verify read it too


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
    """The tasks to train: the named ones (checked), else every task with an input (a text field or its own
    input template)."""
    if names:
        for n in names:
            if n not in snap.tasks:
                raise UserError(f"TASK: unknown task {n!r}")
            if snap.tasks[n].input_for(snap.datasets[snap.tasks[n].dataset]) is None:
                raise UserError(f"TASK: task {n}'s dataset {snap.tasks[n].dataset} has no text field to train on")
        return list(names)
    return [n for n, t in sorted(snap.tasks.items()) if t.input_for(snap.datasets[t.dataset]) is not None]


def rows_key(task) -> str:
    """The trainer's name for the rows a task reads: its dataset, or dataset#template when the task builds
    its own input (tasks on one dataset share an encoder pass only when they read the same input)."""
    return task.dataset if task.input is None else f"{task.dataset}#{task.input.key}"


def lineage_of(store: AbstractStore, snap: Snapshot, names: Sequence[str],
               failed: dict[str, Exception] | None = None) -> dict[str, Lineage]:
    """Each task's freshest probabilistic labels; exit 2 naming the task and the fix when there are none
    (with `failed`: that task is left out and its error kept there instead)."""
    out = {}
    for n in names:
        rec = store.latest_prob_labels(n, fresh=True)
        if rec is None:
            old = store.latest_prob_labels(n, fresh=False)
            why = (f"its labels are stale (task changed since labels v{old.version} were fit)" if old
                   else "it has no probabilistic labels yet")
            err = faults.with_fix(UserError(
                f"TASK: cannot train {n}: {why}; run `mothermodel label fit {n}` (or `mothermodel watch --once` "
                "for every stale task; `--task` trains the chosen tasks only)"),
                f"run `mothermodel label fit {n}` (or `mothermodel watch --once`)")
            if failed is None:
                raise err
            failed[n] = err
            continue
        t = snap.tasks[n]
        if t.slice_heads:  # its heads train on the membership: a slice edited since must be applied first
            member = slices.read(store, t, snap.datasets[t.dataset], snap.latest_membership.get(n))
            stale = sorted({s.name for s in t.slices} - set(member.names if member else []))
            if stale:
                err = faults.with_fix(UserError(
                    f"TASK: cannot train {n}'s slice heads: slice(s) {', '.join(stale)} have no up-to-date "
                    f"membership; run `mothermodel label apply {n}` (or `mothermodel watch --once`)"),
                    f"run `mothermodel label apply {n}`")
                if failed is None:
                    raise err
                failed[n] = err
                continue
        # the model fingerprint: with slice heads, the slices too (records.TaskRecord.model_fingerprint)
        out[n] = Lineage(n, t.dataset, t.model_fingerprint, rec.version, rec.model, rec.metrics)
    return out


def changes(model, lin: dict[str, Lineage], kept: Sequence[str] = ()) -> dict[str, list[str]]:
    """Tasks new to, changed since, unchanged since, and removed from the latest model. KEPT (`carried`): the
    model's tasks this run does not train, neither trained nor removed."""
    out: dict[str, list[str]] = {"new": [], "changed": [], "unchanged": [], "removed": []}
    for n, li in lin.items():
        s = lineage.model_staleness(n, li.fingerprint, li.prob_label_version, model)
        key = "unchanged" if not s.stale else ("new" if model is None or n not in model.tasks else "changed")
        out[key].append(n)
    if model is not None:
        out["removed"] = sorted(set(model.tasks) - set(lin) - set(kept))
    return out


def carried(model, snap: Snapshot, names: Sequence[str]) -> list[str]:
    """The latest model's tasks that `train --task` leaves out: still registered and trainable, not chosen.
    Their heads stay as they are and their records (lineage, the guard's choice) pass to the new model version
    (`carried_records`); only a task that is gone (or has nothing to train on) is removed. A chosen task left
    out for a fault is not carried: its head goes, as isolation documents."""
    if model is None:
        return []
    keep = set(trainable(snap, None)) - set(names)
    return sorted(n for n in model.tasks if n in keep)


def carried_records(model, tasks: Sequence[str]) -> tuple[list[ModelTaskRecord], dict[str, Any]]:
    """CARRIED tasks' records for the next model version, and their metrics: the same lineage, the same guard's
    choice, and the checkpoint that served them (the model's own folder made explicit: the new folder's
    encoder moved). `guard["trained_in"]`: the version whose run trained them, so that a deployable distilled
    from any version since is not superseded (`lineage.deployable_staleness`)."""
    recs, metrics = [], {}
    for n in tasks:
        mt = model.tasks[n]
        path, digest = (mt.checkpoint, mt.checkpoint_hash) if mt.checkpoint else (model.path, model.content_hash)
        recs.append(ModelTaskRecord(n, mt.task_fingerprint, mt.prob_label_version, served_by=mt.served_by,
                                    checkpoint=path, checkpoint_hash=digest,
                                    guard={**(mt.guard or {}), "trained_in": (mt.guard or {}).get("trained_in",
                                                                                                  model.version)}))
        metrics.update({k: v for k, v in model.metrics.items() if (key := MetricKey.parse(k)) and key.task == n})
    return recs, metrics


def task_data(store: AbstractStore, snap: Snapshot, lin: dict[str, Lineage],
              failed: dict[str, Exception] | None = None) -> list:
    """The trainer's TaskData per task, read through the store (hash-checked). With `failed`, a task whose
    data cannot be read (gold labels that no longer fit, a damaged file, ...) is left out: its error goes
    there and it is removed from `lin`."""
    out = []
    for n, li in list(lin.items()):
        try:
            out.append(_task_data(store, snap, lin, n, li))
        except Exception as e:  # noqa: BLE001 - one task's fault (registry/faults.py)
            if failed is None or not faults.isolatable(e):
                raise
            failed[n] = e
            del lin[n]
    return out


def _task_data(store: AbstractStore, snap: Snapshot, lin: dict[str, Lineage], n: str, li: Lineage) -> TaskData:
    """One task's TaskData (see `task_data`)."""
    t = snap.tasks[n]
    pl = store.read_prob_labels(store.prob_labels(n, li.prob_label_version), with_text=True)
    inp = t.input
    in_tree = t.parent in lin and t.parent_class and rows_key(snap.tasks[t.parent]) == rows_key(t)
    member = slices.read(store, t, snap.datasets[t.dataset], snap.latest_membership.get(n))
    measured = member.by_name() if member else {}
    if measured:  # the labels' figures per slice too, beside the model's (what the guard's labels would serve)
        li.label_metrics = {**li.label_metrics, **slices.split_figures(measured, pl.gold, np.asarray(pl.pred), pl.split)}
    return TaskData(
        name=n, classes=list(t.classes), texts=pl.texts, split=pl.split, probs=pl.probs, covered=pl.covered,
        gold=pl.gold, dataset=rows_key(t),
        parent=t.parent if in_tree else None,
        parent_class=snap.tasks[t.parent].classes.index(t.parent_class) if in_tree else None,
        applicable=pl.applicable if in_tree else None,
        spans=len(inp.spans) if inp is not None and inp.kind == "markers" else 0, hand=pl.hand, measured=measured,
        slices=measured if t.slice_heads else {})


def _tracking_uri(ws, options: TrainOptions) -> str:
    return options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ws.mlflow_tracking_uri


def train(store: AbstractStore, config: TrainConfig, options: TrainOptions | None = None,
          echo: Callable[[str], None] = lambda s: None) -> TrainOutcome:
    """Train (or warm-start) the mother model on every task's fresh labels; record a model version.

    Returns a `TrainOutcome` (trainer/outcome.py): per task its figures and the guard's choice.
    """
    with training(store.ws) as before:  # lets `status` tell this run from an interrupted one
        return _train(store, config, options or TrainOptions(), echo, before)


def _train(store: AbstractStore, config: TrainConfig, options: TrainOptions, echo: Callable[[str], None],
           before: dict[str, Any] | None) -> TrainOutcome:
    if options.fresh and options.resume:
        raise UserError("--fresh: cannot be combined with --resume (a resumed run continues its own model)")
    ws = store.ws
    snap = store.snapshot()
    names = trainable(snap, options.tasks)
    if not names:
        raise UserError("TASK: no task to train (register a dataset with a text field and a task on it)")
    # More than one task: one whose labels are stale or unreadable is left out of this run (so its head is
    # not in the model version it records) and reported; the healthy tasks train (registry/faults.py).
    isolate = options.isolate if options.isolate is not None else len(names) > 1
    failed: dict[str, Exception] | None = {} if isolate else None
    lin = lineage_of(store, snap, names, failed)
    latest = store.model()
    if failed and not lin:
        return _all_failed(store, latest, failed)
    # `--task` trains the chosen tasks only: the model's other tasks are carried over, not removed
    kept = carried(latest, snap, names)
    ch = changes(latest, lin, kept)
    # a task left out for a fault is no reason to train by itself (`watch` would drop its head every tick)
    up_to_date = latest is not None and not (ch["new"] or ch["changed"] or set(ch["removed"]) - set(failed or {}))
    if options.if_changed and not options.resume and up_to_date:
        _record_faults(store, failed, list(lin))
        return TrainOutcome(latest.version, False, ch, status="up to date", recorded_metrics=latest.metrics,
                            failed=_failed_list(failed))
    tasks = task_data(store, snap, lin, failed)
    if failed and not lin:
        return _all_failed(store, latest, failed)
    if failed:
        names = list(lin)
        ch = changes(latest, lin, kept)
    _record_faults(store, failed, [])
    # A plain `train` with nothing changed is a request to train again (new settings, say): a full run
    # from a fresh model. A warm start would have nothing to train for and record a copy of the latest.
    same_encoder = latest is not None and _same_encoder(ws, latest, config)
    warm_ok = same_encoder and not up_to_date and not options.fresh
    # The model a warm start will load: a corrupted one stops the run before it writes anything
    # (--resume takes its encoder from the interrupted run, so check whenever it resumes; a fresh
    # re-run checks it too, so that a damaged latest model is reported rather than silently superseded).
    if latest is not None and (options.resume or same_encoder):
        ckpt.verify_recorded(ws.home / latest.path, latest.content_hash)
    run_dir, resume, config = _run_dir(ws, store, lin, config, options, before)
    try:  # a run that fails before it trains (an encoder that does not load, say) is no run to resume
        config = resolve_config(config, tasks)  # epochs / lr where left to the data, as recorded below
        specs = head_specs(tasks, config.span_pooling)
        warm = None
        if warm_ok:
            # verify_all=False: verify_recorded above checked every file against the recorded manifest
            model, tokenizer, warm = warm_start(ws.home / latest.path, specs, config, changed=ch["changed"],
                                                changed_policy=options.changed_policy, verify_all=False, keep=kept)
            for n in kept:  # not trained: frozen, so their weights stay bit-identical (and DDP sees no unused head)
                if n in model.heads:
                    model.heads[n].requires_grad_(False)
            echo(f"warm start from model v{latest.version}: " + ", ".join(f"{k} {len(v)}" for k, v in warm.to_dict().items()))
        else:
            model, tokenizer = build_model(specs, config)
    except BaseException:
        if not resume:
            _forget_run(ws, run_dir)
        raise
    focus = _focus(warm, ch)
    meta = {"tasks": {n: vars(li) for n, li in lin.items()}, "warm_start_from": latest.version if warm else None,
            "focus": focus}
    uri = _tracking_uri(ws, options)
    for noisy in ("mlflow", "alembic"):  # the store's first-use migrations log at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Named for what it makes (the next model version, renamed below should another run record it first).
    run_name = f"model v{(latest.version if latest else 0) + 1}: {', '.join(names)}"
    with Tracker(uri, artifact_location=ws.mlflow_artifact_uri, run_name=run_name,
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
            stages = selftrain.fit(model, tokenizer, tasks, config, checkpoint_dir=run_dir, resume=resume, meta=meta,
                                   progress=options.progress, focus=focus,
                                   on_step=lambda s: tracker.log_step(s.step, {
                                       "loss": s.loss, "lr": s.lr,
                                       **{f"loss/{k}": v for k, v in s.task_losses.items()}}))
        seconds = time.perf_counter() - t0
        res = stages[-1]
        examples = sum(r.examples for r in stages)
        trained_seconds = sum(r.seconds for r in stages)
        final = res.checkpoint
        # The guard (guard.py): every stage's last checkpoint scored, the best source per task chosen on valid.
        stage_dirs = _stage_checkpoints(run_dir, final)
        per_stage = _evaluate_stages(res.model, tokenizer, tasks, stage_dirs, config, res.tokens or None)
        fits = _encoder_fits(tasks, config)
        served = _guard(tasks, lin, per_stage, stage_dirs, fits, config, res.tokens or None, res.model, tokenizer)
        results = _task_results(lin, per_stage, served)
        metrics = {k: v for r in results.values() for k, v in r.metric_keys().items()}
        tracker.log_metrics(metrics)
        examples_per_s = examples / trained_seconds if trained_seconds > 0 else 0.0
        tracker.log_metrics({"train_seconds": seconds, "examples_per_s": examples_per_s})
        manifest = ckpt.verify(final)
        tracker.log_dict(manifest, "manifest.json")
        tracker.set_tags({f"mothermodel.guard.{n}": _guard_tag(c) for n, c in served.items()})
        records = []
        for n, li in lin.items():
            c = served[n]
            path = stage_dirs[c["stage"]]
            records.append(ModelTaskRecord(n, li.fingerprint, li.prob_label_version, served_by=c["served_by"],
                                           checkpoint=str(path.relative_to(ws.home)),
                                           checkpoint_hash=sha256_file(path / ckpt.MANIFEST), guard=c))
        kept_records, kept_metrics = carried_records(latest, kept)
        rec = store.record_model(path=str(final.relative_to(ws.home)), encoder=config.encoder or "default",
                                 content_hash=sha256_file(final / ckpt.MANIFEST), metrics={**flatten(metrics), **kept_metrics},
                                 mlflow_run_id=tracker.run_id, tasks=records + kept_records)
        tracker.set_tags({"mothermodel.model_version": str(rec.version),
                          "mlflow.runName": f"model v{rec.version}: {', '.join(names)}"})
    (ws.models_dir / IN_PROGRESS).unlink(missing_ok=True)
    for n, c in served.items():
        if c["below_labels"] or (c.get("encoder_fit") or {}).get("poor"):
            echo(f"guard: {n}: {c['reason']}" + (f"; likely cause: {c['cause']}" if c.get("cause") else ""))
    run = TrainRun(path=rec.path, mlflow_run_id=rec.mlflow_run_id, mlflow_tracking_uri=uri,
                   seconds=round(seconds, 2), examples_per_s=round(examples_per_s, 1),
                   steps=sum(r.steps for r in stages), stages=len(stages),
                   warm_start=warm.to_dict() if warm else None, focus=focus,
                   resumed_from=str(stages[0].resumed_from) if stages[0].resumed_from else None)
    return TrainOutcome(rec.version, True, ch, tasks=results, run=run, failed=_failed_list(failed))


def _all_failed(store: AbstractStore, latest, failed: dict[str, Exception]) -> TrainOutcome:
    """Every task failed: nothing trained, each failure recorded and reported."""
    _record_faults(store, failed, [])
    return TrainOutcome(latest.version if latest else None, False, {}, status="failed", failed=_failed_list(failed))


def _failed_list(failed: dict[str, Exception] | None) -> list[dict[str, Any]]:
    return [faults.describe(n, faults.TRAIN, e) for n, e in (failed or {}).items()]


def _record_faults(store: AbstractStore, failed: dict[str, Exception] | None, succeeded: list[str]) -> None:
    store.set_task_faults(faults.TRAIN, _failed_list(failed), succeeded)


def _stage_checkpoints(run_dir: Path, final: Path) -> dict[int, Path]:
    """Each stage's last checkpoint of this run (stage -> folder); the final one is the model version's."""
    final_stage = int(final.parent.name.split("-")[1])
    out = {}
    for s in range(final_stage):
        last = ckpt.CheckpointDir(run_dir / f"stage-{s}").latest()
        if last is not None:
            out[s] = last
    out[final_stage] = final
    return out


def _evaluate_stages(model, tokenizer, tasks, stage_dirs: dict[int, Path], config: TrainConfig,
                     tokens) -> dict[int, dict[str, dict[str, dict[str, float]]]]:
    """stage -> task -> split -> metrics, every stage's last weights loaded in turn; ends on the final weights."""
    tokens = dict(tokens or {})
    final = max(stage_dirs)
    out = {}
    for s in sorted(stage_dirs):
        if s != final:
            model.load_state_dict(ckpt.load_weights(stage_dirs[s]), strict=True)
        elif len(stage_dirs) > 1:
            model.load_state_dict(ckpt.load_weights(stage_dirs[s]), strict=True)  # back to the final weights
        out[s] = evaluate(model, tokenizer, tasks, max_length=config.max_length, batch_size=config.eval_batch_size,
                          tokens=tokens)
    return out


def _encoder_fits(tasks, config: TrainConfig) -> dict[str, dict[str, Any]]:
    """Per task: how well the encoder's tokenizer fits its train inputs (mothermodel.textfit), measured once
    per dataset (rows key); empty when the encoder has no tokenizer.json."""
    tok = tokenizer_file(config.encoder or default_encoder_dir())
    if tok is None:
        return {}
    by_rows: dict[str, dict[str, Any]] = {}
    out = {}
    for t in tasks:
        if t.dataset not in by_rows:
            rows = np.flatnonzero(t.split == "train")
            rows = rows if len(rows) else np.arange(len(t.texts))
            by_rows[t.dataset] = measure(tok, [t.texts[i] for i in rows], seed=config.seed).to_dict()
        out[t.name] = by_rows[t.dataset]
    return out


def _guard(tasks, lin: dict[str, Lineage], per_stage, stage_dirs, fits, config: TrainConfig, tokens, model,
           tokenizer) -> dict[str, dict[str, Any]]:
    """The guard's choice per task (guard.py) with the gold-free agreement, the encoder's fit, and when the
    model is below its labels, the likely cause."""
    out = {}
    rng = np.random.default_rng([int(config.seed), 23])
    tokens = dict(tokens or {})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    by_task = {t.name: t for t in tasks}
    for n, li in lin.items():
        t = by_task[n]
        c = guard.choose(n, {s: per_stage[s].get(n, {}) for s in per_stage}, li.label_metrics)
        # Gold-free check: how often the final model says what the labels say, on LF-covered rows
        # outside train (train rows are what it learnt from), at most 1,000 of them.
        covered = t.covered if t.covered is not None else np.ones(len(t.texts), bool)
        rows = np.flatnonzero(covered & (t.split != "train")) if (covered & (t.split != "train")).any() \
            else np.flatnonzero(covered)
        if len(rows) > 1000:
            rows = np.sort(rng.choice(rows, 1000, replace=False))
        if len(rows) and t.probs is not None:
            tok = tokens.get(t.dataset) or tokenize(tokenizer, t.texts, config.max_length)
            tokens[t.dataset] = tok
            p = predict_tokens(model, tok, tasks=[n], rows=rows, batch_size=config.eval_batch_size, pad_id=pad)[n]
            c.agreement = guard.agreement(p.argmax(axis=1), t.clean_probs()[rows].argmax(axis=1), None)
        d = c.to_dict()
        if t.hand is not None:  # what it was trained on besides its weak labels; those rows are in no figure
            h = t.hand_rows
            d["hand_labels"] = {"rows": int(h.sum()), "valid_rows": int((h & (t.split == "valid")).sum())}
        if fits.get(n):
            d["encoder_fit"] = fits[n]
        if c.below_labels:
            d["cause"] = _likely_cause(t, fits.get(n))
        out[n] = d
    return out


#: Fewer covered train rows than this and a model below its labels is put down to too few rows.
FEW_ROWS = 500


def _likely_cause(t, fit: Optional[dict]) -> str:
    """Why a task's model is below its labels, as far as it can be measured without another run."""
    n_rows = int(((t.split == "train") & (t.covered if t.covered is not None else True)).sum())
    if fit and fit.get("poor"):
        return (f"the encoder's fit to the text (whole-word share {fit['whole_word_share']:.2f}, "
                f"{fit['pieces_per_word']:.2f} pieces a word): {fit['advice']}")
    if n_rows < FEW_ROWS:
        return f"too few rows ({n_rows} LF-covered train rows): add rows or sources that cover more of them"
    return ("not measured: compare with the task trained alone (bench/train_alone.py) and with more steps "
            "(--epochs); meanwhile its labels serve it")


def _task_results(lin: dict[str, Lineage], per_stage, served) -> dict[str, TaskResult]:
    """Per task: the chosen model stage's figures, each stage's, the labels' and the guard's choice (its
    `metric_keys()` are the run's metrics)."""
    return {n: TaskResult(n, li.dataset, per_stage[served[n]["stage"]].get(n, {}), li.label_metrics,
                          {s: res.get(n, {}) for s, res in per_stage.items()}, served[n])
            for n, li in lin.items()}


def _guard_tag(c: dict[str, Any]) -> str:
    """The MLflow tag of one task's choice, e.g. 'labels (model -10.1 points on valid)'."""
    what = "labels" if c["served_by"] == "labels" else (
        "model" if c["stage"] == c["final_stage"] else f"model stage {c['stage']}")
    if c["margin"] is None:
        return f"{what} (no gold labels on valid)"
    return f"{what} (model {c['margin']:+.1f} points over its labels on {c['split']})"


def _focus(warm, ch: dict[str, list[str]]) -> Optional[list[str]]:
    """The tasks a warm start trains for (new and changed), or None for a full run.

    A full run when there is no warm start or no task is unchanged: then every
    task needs the whole schedule anyway. An unchanged task whose head the warm
    model lacks or re-initialised (carried over by a `--task` run from another
    encoder, or a layout change) trains like a new one: it has no outputs to keep.
    """
    if warm is None:
        return None
    fresh = set(warm.added) | set(warm.reinitialized)
    unchanged = [n for n in ch["unchanged"] if n not in fresh]
    if not unchanged:
        return None
    return sorted(set(ch["new"] + ch["changed"] + ch["unchanged"]) - set(unchanged))


def _save_untrained(model, tokenizer, config: TrainConfig, run_dir: Path, meta: dict):
    """A model version that only drops heads: saved as step 0 of a run, no training."""
    path = ckpt.CheckpointDir(run_dir / "stage-0", keep=config.keep_checkpoints).write(
        0, model, tokenizer, config=config.to_dict(), meta={**meta, "stage": 0, "total_steps": 0})
    return TrainResult(model, 0, 0, 0.0, 0, 0.0, [], path, None, 1)


def _same_encoder(ws, latest, config: TrainConfig) -> bool:
    m = ckpt.read_manifest(ws.home / latest.path)
    return (m.get("config") or {}).get("encoder") == config.encoder


def _forget_run(ws, run_dir: Path) -> None:
    """Remove RUN_DIR and the in-progress marker if it still names it (another run may have written its own)."""
    marker = ws.models_dir / IN_PROGRESS
    try:
        if json.loads(marker.read_text()).get("run_dir") == str(run_dir.relative_to(ws.home)):
            marker.unlink(missing_ok=True)
    except (OSError, ValueError, AttributeError):
        pass
    shutil.rmtree(run_dir, ignore_errors=True)


def _drop_superseded_run(ws, store: AbstractStore, state: dict[str, Any] | None) -> None:
    """A plain `train` gives up an interrupted run (`--resume` would have continued it): its folder goes, so it is
    not left behind as an orphan (`verify` names those). STATE is `training_state` as this run found it before
    taking the training lock: never a running run, nor one a model was recorded from (a kill between recording
    and removing the marker)."""
    if not state or state["state"] != "interrupted" or not state.get("run_dir"):
        return
    old = (ws.home / state["run_dir"]).resolve()
    if old.parent != ws.models_dir.resolve() or not old.name.startswith("run-") or not old.is_dir():
        return
    if any((ws.home / m.path).resolve().is_relative_to(old) for m in store.models()):
        return
    shutil.rmtree(old, ignore_errors=True)


def _run_dir(ws, store: AbstractStore, lin: dict[str, Lineage], config: TrainConfig, options: TrainOptions,
             before: dict[str, Any] | None) -> tuple[Path, bool, TrainConfig]:
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
    _drop_superseded_run(ws, store, before)
    run_dir = ws.models_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    write_text_atomic(marker, json.dumps({"run_dir": str(run_dir.relative_to(ws.home)), "lineage": want,
                                          "config": config.to_dict()}, sort_keys=True))
    return run_dir, False, config


# --- predictions -------------------------------------------------------------------------


def served_checkpoint(store: AbstractStore, model_rec, task: str) -> tuple[Path, Optional[str]]:
    """The checkpoint that serves TASK in MODEL_REC (the guard's stage; the model's own folder for a model
    from before the guard) and its recorded manifest hash."""
    mt = model_rec.tasks[task]
    if mt.checkpoint:
        return store.ws.home / mt.checkpoint, mt.checkpoint_hash
    return store.ws.home / model_rec.path, model_rec.content_hash


def predict(store: AbstractStore, task: str, *, split: Optional[str] = None, input_file: Optional[str] = None,
            device: str = "auto", batch_size: int = 128, echo: Callable[[str], None] = lambda s: None):
    """TASK's class probabilities and predicted class names from what serves it (the guard's choice: a stage
    of the latest mother model, or its labels) for its dataset's rows (or one split of them), or from the
    mother model for the rows of INPUT_FILE (the fields its input reads); an Arrow table with the row id,
    the row's text and its source in the metadata."""
    model_rec = store.model()
    try:
        t = store.task(task)  # an unknown task is named as such first, as the argument it is
    except UserError:
        raise UserError(f"TASK: unknown task {task!r}") from None
    if model_rec is None:
        raise UserError("TASK: no mother model yet; run `mothermodel train`")
    if task not in model_rec.tasks:
        raise UserError(f"TASK: the latest model (v{model_rec.version}) has no head for {task!r}; "
                        "run `mothermodel train` after `mothermodel label fit " + task + "`")
    ds = store.dataset(t.dataset)
    task_input = t.input_for(ds)
    if task_input is None:
        raise UserError(f"TASK: dataset {ds.name} has no text field")
    mt = model_rec.tasks[task]
    if input_file:
        table = datasets.read_table(input_file)
        if task_input.kind == "text" and task_input.fields[0] not in table.column_names and "text" in table.column_names:
            task_input = TaskInput.text("text")  # a plain file of texts for a one-field task
        missing = [c for c in task_input.columns if c not in table.column_names]
        if missing:
            raise UserError(f"{input_file}: needs a {missing[0]!r} column (the input is the {task_input.describe()}; "
                            f"columns: {', '.join(table.column_names[:10])})")
        texts = input_texts(table, task_input)
        ids = pa.array(np.arange(len(texts)), pa.int64())
    else:
        table = store.read_dataset(ds)
        if split is not None:
            if not ds.split_field or split not in set(table.column(ds.split_field).to_pylist()):
                raise UserError(f"--split: no rows in split {split!r}")
            table = table.filter(pc.equal(table.column(ds.split_field), split))
        texts = input_texts(table, task_input)
        ids = table.column("_row")
    if mt.served_by == "labels" and not input_file:
        # The guard chose the labels for this task: their posteriors for the dataset's rows.
        pl = store.read_prob_labels(store.prob_labels(task, mt.prob_label_version))
        probs = pl.probs[ids.to_numpy()]
        source = f"labels v{mt.prob_label_version}"
    else:
        if mt.served_by == "labels":
            echo(f"note: {task}'s labels serve it on its dataset (the guard: {mt.guard.get('reason', '')}); "
                 "rows of another file have no labels, so the mother model predicts them")
        folder, digest = served_checkpoint(store, model_rec, task)
        ckpt.verify_recorded(folder, digest)
        model, tokenizer, manifest = ckpt.load_model(folder, verify_all=False)  # verified just above
        max_length = (manifest.get("config") or {}).get("max_length", 128)
        probs = predict_proba(model, tokenizer, texts, tasks=[task], max_length=max_length,
                              batch_size=batch_size, device=device)[task]
        stage = mt.guard.get("stage")
        source = f"model v{model_rec.version}" + (f" stage {stage}" if mt.checkpoint and stage != mt.guard.get(
            "final_stage") else "")
    cols = {"row": ids, "text": pa.array([as_text(x) for x in texts], pa.string()),
            "pred": pa.array([t.classes[i] for i in probs.argmax(axis=1)], pa.string())}
    for j, c in enumerate(t.classes):
        cols[f"p_{c}"] = pa.array(probs[:, j])
    return pa.table(cols).replace_schema_metadata({"task": task, "model_version": str(model_rec.version),
                                                   "source": source})
