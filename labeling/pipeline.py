"""Labeling runs over the registry: `label apply`, `label fit`, `label log`, `label diff`.

Each run reads what it needs from the registry in one short read, does the
long work with the registry closed, writes its files atomically, and records
them in one short write transaction: no labeling run holds the registry open.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from mothermodel.errors import CommandFailed, UserError
from mothermodel.labeling import store
from mothermodel.labeling.apply import Applied, ApplyConfig, LFReport, _progress, apply_lfs
from mothermodel.labeling.lf import KeywordLF, LabelingFunction, RegexLF, ThresholdLF
from mothermodel.labeling.votes import tie_break as _tie_break

TIE_BREAK_SEED = 123
DECLARATIVE = {"keyword": KeywordLF, "regex": RegexLF, "threshold": ThresholdLF}


class LabelingFaults(CommandFailed):
    """`label apply --strict` found LFs that failed on some rows (exit 1)."""

    exit_code = 1


def _now():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _TaskState:
    name: str
    dataset: str
    classes: list[str]
    spec_source: str | None
    spec_origin: str | None
    fingerprint: str
    parent: str | None = None
    parent_class: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    latest_matrix: dict[str, Any] | None = None
    latest_probs: dict[str, Any] | None = None


def _read_state(reg) -> tuple[dict[str, _TaskState], dict[str, dict[str, Any]], list[tuple[str, str, str]]]:
    with reg.read() as con:
        tasks = {
            r[0]: _TaskState(r[0], r[1], list(r[2]), r[3], r[4], r[5], r[6], r[7])
            for r in con.execute(
                "SELECT name, dataset, classes, spec_source, spec_origin, fingerprint, parent, parent_class "
                "FROM tasks").fetchall()
        }
        for t, n, k, ref, code, code_hash, v in con.execute(
            "SELECT task, name, kind, ref, code, code_hash, version FROM sources ORDER BY task, kind, name"
        ).fetchall():
            tasks[t].sources.append({"name": n, "kind": k, "ref": ref, "code": code, "code_hash": code_hash, "version": v})
        for t, v, path, h, key, sv, n in con.execute(
            "SELECT task, version, path, content_hash, inputs_key, source_versions, num_rows FROM label_matrices "
            "QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1"
        ).fetchall():
            if t in tasks:
                tasks[t].latest_matrix = {"version": v, "path": path, "content_hash": h, "inputs_key": key,
                                          "source_versions": json.loads(sv), "num_rows": n}
        for t, v, path, h, fp, lmv in con.execute(
            "SELECT task, version, path, content_hash, task_fingerprint, label_matrix_version FROM prob_labels "
            "QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1"
        ).fetchall():
            if t in tasks:
                tasks[t].latest_probs = {"version": v, "path": path, "content_hash": h, "fingerprint": fp,
                                         "label_matrix_version": lmv}
        datasets = {
            r[0]: {"path": r[1], "content_hash": r[2], "num_rows": r[3], "columns": list(r[4]),
                   "split_field": r[5], "gold_field": r[6], "text_field": r[7]}
            for r in con.execute(
                "SELECT name, path, content_hash, num_rows, columns, split_field, gold_field, text_field "
                "FROM datasets").fetchall()
        }
        edges = con.execute("SELECT upstream, downstream, kind FROM edges").fetchall()
    return tasks, datasets, edges


class _Datasets:
    """Dataset tables, read once per run and checked against their recorded hash."""

    def __init__(self, reg, datasets):
        self.reg, self.meta, self.cache = reg, datasets, {}

    def table(self, name: str):
        if name not in self.cache:
            m = self.meta[name]
            self.cache[name] = store.read_checked(self.reg.ws, m["path"], m["content_hash"])
        return self.cache[name]


def _build_lfs(t: _TaskState) -> dict[str, LabelingFunction]:
    """The task's LFs as submitted: declarative ones from their recorded parameters,
    Python ones by re-running the stored spec module."""
    from mothermodel.registry.spec import lfs_from_source

    lfs: dict[str, LabelingFunction] = {}
    py_needed = []
    for s in t.sources:
        if s["kind"] != "lf":
            continue
        try:
            decl = json.loads(s["code"]) if s["code"] and s["code"].startswith("{") else None
        except ValueError:
            decl = None
        if decl and decl.get("kind") in DECLARATIVE:
            params = {k: v for k, v in decl.items() if k != "kind"}
            lfs[s["name"]] = DECLARATIVE[decl["kind"]](name=s["name"], **params)
        else:
            py_needed.append(s["name"])
    if py_needed:
        if not t.spec_source:
            raise UserError(f"task {t.name}: its spec's code is not in the registry; resubmit it with --replace")
        module_lfs = lfs_from_source(t.spec_source, t.spec_origin or f"<task {t.name}>")
        for n in py_needed:
            if n not in module_lfs:
                raise UserError(f"task {t.name}: LF {n!r} not found in its stored spec")
            lfs[n] = module_lfs[n]
    return lfs


def _column_entries(table, sources: Sequence[tuple[str, str]], cardinality: int) -> Applied:
    """Weak labels already in dataset columns; sources: (source name, column) pairs."""
    rows, cidx, labels, reports = [], [], [], {}
    row_ids = table.column("_row").to_numpy()
    for j, (name, c) in enumerate(sources):
        v = table.column(c).to_numpy(zero_copy_only=False)
        v = np.where(np.isnan(v), -1, v) if v.dtype.kind == "f" else v
        v = v.astype(np.int64)
        bad = (v < -1) | (v >= cardinality)
        rep = LFReport(name)
        if bad.any():
            rep.out_of_range = int(bad.sum())
            i = int(np.argmax(bad))
            rep.first_row, rep.first_error = int(row_ids[i]), f"column value {v[i]} outside 0..{cardinality - 1} or -1"
        keep = (v >= 0) & ~bad
        rows.append(row_ids[keep]); cidx.append(np.full(int(keep.sum()), j, np.int32)); labels.append(v[keep])
        reports[name] = rep
    if not sources:
        return Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), [], {})
    return Applied(np.concatenate(rows).astype(np.int64), np.concatenate(cidx), np.concatenate(labels).astype(np.int16),
                   [name for name, _ in sources], reports)


def apply(reg, task_names: Sequence[str] | None = None, config: ApplyConfig | None = None,
          force: bool = False, strict: bool = False, track: bool = True) -> dict[str, Any]:
    """Run every stale source of the given tasks (default: all) in DAG order; record new versions."""
    return _apply(reg, task_names, config, force, strict, track)[0]


def _apply(reg, task_names, config, force=False, strict=False, track=True) -> tuple[dict[str, Any], _Datasets]:
    """`apply`, also handing back the datasets it read (and hash-checked), so `fit` reads them once."""
    import networkx as nx

    config = config or ApplyConfig()
    tasks, datasets, edges = _read_state(reg)
    unknown = [n for n in task_names or [] if n not in tasks]
    if unknown:
        raise UserError(f"TASK: unknown task {unknown[0]!r}")
    targets = list(task_names) if task_names else sorted(tasks)
    # Upstream tasks whose outputs are sources come first (their labels are inputs).
    g = nx.DiGraph()
    g.add_nodes_from(tasks)
    g.add_edges_from((u, d) for u, d, k in edges if k == "task_output")
    needed = set(targets)
    for t in targets:
        needed |= nx.ancestors(g, t)
    order = [n for n in nx.topological_sort(g.subgraph(needed))]
    lfs_by_task = {n: _build_lfs(tasks[n]) for n in order}  # fail before any work
    data = _Datasets(reg, datasets)
    outputs: dict[str, tuple[str, np.ndarray]] = {}  # task -> (identity, hard labels per row)
    results = []
    for name in order:
        t = tasks[name]
        ds = datasets[t.dataset]
        k = len(t.classes)
        ident: dict[str, Any] = {}
        for s in t.sources:
            base = {"kind": s["kind"], "version": s["version"], "code_hash": s["code_hash"], "ref": s["ref"]}
            if s["kind"] == "task_output":
                up = s["ref"]
                if up not in outputs:
                    outputs[up] = _task_output(reg, tasks[up], data, datasets)
                base["upstream"] = outputs[up][0]
            ident[s["name"]] = base
        key = _h({"dataset": ds["content_hash"], "sources": ident})
        prev = t.latest_matrix
        if prev and prev["inputs_key"] == key and not force:
            results.append({"task": name, "version": prev["version"], "status": "up to date", "faults": []})
            continue
        table = data.table(t.dataset)
        reuse = set()
        if prev and not force:
            reuse = {n for n, i in ident.items() if prev["source_versions"].get(n) == i}
        todo = [s for s in t.sources if s["name"] not in reuse]
        parts: list[Applied] = []
        parts.append(_column_entries(table, [(s["name"], s["ref"]) for s in todo if s["kind"] == "column"], k))
        lf_sources = [s for s in todo if s["kind"] == "lf"]
        if lf_sources:
            chosen = [lfs_by_task[name][s["name"]] for s in lf_sources]
            if config.engine == "dask":
                from mothermodel.labeling.dask_apply import apply_lfs_dask

                # Workers read the dataset's Parquet file themselves (a path all of them can reach).
                parts.append(apply_lfs_dask(str(reg.ws.home / ds["path"]), chosen, k, config,
                                            client=config.scheduler))
            else:
                parts.append(apply_lfs(table, chosen, k, config, label=f"{name}: {len(lf_sources)} LFs"))
        for s in todo:
            if s["kind"] == "task_output":
                parts.append(_map_output(t, s, tasks[s["ref"]], outputs[s["ref"]][1], table))
            elif s["kind"] == "model":
                rep = LFReport(s["name"], first_error="model sources are not applied yet: all abstain")
                parts.append(Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16),
                                     [s["name"]], {s["name"]: rep}))
        if reuse:
            old = store.read_checked(reg.ws, prev["path"], prev["content_hash"])
            src = old.column("source").combine_chunks()
            names = src.dictionary.to_pylist()
            idx = src.indices.to_numpy(zero_copy_only=False)
            keep_names = [n for n in names if n in reuse]
            remap = np.array([keep_names.index(n) if n in reuse else -1 for n in names], np.int64)
            c = remap[idx]
            m = c >= 0
            parts.append(Applied(old.column("row").to_numpy()[m], c[m].astype(np.int32),
                                 old.column("label").to_numpy()[m].astype(np.int16), keep_names, {}))
        all_sources: list[str] = []
        R, C, Lb = [], [], []
        reports: dict[str, LFReport] = {}
        for p in parts:
            R.append(p.rows); C.append(p.cols + len(all_sources)); Lb.append(p.labels)
            all_sources += p.sources
            reports.update(p.reports)
        faults = [r.to_dict() for r in reports.values() if r.failed_rows or r.first_error]
        if strict and any(f["failed_rows"] for f in faults):
            worst = max(faults, key=lambda f: f["failed_rows"])
            raise LabelingFaults(f"task {name}: {len(faults)} LF(s) failed on some rows (e.g. {worst['name']}: "
                                 f"{worst['failed_rows']} rows); nothing recorded (--strict)")
        rows = np.concatenate(R) if R else np.empty(0, np.int64)
        path, digest = store.write_matrix(reg.ws, name, rows, all_sources,
                                          np.concatenate(C).astype(np.int32), np.concatenate(Lb))
        with reg.write() as con:
            v = con.execute("SELECT coalesce(max(version), 0) + 1 FROM label_matrices WHERE task = ?", [name]).fetchone()[0]
            con.execute(
                "INSERT INTO label_matrices (task, version, content_hash, path, dataset_hash, source_versions, "
                "task_fingerprint, num_rows, created_at, inputs_key, num_entries, report) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [name, v, digest, path, ds["content_hash"], json.dumps(ident, sort_keys=True), t.fingerprint,
                 ds["num_rows"], _now(), key, int(rows.size), json.dumps(faults)],
            )
        t.latest_matrix = {"version": v, "path": path, "content_hash": digest, "inputs_key": key,
                           "source_versions": ident, "num_rows": ds["num_rows"]}
        results.append({"task": name, "version": v, "status": "created", "entries": int(rows.size),
                        "recomputed": sorted(s["name"] for s in todo), "reused": sorted(reuse), "faults": faults})
    note = store.dvc_track(reg.ws) if track and any(r["status"] == "created" for r in results) else None
    out = {"tasks": [r for r in results if r["task"] in targets or r["status"] == "created"]}
    if note:
        out["dvc"] = note
    return out, data


def _task_output(reg, up: _TaskState, data: _Datasets, datasets) -> tuple[str, np.ndarray]:
    """An upstream task's hard labels per row: its latest fresh probabilistic labels,
    else a majority vote over its current label matrix."""
    n = datasets[up.dataset]["num_rows"]
    p = up.latest_probs
    if p and p["fingerprint"] == up.fingerprint:
        tbl = store.read_checked(reg.ws, p["path"], p["content_hash"])
        pred = np.full(n, -1, np.int64)
        pred[tbl.column("row").to_numpy()] = tbl.column("pred").to_numpy()
        return f"probs:{p['content_hash']}", pred
    m = up.latest_matrix
    if not m:
        raise UserError(f"task {up.name}: no labels yet; run `mothermodel label apply {up.name}` first")
    from mothermodel.labeling.votes import majority_hard

    L = store.dense(store.read_checked(reg.ws, m["path"], m["content_hash"]), n, [s["name"] for s in up.sources])
    return f"majority:{m['content_hash']}", majority_hard(L, len(up.classes), TIE_BREAK_SEED)


def _map_output(t: _TaskState, s: dict, up: _TaskState, preds: np.ndarray, table) -> Applied:
    mapping = json.loads(s["code"]) if s["code"] else {c: c for c in up.classes if c in t.classes}
    lut = np.array([t.classes.index(mapping[c]) if c in mapping else -1 for c in up.classes] + [-1], np.int64)
    rows = table.column("_row").to_numpy()
    if t.dataset != up.dataset or len(preds) != len(rows):
        rep = LFReport(s["name"], first_error=f"task {up.name} labels dataset {up.dataset}, not {t.dataset}: all abstain")
        return Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), [s["name"]], {s["name"]: rep})
    mapped = lut[preds[rows]]  # -1 (abstain) indexes the trailing -1
    keep = mapped >= 0
    return Applied(rows[keep].astype(np.int64), np.zeros(int(keep.sum()), np.int32), mapped[keep].astype(np.int16),
                   [s["name"]], {s["name"]: LFReport(s["name"])})


# --- fit -----------------------------------------------------------------------

MODELS = ("majority", "label-model", "hierarchical")


def gold_column(task: str, ds: dict[str, Any]) -> str | None:
    """A task's gold labels: column `gold_<task>` if the dataset has it, else the dataset's gold field."""
    if f"gold_{task}" in ds["columns"]:
        return f"gold_{task}"
    return ds["gold_field"]


def metrics(y_true: np.ndarray, y_pred: np.ndarray, cardinality: int) -> dict[str, float]:
    """Accuracy and macro-F1 (over classes present in gold or predictions)."""
    acc = float((y_true == y_pred).mean()) if len(y_true) else float("nan")
    f1s = []
    for c in range(cardinality):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        fp = int(((y_pred == c) & (y_true != c)).sum())
        fn = int(((y_pred != c) & (y_true == c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": acc, "macro_f1": float(np.mean(f1s)) if f1s else float("nan"), "n": int(len(y_true))}


def _splits(table, ds: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's split name, and the rows a label model fits on: the train split,
    or every row's weak labels when no row is in a split called 'train'."""
    n = ds["num_rows"]
    split = (np.asarray(table.column(ds["split_field"]).to_pylist(), dtype=object)
             if ds["split_field"] else np.full(n, "train", dtype=object))
    train = split == "train"
    return split, (train if train.any() else np.ones(n, bool))


def _use_dev(use_dev: bool | None) -> bool:
    from mothermodel.labeling.model import DEFAULT_USE_DEV

    return bool(DEFAULT_USE_DEV if use_dev is None else use_dev)


def _record_probs(reg, task: _TaskState, model: str, probs: np.ndarray, preds: np.ndarray, rows: np.ndarray,
                  out_metrics: dict, config: dict, extra: dict[str, np.ndarray] | None = None) -> int:
    """Write a probabilistic-labels file and record it as TASK's next version; returns the version."""
    path, digest = store.write_probs(reg.ws, task.name, rows, probs, preds, task.classes, extra=extra)
    with reg.write() as con:
        v = con.execute("SELECT coalesce(max(version), 0) + 1 FROM prob_labels WHERE task = ?", [task.name]).fetchone()[0]
        con.execute(
            "INSERT INTO prob_labels (task, version, label_matrix_version, model, content_hash, path, "
            "task_fingerprint, metrics, created_at, config) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [task.name, v, task.latest_matrix["version"], model, digest, path, task.fingerprint,
             json.dumps(out_metrics), _now(), json.dumps(config, default=str)],
        )
    return v


def fit(reg, task: str, model: str = "label-model", use_dev: bool | None = None, seed: int = TIE_BREAK_SEED,
        apply_config: ApplyConfig | None = None, text_view: bool = True) -> dict[str, Any]:
    """Probabilistic labels for TASK from its current label matrix (applied first if stale).

    With ``model='label-model'`` and ``text_view`` (default) on a dataset with a text
    field, the label model's posteriors are combined with a cross-fitted text
    classifier (labeling/textview.py); the votes-only figures are reported too.
    """
    if model not in MODELS:
        raise UserError(f"--model: must be one of {', '.join(MODELS)}")
    if model == "hierarchical":
        return fit_tree(reg, task, use_dev=use_dev, seed=seed, apply_config=apply_config)
    applied, data = _apply(reg, [task], apply_config)
    tasks, datasets, _ = _read_state(reg)
    t = tasks[task]
    ds = datasets[t.dataset]
    m = t.latest_matrix
    table = data.table(t.dataset)
    n, k = ds["num_rows"], len(t.classes)
    sources = [s["name"] for s in t.sources]
    L = store.dense(store.read_checked(reg.ws, m["path"], m["content_hash"]), n, sources)
    split, train = _splits(table, ds)
    gcol = gold_column(task, ds)
    gold = table.column(gcol).to_numpy(zero_copy_only=False).astype(np.int64) if gcol else None
    config: dict[str, Any] = {"model": model, "seed": seed}
    if model == "majority":
        from mothermodel.labeling.model import MajorityVoter

        lm = MajorityVoter(k)
        probs = lm.predict_proba(L)
        dev_used = False
    else:
        from mothermodel.labeling.model import LabelModel, LabelModelConfig

        dev = (split == "valid") & (gold >= 0) if gold is not None else np.zeros(n, bool)
        dev_used = _use_dev(use_dev) and bool(dev.any())
        cfg = LabelModelConfig(seed=seed)
        lm = LabelModel(k, cfg)
        if dev_used:
            lm.fit(L[train], L_dev=L[dev], Y_dev=gold[dev])
        else:
            lm.fit(L[train])
        probs = lm.predict_proba(L)
        config["label_model"] = {kk: v for kk, v in vars(cfg).items()}
    config["uses_dev_labels"] = dev_used
    view: dict[str, Any] = {"used": False}
    votes_metrics = None
    if model == "label-model":
        progress = (apply_config or ApplyConfig()).progress
        votes_probs = probs
        probs, view = _with_text_view(table, ds, L, probs, train, seed, text_view, progress, task)
        config["text_view"] = view
        if view["used"]:
            votes_metrics = _split_metrics(gold, _tie_break(votes_probs, seed), split, k)
    preds = _tie_break(probs, seed)
    out_metrics = _split_metrics(gold, preds, split, k)
    rows = table.column("_row").to_numpy()
    v = _record_probs(reg, t, model, probs[rows], preds[rows], rows, out_metrics, config)
    note = store.dvc_track(reg.ws)
    res = {"task": task, "version": v, "model": model, "label_matrix_version": m["version"],
           "uses_dev_labels": dev_used, "text_view": view, "metrics": out_metrics,
           "coverage": float((L >= 0).any(axis=1).mean()) if n else 0.0,
           "apply": applied["tasks"]}
    if votes_metrics is not None:
        res["metrics_votes_only"] = votes_metrics
    if note:
        res["dvc"] = note
    return res


def _split_metrics(gold: np.ndarray | None, preds: np.ndarray, split: np.ndarray, k: int) -> dict[str, dict]:
    """Accuracy and macro-F1 on each split that has gold labels (train, valid, test first)."""
    out: dict[str, dict[str, float]] = {}
    if gold is None:
        return out
    for s in [s for s in ("train", "valid", "test") if (split == s).any()] + sorted(
            set(split.tolist()) - {"train", "valid", "test"}):
        mask = (split == s) & (gold >= 0)
        if mask.any():
            out[s] = metrics(gold[mask], preds[mask], k)
    return out


def _with_text_view(table, ds: dict[str, Any], L: np.ndarray, probs: np.ndarray, train: np.ndarray, seed: int,
                    enabled: bool, progress: bool = False, task: str = "") -> tuple[np.ndarray, dict[str, Any]]:
    """The label model's posteriors combined with the text view, when there is text to read."""
    from mothermodel.labeling.textview import TextViewConfig, combine, hashed_ngrams, text_view

    cfg = TextViewConfig(seed=seed)
    fit_rows = train & (L >= 0).any(axis=1)
    covered = int(fit_rows.sum())
    why = ("off (--no-text-view)" if not enabled else
           "the dataset has no text field" if not ds.get("text_field") else
           f"{covered} covered train rows, fewer than {cfg.min_fit_rows}" if covered < cfg.min_fit_rows else None)
    if why:
        return probs, {"used": False, "reason": why}
    X = hashed_ngrams(table.column(ds["text_field"]), cfg)  # table row i is _row i, as in L
    # A bar when the fold fits take seconds (about 1 s per 1,000 rows on 2 cores).
    n_fit = covered if cfg.max_fit_rows is None else min(covered, cfg.max_fit_rows)
    bar = _progress(cfg.folds, f"{task}: text view, fold models on {n_fit} rows", progress and n_fit >= 2_000,
                    unit="folds", min_total=1)
    try:
        Q, report = text_view(X, probs.astype(np.float64), fit_rows, cfg, on_fold=bar.advance)
    finally:
        bar.close()
    combined = combine(probs, Q, np.asarray(report["target_class_mix"]), cfg.weight)
    return combined, {"used": True, "text_field": ds["text_field"], "config": asdict(cfg), **report}



def task_tree(tasks: dict[str, "_TaskState"], task: str) -> list[str]:
    """The task tree holding `task` (parent links with a parent_class, one dataset), root first."""
    root = task
    while tasks[root].parent and tasks[root].parent_class and tasks[root].parent in tasks \
            and tasks[tasks[root].parent].dataset == tasks[root].dataset:
        root = tasks[root].parent
    order, frontier = [root], [root]
    while frontier:
        kids = sorted(n for n, t in tasks.items() if t.parent in frontier and t.parent_class
                      and t.dataset == tasks[root].dataset)
        order += kids
        frontier = kids
    return order


def fit_tree(reg, task: str, use_dev: bool | None = None, seed: int = TIE_BREAK_SEED,
             apply_config: ApplyConfig | None = None) -> dict[str, Any]:
    """The hierarchical label model over TASK's whole task tree: consistent labels for every task in it."""
    from mothermodel.labeling.hierarchy import HierarchicalLabelModel, HierarchyConfig, TaskNode

    tasks, _, _ = _read_state(reg)
    if task not in tasks:
        raise UserError(f"TASK: unknown task {task!r}")
    tree = task_tree(tasks, task)
    if len(tree) == 1:
        raise UserError(f"--model: task {task} is in no task tree (hierarchical needs tasks with parent and parent_class)")
    applied, data = _apply(reg, tree, apply_config)
    tasks, datasets, _ = _read_state(reg)
    ds = datasets[tasks[tree[0]].dataset]
    table = data.table(tasks[tree[0]].dataset)
    n = ds["num_rows"]
    split, train = _splits(table, ds)
    L, gold = {}, {}
    for name in tree:
        t = tasks[name]
        m = t.latest_matrix
        L[name] = store.dense(store.read_checked(reg.ws, m["path"], m["content_hash"]), n, [s["name"] for s in t.sources])
        gcol = gold_column(name, ds)
        if gcol:
            gold[name] = table.column(gcol).to_numpy(zero_copy_only=False).astype(np.int64)
    nodes = [TaskNode(name, len(tasks[name].classes), tasks[name].parent if i else None,
                      tasks[tasks[name].parent].classes.index(tasks[name].parent_class) if i else None)
             for i, name in enumerate(tree)]
    cfg = HierarchyConfig(seed=seed)
    hlm = HierarchicalLabelModel(nodes, cfg)
    dev = split == "valid"
    dev_used = _use_dev(use_dev) and bool(gold) and bool(dev.any())
    if dev_used:
        hlm.fit({k: v[train] for k, v in L.items()},
                dev=({k: v[dev] for k, v in L.items()}, {k: v[dev] for k, v in gold.items()}))
    else:
        hlm.fit({k: v[train] for k, v in L.items()})
    out = hlm.predict_all(L)
    consistent = hlm.predict(L, tie_break_seed=seed)
    rows = table.column("_row").to_numpy()
    results = []
    for name in tree:
        t = tasks[name]
        k = len(t.classes)
        cond = out["conditional"][name]
        pred = _tie_break(cond, seed)
        mets: dict[str, dict[str, float]] = {}
        if name in gold:
            for s in [s for s in ("train", "valid", "test") if (split == s).any()]:
                mask = (split == s) & (gold[name] >= 0)
                if mask.any():
                    mets[s] = metrics(gold[name][mask], pred[mask], k)
                    # Top-down consistent labels: a child counts as wrong where its parent was mispredicted.
                    mets[s]["accuracy_consistent"] = float((consistent[name][mask] == gold[name][mask]).mean())
        config = {"model": "hierarchical", "seed": seed, "tree": tree, "uses_dev_labels": dev_used,
                  "hierarchy": {kk: v for kk, v in vars(cfg).items()}}
        v = _record_probs(reg, t, "hierarchical", cond[rows], pred[rows], rows, mets, config,
                          extra={"applicable": out["applicable"][name][rows]})
        results.append({"task": name, "version": v, "label_matrix_version": t.latest_matrix["version"], "metrics": mets})
    note = store.dvc_track(reg.ws)
    me = next(r for r in results if r["task"] == task)
    res = {"task": task, "version": me["version"], "model": "hierarchical",
           "label_matrix_version": me["label_matrix_version"], "uses_dev_labels": dev_used,
           "metrics": me["metrics"], "tree": results, "apply": applied["tasks"]}
    if note:
        res["dvc"] = note
    return res


# --- log and diff ------------------------------------------------------------------


def log(reg, task: str) -> dict[str, Any]:
    with reg.read() as con:
        if not con.execute("SELECT 1 FROM tasks WHERE name = ?", [task]).fetchone():
            raise UserError(f"TASK: unknown task {task!r}")
        matrices = [
            {"version": r[0], "created_at": r[1].isoformat(), "entries": r[2], "content_hash": r[3],
             "task_fingerprint": r[4], "faults": len(json.loads(r[5] or "[]")), "path": r[6]}
            for r in con.execute(
                "SELECT version, created_at, num_entries, content_hash, task_fingerprint, report, path "
                "FROM label_matrices WHERE task = ? ORDER BY version DESC", [task]).fetchall()
        ]
        probs = [
            {"version": r[0], "created_at": r[1].isoformat(), "model": r[2], "label_matrix_version": r[3],
             "metrics": json.loads(r[4] or "{}"), "content_hash": r[5]}
            for r in con.execute(
                "SELECT version, created_at, model, label_matrix_version, metrics, content_hash "
                "FROM prob_labels WHERE task = ? ORDER BY version DESC", [task]).fetchall()
        ]
    return {"task": task, "label_matrices": matrices, "prob_labels": probs}


def diff(reg, task: str, v1: int, v2: int) -> dict[str, Any]:
    """Per source: rows whose label changed, coverage in each version (DuckDB over both files)."""
    import duckdb

    with reg.read() as con:
        got = {r[0]: r[1:] for r in con.execute(
            "SELECT version, path, content_hash, num_rows FROM label_matrices WHERE task = ? AND version IN (?, ?)",
            [task, v1, v2]).fetchall()}
    for v in (v1, v2):
        if v not in got:
            raise UserError(f"V{1 if v == v1 else 2}: task {task!r} has no label-matrix version {v}")
    a = store.read_checked(reg.ws, got[v1][0], got[v1][1])
    b = store.read_checked(reg.ws, got[v2][0], got[v2][1])
    n = got[v2][2] or got[v1][2]
    con = duckdb.connect()
    try:
        con.register("a", a)
        con.register("b", b)
        rows = con.execute(
            """
            WITH a AS (SELECT row, source::VARCHAR AS source, label FROM a),
                 b AS (SELECT row, source::VARCHAR AS source, label FROM b),
                 j AS (SELECT coalesce(a.source, b.source) AS source, a.label AS la, b.label AS lb
                       FROM a FULL OUTER JOIN b ON a.row = b.row AND a.source = b.source)
            SELECT source,
                   count(*) FILTER (WHERE la IS DISTINCT FROM lb) AS rows_changed,
                   count(la) AS covered_before, count(lb) AS covered_after,
                   bool_or(la IS NOT NULL) AS in_before, bool_or(lb IS NOT NULL) AS in_after
            FROM j GROUP BY source ORDER BY source
            """).fetchall()
    finally:
        con.close()
    sources = [
        {"source": s, "rows_changed": int(ch), "coverage_before": cb / n, "coverage_after": ca / n,
         "status": "added" if not ib else ("removed" if not ia else ("changed" if ch else "unchanged"))}
        for s, ch, cb, ca, ib, ia in rows
    ]
    return {"task": task, "from": v1, "to": v2, "num_rows": n, "sources": sources}
