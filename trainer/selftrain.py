"""Self-training: after the model has learned from the label model, it learns from its own confident predictions.

COSINE-style (Yu et al., NAACL 2021), without the contrastive term. One round:

1. predict every train row of every task (covered or not: the model
   generalises from the rows the sources cover to the rows they miss);
2. sharpen the predictions into targets with soft frequency,
   ``q_ic ∝ p_ic ** 2 / f_c`` where ``f_c = sum_i p_ic`` (confident classes
   get more confident, frequent classes do not swamp rare ones);
3. keep rows whose target is confident (``max_c q_ic >= threshold``) and train
   on them for ``epochs`` more epochs at the given rate, warm from the current
   weights, through the same loop (:func:`~mothermodel.trainer.loop.train`).

:func:`fit` runs the first stage (the label model's posteriors) and then
``config.self_train_rounds`` rounds (fewer when no train row's prediction
reaches the threshold), each stage checkpointed in its own folder
``stage-<i>/`` under `checkpoint_dir`, so ``resume`` picks up inside any stage:
a round's targets are recomputed from the previous stage's final checkpoint,
which gives exactly the model that computed them the first time.

Hand labels (`label add`) count in every stage (data.py). When a task has some,
a last stage trains ``config.hand_epochs`` passes over the hand-labelled rows
alone (:func:`hand_stage_tasks`): weak labels first, clean labels last, as
"Weaker Than You Think" (Zhu et al., ACL 2023) found best. The guard then picks
each task's best stage on valid, so a task the clean stage does not help is
served from an earlier one.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from mothermodel.trainer import checkpoint as ckpt
from mothermodel.trainer.config import TrainConfig
from mothermodel.trainer.data import TaskData, Tokenized, resolve_config, tokenize, train_rows
from mothermodel.trainer.loop import StepInfo, TrainResult, train
from mothermodel.trainer.predict import predict_tokens

__all__ = ["sharpen", "refresh_targets", "keep_targets", "fit"]


def sharpen(p: np.ndarray, power: float = 2.0) -> np.ndarray:
    """Soft-frequency sharpening: ``q_ic ∝ p_ic ** power / f_c`` with ``f_c = sum_i p_ic``, rows normalised."""
    f = p.sum(axis=0, keepdims=True).clip(1e-8)
    q = np.power(p.clip(1e-12), power) / f
    return (q / q.sum(axis=1, keepdims=True)).astype(np.float32)


def refresh_targets(model: Any, tokenizer: Any, tasks: Sequence[TaskData], *, threshold: float, power: float = 2.0,
                    batch_size: int = 128, max_length: int = 128,
                    tokens: Optional[dict[str, Tokenized]] = None,
                    only: Optional[Sequence[str]] = None) -> list[TaskData]:
    """Tasks whose soft labels are the model's sharpened predictions on train rows; confident rows only.

    A returned task's ``covered`` marks the rows that passed `threshold` (so the
    default ``uncovered_weight=0`` trains on exactly those); ``applicable`` is
    kept, so a child task still weighs rows by P(it applies). With `only`,
    the other tasks are returned unchanged (and their datasets not predicted).
    """
    tokens = dict(tokens or {})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[TaskData] = []
    by_ds: dict[str, dict[str, np.ndarray]] = {}
    todo = [t for t in tasks if t.probs is not None and (only is None or t.name in set(only))]
    todo_names = {t.name for t in todo}
    for t in tasks:
        if t.name not in todo_names:
            out.append(t)
            continue
        train_rows = np.flatnonzero(t.split == "train")
        if t.dataset not in by_ds:
            tok = tokens.get(t.dataset) or tokenize(tokenizer, t.texts, max_length)
            tokens[t.dataset] = tok
            names = [u.name for u in todo if u.dataset == t.dataset]
            by_ds[t.dataset] = predict_tokens(model, tok, tasks=names, rows=train_rows, batch_size=batch_size,
                                              pad_id=pad)
        p = by_ds[t.dataset][t.name]
        q = sharpen(p, power)
        probs = np.array(t.clean_probs(), copy=True)
        probs[train_rows] = q
        covered = np.zeros(len(t.texts), bool)
        covered[train_rows] = q.max(axis=1) >= threshold
        out.append(replace(t, probs=probs, covered=covered))
    return out


def stage_count(config: TrainConfig, focused: bool) -> int:
    """Stages of a run: the first plus the self-training rounds (fewer in a focused warm run)."""
    rounds = config.self_train_rounds
    return 1 + (min(rounds, config.warm_self_train_rounds) if focused else rounds)


def keep_targets(model: Any, tokenizer: Any, tasks: Sequence[TaskData], focus: Sequence[str], config: TrainConfig,
                 tokens: Optional[dict[str, Tokenized]] = None) -> list[TaskData]:
    """Targets for the tasks a warm run does not train for: the warm model's own predictions.

    Learning without Forgetting (Li & Hoiem, 2016): an unchanged task, replayed
    on its label model's labels, would be pulled back from what self-training
    taught it (trec lost 4.6 test points that way when a third task was added:
    docs/benchmarks.md); replayed on the model's current outputs, it keeps them
    while the shared encoder moves. Only the rows the run can draw are predicted:
    every train row of a dataset that holds a focus task, and on the other
    datasets a seeded sample as large as the replay draws of the whole run.
    """
    focus = set(focus)
    keep = [t for t in tasks if t.probs is not None and t.name not in focus]
    if not keep:
        return list(tasks)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    focus_ds = {t.dataset for t in tasks if t.name in focus}
    focus_rows = sum(int((t.split == "train").sum()) for t in {t.dataset: t for t in tasks if t.name in focus}.values())
    stages = stage_count(config, focused=True)
    pool = max(config.batch_size, int(np.ceil(config.replay / (1 - config.replay) * focus_rows * config.warm_epochs * stages)))
    rng = np.random.default_rng([int(config.seed), 17])
    new: dict[str, TaskData] = {}
    for ds in sorted({t.dataset for t in keep}):
        group = [t for t in keep if t.dataset == ds]
        rows = np.flatnonzero(group[0].split == "train")
        if ds not in focus_ds and len(rows) > pool:
            rows = np.sort(rng.choice(rows, pool, replace=False))
        tok = tokens.get(ds) if tokens is not None and ds in tokens else tokenize(tokenizer, group[0].texts,
                                                                                   config.max_length)
        if tokens is not None:
            tokens[ds] = tok  # the run reuses it
        pred = predict_tokens(model, tok, tasks=[t.name for t in group], rows=rows, batch_size=config.eval_batch_size,
                              pad_id=pad)
        for t in group:
            probs = np.array(t.clean_probs(), copy=True)
            probs[rows] = pred[t.name]
            covered = np.zeros(len(t.texts), bool)
            covered[rows] = True
            new[t.name] = replace(t, probs=probs, covered=covered)
    return [new.get(t.name, t) for t in tasks]


WARM_EPOCHS_CAP = 5.0
"""At most this many times `warm_epochs` for a focus task that learns from few of its dataset's rows."""


def warm_epochs(tasks: Sequence[TaskData], focus: Sequence[str], config: TrainConfig) -> float:
    """A warm run's passes over its focus datasets: `warm_epochs` counted in each focus task's own rows.

    A child task in a tree learns from the rows where it applies, a share of its dataset; counted in
    the dataset's rows, 0.4 passes gave the demo's billing_kind (a third of the tickets) 0.13 passes
    over its own rows after an LF edit moved its labels, too few to follow them. So the run is
    lengthened until every focus task sees `warm_epochs` passes over its weighted rows (at most
    `WARM_EPOCHS_CAP` times)."""
    rows = train_rows(tasks, config.uncovered_weight)
    focus = set(focus)
    ratio = 1.0
    for t in tasks:
        if t.name in focus and t.probs is not None:
            w = float(t.train_weights(config.uncovered_weight).sum())
            if w > 0:
                ratio = max(ratio, rows[t.dataset] / w)
    return config.warm_epochs * min(ratio, WARM_EPOCHS_CAP)


def hand_stage_tasks(tasks: Sequence[TaskData], focus: Optional[Sequence[str]], config: TrainConfig
                     ) -> Optional[list[TaskData]]:
    """The tasks of the last, clean stage (each task's hand-labelled rows alone; the tasks without any, and in
    a focused warm run the tasks outside the focus, learn nothing there), or None when there is no such stage."""
    if not config.hand_epochs:
        return None
    todo = [t for t in tasks if t.hand_rows.any() and (focus is None or t.name in set(focus))]
    if not todo:
        return None
    names = {t.name for t in todo}
    return [t.hand_only() if t.name in names else replace(t, probs=None) for t in tasks]


def fit(model: Any, tokenizer: Any, tasks: Sequence[TaskData], config: TrainConfig, *,
        checkpoint_dir: Optional[str | os.PathLike] = None, resume: bool = False,
        on_step: Optional[Callable[[StepInfo], None]] = None, meta: Optional[dict] = None,
        progress: bool = True, on_stage_end: Optional[Callable[[int, TrainResult], None]] = None,
        focus: Optional[Sequence[str]] = None) -> list[TrainResult]:
    """Train on the label model's labels, then self-train ``config.self_train_rounds`` rounds; one TrainResult per stage.

    Step numbers passed to `on_step` continue across stages (stage 2 step 1
    comes after stage 1's last step), so a logged loss curve is one curve.
    `on_stage_end(stage, result)` runs after each stage trained here (e.g. to
    evaluate it). With `focus` (a warm start: the new and changed tasks), every
    stage runs ``config.warm_epochs`` over their datasets (`loop.train`'s
    `focus`), self-training refreshes their targets only, and the other tasks
    learn to keep the warm model's outputs (:func:`keep_targets`).
    """
    root = Path(checkpoint_dir) if checkpoint_dir else None
    config = resolve_config(config, tasks)  # before the rounds scale lr
    results: list[TrainResult] = []
    stage_tasks: Sequence[TaskData] = tasks
    offset = 0
    tokens: dict[str, Tokenized] = {}
    stages = stage_count(config, focused=focus is not None)
    if focus is not None:
        tasks = keep_targets(model, tokenizer, tasks, focus, config, tokens)  # the warm model's, before any stage
    last_stage = -1  # the last stage run (or found done): the clean stage comes after it
    for stage in range(stages):
        cfg = config if stage == 0 else config.replace(
            epochs=config.self_train_epochs, max_steps=None, lr=config.lr * config.self_train_lr_scale,
            head_lr=config.head_lr * config.self_train_lr_scale, uncovered_weight=0.0)
        if focus is not None:
            # an explicit max_steps still caps stage 0; the encoder moves gently (warm_lr_scale)
            cfg = cfg.replace(epochs=warm_epochs(tasks, focus, config), lr=cfg.lr * config.warm_lr_scale)
        sdir = root / f"stage-{stage}" if root else None
        # (stage `stages` is the clean stage's folder when there is one: hand_stage_tasks)
        later_done = resume and root is not None and any(
            ckpt.CheckpointDir(root / f"stage-{s}").latest() is not None for s in range(stage + 1, stages + 1))
        if stage > 0:
            stage_tasks = refresh_targets(model, tokenizer, tasks, threshold=config.self_train_threshold,
                                          batch_size=config.eval_batch_size, max_length=config.max_length,
                                          tokens=tokens, only=focus) if not later_done else tasks
            if not later_done and not any(t.covered[t.split == "train"].any() for t in stage_tasks
                                          if t.probs is not None and (focus is None or t.name in focus)):
                break  # no prediction is confident enough to learn from: later rounds would see the same
        last_stage = stage
        if later_done:
            # a later stage has begun: this one finished; its final weights seed the next stage's targets
            last = ckpt.CheckpointDir(sdir).latest()
            model.load_state_dict(ckpt.load_weights(last), strict=True)
            offset += int(ckpt.read_manifest(last)["step"])
            continue
        shifted = None
        if on_step is not None:
            base = offset
            shifted = lambda s, base=base: on_step(replace(s, step=s.step + base))  # noqa: E731
        res = train(model, tokenizer, stage_tasks, cfg, checkpoint_dir=sdir, resume=resume, on_step=shifted,
                    meta={**(meta or {}), "stage": stage}, progress=progress, tokens=tokens or None,
                    focus=focus)
        tokens = res.tokens
        offset += res.steps
        results.append(res)
        if on_stage_end is not None:
            on_stage_end(stage, res)
    hand = hand_stage_tasks(tasks, focus, config)
    if hand is not None:  # the clean stage: hand-labelled rows alone, at the first stage's rates
        stage = last_stage + 1
        sdir = root / f"stage-{stage}" if root else None
        cfg = config.replace(epochs=config.hand_epochs, max_steps=None, uncovered_weight=0.0)
        shifted = None
        if on_step is not None:
            shifted = lambda s, base=offset: on_step(replace(s, step=s.step + base))  # noqa: E731
        res = train(model, tokenizer, hand, cfg, checkpoint_dir=sdir, resume=resume, on_step=shifted,
                    meta={**(meta or {}), "stage": stage, "hand": True}, progress=progress, tokens=tokens or None)
        results.append(res)
        if on_stage_end is not None:
            on_stage_end(stage, res)
    return results
