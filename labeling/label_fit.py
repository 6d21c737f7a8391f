"""`label fit`: probabilistic labels for a task from its current label matrix (applied first if stale).

Flat fits (majority vote, the learned label model, plus the text view) and the
hierarchical fit over a whole task tree. Each writes a probabilistic-labels
file atomically and records it as the task's next version through the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from mothermodel.defaults import DEFAULT_SEED
from mothermodel.errors import UserError
from mothermodel.inputs import as_text
from mothermodel.labeling import label_files
from mothermodel.labeling.apply.config import ApplyConfig
from mothermodel.labeling.apply.core import progress_bar
from mothermodel.labeling.label_apply import DatasetCache, apply_and_read
from mothermodel.labeling import slices
from mothermodel.labeling.metrics import metrics, split_metrics, splits_in_order
from mothermodel.labeling.model.base import DEFAULT_USE_DEV
from mothermodel.labeling.model.baselines import MajorityVoter
from mothermodel.labeling.model.hierarchy import HierarchicalLabelModel, HierarchyConfig, TaskNode
from mothermodel.labeling.model.label_model import LabelModel, LabelModelConfig
from mothermodel.labeling.model.selection import select_on_valid
from mothermodel.labeling.model.textview import TextViewConfig, apply_text_view, fit_rows_of
from mothermodel.labeling.model.votes import one_hot_where, tie_break
from mothermodel.registry import gold as gold_rule
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.datasets import input_texts, split_column
from mothermodel.registry.records import DatasetRecord, ProbLabelsRecord, Snapshot, TaskRecord

MODELS = ("majority", "label-model", "hierarchical")
TEXT_VIEW_OFF = "off (--no-text-view)"  # the text view's report when the fit was asked for votes only


@dataclass(frozen=True)
class FitSettings:
    """What a `label fit` was asked for (defaults: `fit`'s); `watch` repeats a task's last ones."""

    model: str = "label-model"
    seed: int = DEFAULT_SEED
    use_dev: bool | None = None
    text_view: bool = True
    select_on: str | None = None

    def kwargs(self) -> dict[str, Any]:
        """As `fit` (and `Registry.label_fit`) take them."""
        return {"model": self.model, "seed": self.seed, "use_dev": self.use_dev, "text_view": self.text_view,
                "select_on": self.select_on}


def last_settings(store: AbstractStore, task: str) -> FitSettings:
    """The settings of TASK's newest label fit (the defaults when it was never fit)."""
    rec = store.latest_prob_labels(task, fresh=False)
    if rec is None:
        return FitSettings()
    cfg = rec.config or {}
    use_dev = None
    if "label_model_uses_dev" in cfg:  # the label model's own use; selection on valid is decided anew
        use_dev = bool(cfg["label_model_uses_dev"])
    elif "uses_dev_labels" in cfg:  # a fit from before selection was the default
        use_dev = bool(cfg["uses_dev_labels"]) and "selected" not in cfg
    if "text_view_enabled" in cfg:
        text_view = bool(cfg["text_view_enabled"])
    else:  # recorded before the setting was: its report said so
        view = cfg.get("text_view")
        text_view = not (isinstance(view, dict) and view.get("reason") == TEXT_VIEW_OFF)
    return FitSettings(model=cfg.get("model", rec.model), seed=cfg.get("seed", DEFAULT_SEED), use_dev=use_dev,
                       text_view=text_view, select_on="none" if cfg.get("select_on") == "none" else None)


@dataclass
class FitOutcome:
    """What one `label fit` recorded: the new probabilistic-labels version and its figures.

    `settings` is what was asked for (``settings.text_view`` False after ``--no-text-view``); `view` is the
    text view's report (label-model fits; JSON "text_view"). `to_json()` is `label fit --json`'s shape."""

    task: str
    version: int
    model: str
    label_matrix_version: int
    uses_dev_labels: bool
    metrics: dict[str, dict[str, Any]]
    apply: list[dict[str, Any]]
    settings: FitSettings = field(default_factory=FitSettings)
    view: dict[str, Any] | None = None  # flat fits only (hierarchical: None)
    coverage: float | None = None  # flat fits only
    tree: list[dict[str, Any]] | None = None  # hierarchical: every task of the tree, root first
    selected: dict[str, Any] | None = None
    label_model_fit: dict[str, Any] | None = None
    metrics_votes_only: dict[str, Any] | None = None
    metrics_gold_free: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    hand_labels: dict[str, Any] | None = None  # {version, rows, valid_rows}: the task's hand labels, if any
    slices: dict[str, Any] | None = None  # per-slice figures (labeling/slices.py), when the task has slices
    dvc: str | None = None

    @property
    def text_view(self) -> bool:
        """Whether the text view was asked for (not whether it was used: see ``view["used"]``)."""
        return self.settings.text_view

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task, "version": self.version, "model": self.model,
                               "label_matrix_version": self.label_matrix_version,
                               "uses_dev_labels": self.uses_dev_labels}
        if self.tree is None:
            out |= {"text_view": self.view, "metrics": self.metrics, "coverage": self.coverage, "apply": self.apply}
        else:
            out |= {"metrics": self.metrics, "tree": self.tree, "apply": self.apply}
        for k in ("selected", "label_model_fit", "metrics_votes_only", "metrics_gold_free", "hand_labels", "slices"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.dvc:
            out["dvc"] = self.dvc
        return out


@dataclass
class FitInputs:
    """One task's label matrix and dataset columns, dense and aligned to dataset rows."""

    task: TaskRecord
    dataset: DatasetRecord
    table: Any  # the dataset's Arrow table
    L: np.ndarray  # (rows, sources) int16, -1 = abstain
    matrix_version: int
    split: np.ndarray  # per-row split name
    train: np.ndarray  # rows a label model fits on
    gold: np.ndarray | None  # evaluation (and, with dev labels, the valid split's); -1 on hand-labelled rows
    gold_warning: str | None = None  # the dataset's gold field does not fit the task's classes: not used
    hand: np.ndarray | None = None  # (rows,) the hand label's class, -1 where none; None: the task has none

    @property
    def hand_rows(self) -> np.ndarray:
        return self.hand >= 0 if self.hand is not None else np.zeros(len(self.L), bool)

    def hand_report(self) -> dict[str, Any] | None:
        """What the fit knew of the task's hand labels (None: it has none)."""
        if self.hand is None:
            return None
        s = self.task.hand_source
        rows = self.hand_rows
        return {"version": s.version if s else None, "rows": int(rows.sum()),
                "valid_rows": int((rows & (self.split == "valid")).sum())}


def read_inputs(store: AbstractStore, data: DatasetCache, name: str, snap: Snapshot | None = None) -> FitInputs:
    """TASK's latest label matrix, dense, with its dataset's splits and gold labels."""
    snap = snap or store.snapshot()
    t = snap.tasks[name]
    ds = snap.datasets[t.dataset]
    m = snap.latest_matrix[name]
    table = data.table(t.dataset)
    names = t.source_names()
    L = label_files.dense(label_files.read_checked(store.ws, m.path, m.content_hash), ds.num_rows, names)
    split, train = _splits(table, ds)
    gold, warning = gold_rule.resolve(table, t, ds)  # checked against the task's classes (registry/gold.py)
    hand = None
    if t.hand_source is not None:  # its column is clean labels, not votes: out of L
        j = names.index(t.hand_source.name)
        hand, L = L[:, j].astype(np.int64), np.delete(L, j, axis=1)
        if gold is not None:  # a row trained on is never scored
            gold = np.where(hand >= 0, -1, gold)
    return FitInputs(t, ds, table, L, m.version, split, train, gold, warning, hand)


def _splits(table, ds: DatasetRecord) -> tuple[np.ndarray, np.ndarray]:
    """Each row's split name, and the rows a label model fits on: the train split,
    or every row's weak labels when no row is in a split called 'train'."""
    split = split_column(table, ds)
    train = split == "train"
    return split, (train if train.any() else np.ones(ds.num_rows, bool))


def _use_dev(use_dev: bool | None) -> bool:
    return bool(DEFAULT_USE_DEV if use_dev is None else use_dev)


def fit(store: AbstractStore, task: str, model: str = "label-model", use_dev: bool | None = None,
        seed: int = DEFAULT_SEED, apply_config: ApplyConfig | None = None, text_view: bool = True,
        select_on: str | None = None) -> FitOutcome:
    """Probabilistic labels for TASK from its current label matrix (applied first if stale).

    With ``model='label-model'`` and ``text_view`` (default) on a dataset with a text
    field, the label model's posteriors are combined with a cross-fitted text
    classifier (labeling/model/textview.py); the votes-only figures are reported too.
    Selection (label-model only, labeling/model/selection.py): whichever of majority vote,
    the label model and the label model + text view is most accurate on the valid
    split's gold labels is kept, so a fit is never below majority vote on valid.
    ``select_on=None`` (default) selects when the valid split has gold labels and keeps
    the gold-free default otherwise; ``'valid'`` insists (exit 2 without gold);
    ``'none'`` never selects. Either way ``uses_dev_labels`` says whether gold valid
    labels were used, and a selected fit also reports the gold-free default's figures
    (``metrics_gold_free``).
    """
    if model not in MODELS:
        raise UserError(f"--model: must be one of {', '.join(MODELS)}")
    if select_on not in (None, "valid", "none"):
        raise UserError(f"--select-on: must be 'valid' or 'none', got {select_on!r}")
    if select_on == "valid" and model != "label-model":
        raise UserError("--select-on: only with --model label-model")
    if model == "hierarchical":
        return fit_tree(store, task, use_dev=use_dev, seed=seed, apply_config=apply_config)
    _has_sources(store, task)
    applied, data = apply_and_read(store, [task], apply_config, isolate=False)
    x = read_inputs(store, data, task)
    k = x.task.num_classes
    config: dict[str, Any] = {"model": model, "seed": seed}
    probs, dev_used = _flat_posteriors(x, model, use_dev, seed, config)
    config["label_model_uses_dev"] = dev_used  # the model's own use of dev labels, apart from selection
    view: dict[str, Any] = {"used": False}
    votes_metrics = gold_free = None
    selected = None
    if model == "label-model":
        progress = (apply_config or ApplyConfig()).progress
        votes_probs = probs
        probs, view = with_text_view(x, probs, seed, text_view, progress)
        config["text_view"] = view
        config["text_view_enabled"] = bool(text_view)  # the setting, for `watch` to repeat (last_settings)
        if view["used"]:
            votes_metrics = split_metrics(x.gold, tie_break(votes_probs, seed), x.split, k)
        has_dev = x.gold is not None and bool(((x.split == "valid") & (x.gold >= 0)).any())
        if select_on == "valid" or (select_on is None and has_dev):
            gold_free = split_metrics(x.gold, tie_break(probs, seed), x.split, k)
            # a few hand labels anchoring the label model must not make it worse on valid: the fit without
            # that anchor is a candidate too
            extra = {"label-model-without-hand-anchor": _flat_posteriors(replace(x, hand=None), model, use_dev, seed,
                                                                          {})[0]} if x.hand_rows.any() else None
            probs, selected = _select(x, "valid", seed, votes_probs, probs if view["used"] else None, extra)
            selected["automatic"] = select_on is None
            dev_used = True
            config["selected"] = selected
        config["select_on"] = "none" if select_on == "none" else "valid"
    hand = x.hand_report()
    if hand is not None:
        config["hand_labels"] = hand
        dev_used = dev_used or hand["valid_rows"] > 0  # valid rows labelled by hand are valid labels used
    config["uses_dev_labels"] = dev_used
    preds = tie_break(probs, seed)  # hand-labelled rows: set by record_probs (their gold is out of every figure)
    out_metrics = split_metrics(x.gold, preds, x.split, k)
    rec = record_probs(store, x, model, probs, preds, out_metrics, config)
    note = label_files.dvc_track(store.ws)
    res = FitOutcome(task, rec.version, model, x.matrix_version, dev_used, out_metrics, applied["tasks"],
                     hand_labels=hand, settings=FitSettings(model, seed, use_dev, bool(text_view), select_on), view=view,
                     coverage=float((x.L >= 0).any(axis=1).mean()) if len(x.L) else 0.0, selected=selected,
                     label_model_fit=config.get("label_model_fit"), metrics_votes_only=votes_metrics,
                     metrics_gold_free=gold_free, warnings=[x.gold_warning] if x.gold_warning else [], dvc=note or None)
    res.slices = slice_report(store, x, preds, res.warnings)
    if res.coverage == 0.0:  # every label is the tie-break's guess: say so rather than fit quietly
        res.warnings.append(
            f"{task}: no source voted on any row (coverage 0.0): the labels are guesses; "
            "see the faults of `mothermodel label apply` and `mothermodel label analyze`")
    return res


def slice_report(store: AbstractStore, x: FitInputs, preds: np.ndarray, warnings: list[str]) -> dict[str, Any] | None:
    """`label fit --json`'s "slices": per slice and split, the labels' accuracy with its interval (None: the task
    has no slices). Slices changed since the membership was computed are named, not measured."""
    m = slices.read(store, x.task, x.dataset)
    if m is None:
        if x.task.slices:
            warnings.append(f"{x.task.name}: its slices have no membership yet: run `mothermodel label apply`")
        return None
    if m.stale:
        warnings.append(f"{x.task.name}: slice(s) {', '.join(m.stale)} changed since their membership was computed: "
                        "not measured; run `mothermodel label apply`")
    return {**m.to_json(), "metrics": slices.metrics(m, x.gold, preds, x.split)}


def _has_sources(store: AbstractStore, task: str) -> None:
    """A task without sources has no votes to fit labels from: exit 2 before anything is written."""
    try:
        t = store.task(task)
    except UserError:
        return  # an unknown task: apply_and_read names it
    if not [s for s in t.sources if s.kind != "hand"]:  # hand labels are clean labels, not votes
        raise UserError(f"TASK: task {task} has no sources to fit labels from; add LFs or columns to its spec "
                        "and resubmit it with --replace")


def _select(x: FitInputs, split: str, seed: int, votes_probs: np.ndarray,
            view_probs: np.ndarray | None, extra: dict[str, np.ndarray] | None = None
            ) -> tuple[np.ndarray, dict[str, Any]]:
    """`--select-on valid`: the candidate most accurate on the split's gold labels, and what was chosen on."""
    if x.gold is None:
        raise UserError(f"--select-on {split}: task {x.task.name} has no gold labels")
    candidates = {"majority": MajorityVoter(x.task.num_classes, seed=seed).predict_proba(x.L),
                  "label-model": votes_probs}
    if view_probs is not None:
        candidates["label-model+text-view"] = view_probs
    candidates.update(extra or {})
    try:
        sel = select_on_valid(candidates, x.gold, x.split, seed, select_split=split)
    except ValueError as e:
        raise UserError(str(e)) from None
    return sel.pop("probs"), sel


def _flat_posteriors(x: FitInputs, model: str, use_dev: bool | None, seed: int,
                     config: dict[str, Any]) -> tuple[np.ndarray, bool]:
    """Majority vote or the learned label model over the votes; returns (posteriors, dev labels used)."""
    k = x.task.num_classes
    if model == "majority":
        return MajorityVoter(k).predict_proba(x.L), False
    dev = (x.split == "valid") & (x.gold >= 0) if x.gold is not None else np.zeros(len(x.L), bool)
    dev_used = _use_dev(use_dev) and bool(dev.any())
    cfg = LabelModelConfig(seed=seed)
    lm = LabelModel(k, cfg)
    # Hand labels always anchor the model's class balance and LF accuracies (MeTaL's semi-supervised use);
    # valid's gold labels only with dev labels on (hand-labelled rows are out of x.gold: no row counts twice).
    anchor = (dev if dev_used else np.zeros(len(x.L), bool)) | x.hand_rows
    if anchor.any():
        y = np.where(x.hand_rows, x.hand if x.hand is not None else -1, x.gold if x.gold is not None else -1)
        lm.fit(x.L[x.train], L_dev=x.L[anchor], Y_dev=y[anchor])
    else:
        lm.fit(x.L[x.train])
    config["label_model"] = dict(vars(cfg))
    config["label_model_fit"] = {"overruled": round(lm.overruled_, 6), "balance_fallback": lm.balance_fallback_,
                                 "class_prior": [round(float(p), 6) for p in lm.class_prior_],
                                 "n_iter": lm.n_iter_, "lf_groups": lm.lf_groups_}
    return lm.predict_proba(x.L), dev_used


def with_text_view(x: FitInputs, probs: np.ndarray, seed: int, enabled: bool,
                   progress: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """The label model's posteriors combined with the (gated) text view, when there is text to read."""
    cfg = TextViewConfig(seed=seed)
    covered = int(fit_rows_of(x.L, x.train).sum())
    task_input = x.task.input_for(x.dataset)
    why = (TEXT_VIEW_OFF if not enabled else
           "the dataset has no text field" if task_input is None else None)
    if why:
        return probs, {"used": False, "reason": why}
    if task_input.kind == "text":
        texts = x.table.column(task_input.fields[0])
    else:  # the task's own input (a pair joined, marked spans), as the end model reads it
        texts = pa.array([as_text(t) for t in input_texts(x.table, task_input)], pa.string())
    # A bar when the fold fits take seconds (about 1 s per 1,000 rows on 2 cores).
    n_fit = covered if cfg.max_fit_rows is None else min(covered, cfg.max_fit_rows)
    bar = progress_bar(cfg.folds, f"{x.task.name}: text view, fold models on {n_fit} rows",
                       progress and n_fit >= 2_000, unit="folds", min_total=1)
    try:  # table row i is _row i, as in L
        combined, report = apply_text_view(texts, x.L, probs, x.train, cfg, on_fold=bar.advance)
    finally:
        bar.close()
    if report["used"]:
        report = {"used": True, "text_field": task_input.fields[0], "input": task_input.describe(),
                  **{k: v for k, v in report.items() if k != "used"}}
    return combined, report


def record_probs(store: AbstractStore, x: FitInputs, model: str, probs: np.ndarray, preds: np.ndarray,
                 out_metrics: dict, config: dict, extra: dict[str, np.ndarray] | None = None) -> ProbLabelsRecord:
    """Write a probabilistic-labels file for every dataset row and record it as the task's next version
    (with a `hand` column, the hand label's class or -1, when the task has hand labels)."""
    if x.hand is not None:  # what the trainer learns on hand-labelled rows: their hand label
        probs = one_hot_where(probs, x.hand)
        preds = np.where(x.hand_rows, x.hand, preds)
        extra = {**(extra or {}), "hand": x.hand}
    rows = x.table.column("_row").to_numpy()
    path, digest = label_files.write_probs(store.ws, x.task.name, rows, probs[rows], preds[rows], list(x.task.classes),
                                           extra={k: v[rows] for k, v in (extra or {}).items()})
    return store.record_prob_labels(x.task, label_matrix_version=x.matrix_version, model=model, path=path,
                                    content_hash=digest, metrics=out_metrics, config=config)


# --- the hierarchical fit over a task tree -------------------------------------------------


def fit_tree(store: AbstractStore, task: str, use_dev: bool | None = None, seed: int = DEFAULT_SEED,
             apply_config: ApplyConfig | None = None) -> FitOutcome:
    """The hierarchical label model over TASK's whole task tree: consistent labels for every task in it."""
    tree = store.task_tree(task)
    if len(tree) == 1:
        raise UserError(f"--model: task {task} is in no task tree (hierarchical needs tasks with parent and parent_class)")
    applied, data = apply_and_read(store, tree, apply_config, isolate=False)
    snap = store.snapshot()
    inputs = {name: read_inputs(store, data, name, snap) for name in tree}
    hlm, dev_used, cfg = _fit_hierarchy(inputs, tree, use_dev, seed)
    L = {name: x.L for name, x in inputs.items()}
    out = hlm.predict_all(L)
    consistent = hlm.predict(L, tie_break_seed=seed)
    results, warnings = [], [x.gold_warning for x in inputs.values() if x.gold_warning]
    for name in tree:
        x = inputs[name]
        cond = out["conditional"][name]
        pred = tie_break(cond, seed)
        mets = _tree_metrics(x, pred, consistent[name])
        config = {"model": "hierarchical", "seed": seed, "tree": tree, "uses_dev_labels": dev_used,
                  "hierarchy": dict(vars(cfg))}
        rec = record_probs(store, x, "hierarchical", cond, pred, mets, config,
                           extra={"applicable": out["applicable"][name]})
        results.append({"task": name, "version": rec.version, "label_matrix_version": x.matrix_version, "metrics": mets})
        sl = slice_report(store, x, pred, warnings)  # the figures `metrics` reports: the conditional prediction
        if sl is not None:
            results[-1]["slices"] = sl
    note = label_files.dvc_track(store.ws)
    me = next(r for r in results if r["task"] == task)
    return FitOutcome(task, me["version"], "hierarchical", me["label_matrix_version"], dev_used, me["metrics"],
                      applied["tasks"], settings=FitSettings("hierarchical", seed, use_dev), tree=results,
                      warnings=warnings, slices=me.get("slices"), dvc=note or None)


def _fit_hierarchy(inputs: dict[str, FitInputs], tree: list[str], use_dev: bool | None, seed: int):
    root = inputs[tree[0]]
    nodes = []
    for i, name in enumerate(tree):
        t = inputs[name].task
        parent_idx = inputs[t.parent].task.classes.index(t.parent_class) if i else None
        nodes.append(TaskNode(name, t.num_classes, t.parent if i else None, parent_idx))
    cfg = HierarchyConfig(seed=seed)
    hlm = HierarchicalLabelModel(nodes, cfg)
    gold = {n: x.gold for n, x in inputs.items() if x.gold is not None}
    train, dev = root.train, root.split == "valid"
    dev_used = _use_dev(use_dev) and bool(gold) and bool(dev.any())
    L = {n: x.L for n, x in inputs.items()}
    if dev_used:
        hlm.fit({k: v[train] for k, v in L.items()},
                dev=({k: v[dev] for k, v in L.items()}, {k: v[dev] for k, v in gold.items()}))
    else:
        hlm.fit({k: v[train] for k, v in L.items()})
    return hlm, dev_used, cfg


def _tree_metrics(x: FitInputs, pred: np.ndarray, consistent: np.ndarray) -> dict[str, dict[str, float]]:
    mets: dict[str, dict[str, float]] = {}
    if x.gold is None:
        return mets
    for s in [s for s in splits_in_order(x.split) if s in ("train", "valid", "test")]:
        mask = (x.split == s) & (x.gold >= 0)
        if mask.any():
            mets[s] = metrics(x.gold[mask], pred[mask], x.task.num_classes)
            # Top-down consistent labels: a child counts as wrong where its parent was mispredicted.
            mets[s]["accuracy_consistent"] = float((consistent[mask] == x.gold[mask]).mean())
    return mets
