"""`label apply`: every stale source of the chosen tasks, in DAG order, into new label-matrix versions.

A run reads the registry once (`AbstractStore.snapshot`), does the long work
with the registry closed, writes each matrix file atomically, and records it in
one short write: no labeling run holds the registry open. Sources whose
identity did not change since the previous version are reused from it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mothermodel.defaults import DEFAULT_SEED
from mothermodel.errors import CommandFailed, UserError
from mothermodel.labeling.apply import embedding, prompted
from mothermodel.labeling.apply import sources as src_mod
from mothermodel.labeling import label_files, slices
from mothermodel.labeling.apply.config import ApplyConfig
from mothermodel.labeling.apply.core import Applied, LFReport, apply_lfs
from mothermodel.labeling.apply.dask import apply_lfs_dask
from mothermodel.labeling.lf.core import LabelingFunction
from mothermodel.labeling.model.votes import majority_hard
from mothermodel.registry import faults
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.graph import closure, topological
from mothermodel.registry.records import DatasetRecord, Snapshot, SourceRecord, TaskRecord


class LabelingFaults(CommandFailed):
    """`label apply --strict` found LFs that failed on some rows (exit 1)."""

    exit_code = 1


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class DatasetCache:
    """Dataset tables, read once per run and checked against their recorded hash."""

    def __init__(self, store: AbstractStore, datasets: dict[str, DatasetRecord]):
        self.store, self.meta, self.cache = store, datasets, {}

    def table(self, name: str):
        if name not in self.cache:
            self.cache[name] = self.store.read_dataset(self.meta[name])
        return self.cache[name]


@dataclass
class _Run:
    """One apply run: the registry snapshot, the datasets read so far, upstream outputs computed so far."""

    store: AbstractStore
    snap: Snapshot
    config: ApplyConfig
    data: DatasetCache
    outputs: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # task -> (identity, hard labels)


def apply(store: AbstractStore, task_names: Sequence[str] | None = None, config: ApplyConfig | None = None,
          force: bool = False, strict: bool = False, track: bool = True, isolate: bool | None = None) -> dict[str, Any]:
    """Run every stale source of the given tasks (default: all) in DAG order; record new versions
    (`isolate`: see `apply_and_read`)."""
    return apply_and_read(store, task_names, config, force, strict, track, isolate)[0]


def apply_and_read(store: AbstractStore, task_names: Sequence[str] | None, config: ApplyConfig | None,
                   force: bool = False, strict: bool = False, track: bool = True,
                   isolate: bool | None = None) -> tuple[dict[str, Any], DatasetCache]:
    """`apply`, also handing back the datasets it read (hash-checked), so a fit reads them once.

    isolate (default: when the run targets more than one task): a task that fails (a spec or LF code that
    cannot be built, a source that cannot be computed, ...) is left out with every task that uses its output,
    reported in "failed" and recorded as its fault (registry/faults.py); every other task goes on. Without it
    the first failure stops the run, as for one named task. --strict stops the run either way."""
    snap = store.snapshot()
    unknown = [n for n in task_names or [] if n not in snap.tasks]
    if unknown:
        raise UserError(f"TASK: unknown task {unknown[0]!r}")
    targets = list(task_names) if task_names else sorted(snap.tasks)
    if isolate is None:
        isolate = len(targets) > 1
    order = apply_order(snap, targets)
    failed: dict[str, dict[str, Any]] = {}

    def fail(name: str, e: Exception) -> None:
        if not isolate or not faults.isolatable(e) or isinstance(e, LabelingFaults):
            raise e
        failed[name] = faults.describe(name, faults.APPLY, e)

    lfs_by_task = {}
    for n in order:  # bad specs fail before any work
        try:
            lfs_by_task[n] = src_mod.build_lfs(snap.tasks[n])
        except Exception as e:  # noqa: BLE001 - one task's fault, see fail()
            fail(n, faults.with_fix(e, f"resubmit {n}'s spec with `mothermodel task submit SPEC --replace` "
                                       "(from the spec file, so its LF code is stored)"))
    run = _Run(store, snap, config or ApplyConfig(), DatasetCache(store, snap.datasets))
    uses = snap.graph(kinds=("task_output",))
    results = []
    for name in order:
        if name in failed:
            continue
        up = next((u for u in sorted(uses.predecessors(name)) if u in failed), None)
        if up is not None:  # its labels are computed from the failed task's
            failed[name] = faults.upstream_failed(name, faults.APPLY, up)
            continue
        try:
            res = _apply_task(run, snap.tasks[name], lfs_by_task[name], force, strict)
            members = _apply_slices(run, snap.tasks[name], force, strict)
            if members is not None:
                res["slices"] = members
            results.append(res)
        except Exception as e:  # noqa: BLE001 - one task's fault, see fail()
            fail(name, e)
    store.set_task_faults(faults.APPLY, list(failed.values()), [r["task"] for r in results])
    made = [r for r in results if r["status"] == "created" or (r.get("slices") or {}).get("status") == "created"]
    note = label_files.dvc_track(store.ws) if track and made else None
    out: dict[str, Any] = {"tasks": [r for r in results if r["task"] in targets or r in made],
                           "failed": list(failed.values())}
    if note:
        out["dvc"] = note
    return out, run.data


def apply_order(snap: Snapshot, targets: Sequence[str]) -> list[str]:
    """The targets plus every task whose output they use, upstream first (their labels are inputs)."""
    g = snap.graph(kinds=("task_output",))
    return topological(g, closure(g, targets, upstream=True))


def _apply_task(run: _Run, t: TaskRecord, lfs: dict[str, LabelingFunction], force: bool, strict: bool) -> dict[str, Any]:
    ds = run.snap.datasets[t.dataset]
    ident = _identities(run, t)
    key = _h({"dataset": ds.content_hash, "sources": ident})
    prev = run.snap.latest_matrix.get(t.name)
    # A prompted source that missed rows last time (a server down, time limits) is asked again: its answer
    # cache gives back what it got, the model is asked the rest (labeling/apply/prompted.py).
    retry = {f["name"] for f in prev.faults if f.get("failed_rows")} & \
        {s.name for s in t.sources if s.kind == "prompt"} if prev else set()
    if prev and prev.inputs_key == key and not force and not retry:
        # An LF stopped as a whole in that version is still stopped: say so again (exit 1), recompute nothing.
        return {"task": t.name, "version": prev.version, "status": "up to date",
                "faults": [f for f in prev.faults if f.get("fatal")]}
    reuse = set() if not prev or force else {n for n, i in ident.items()
                                             if prev.source_versions.get(n) == i and n not in retry}
    todo = [s for s in t.sources if s.name not in reuse]
    later = [s for s in todo if _learns_from_others(s)]
    parts, stats = _compute(run, t, [s for s in todo if s not in later], lfs)
    if reuse:
        parts.append(_reused(run, prev.path, prev.content_hash, "source", reuse))
    if later:  # after every other source's entries are known: they are its anchors
        applied, cost = embedding.entries(run.store.ws, ds, run.data.table(t.dataset), t, later, run.config,
                                          others=_others(t, parts, ds.num_rows))
        parts.append(applied)
        stats.update(cost)
    rows, cols, labels, names, reports = _merge(parts)
    faults = [r.to_dict() for r in reports.values() if r.failed_rows or r.first_error]
    if strict and any(f["failed_rows"] for f in faults):
        worst = max(faults, key=lambda f: f["failed_rows"])
        raise LabelingFaults(f"task {t.name}: {len(faults)} LF(s) failed on some rows (e.g. {worst['name']}: "
                             f"{worst['failed_rows']} rows); nothing recorded (--strict)")
    path, digest = label_files.write_matrix(run.store.ws, t.name, rows, names, cols, labels)
    rec = run.store.record_label_matrix(t, path=path, content_hash=digest, dataset_hash=ds.content_hash,
                                        source_versions=ident, num_rows=ds.num_rows, inputs_key=key,
                                        num_entries=int(rows.size), faults=faults)
    run.snap.latest_matrix[t.name] = rec
    out = {"task": t.name, "version": rec.version, "status": "created", "entries": int(rows.size),
           "recomputed": sorted(s.name for s in todo), "reused": sorted(reuse), "faults": faults}
    if stats:  # model-computed sources: rows computed, cached, calls, seconds, costs (per source)
        out["sources"] = stats
    return out


def _identities(run: _Run, t: TaskRecord) -> dict[str, dict[str, Any]]:
    """What each source's labels are computed from; a task-output source includes its upstream's labels."""
    ident: dict[str, dict[str, Any]] = {}
    for s in t.sources:
        base = {"kind": s.kind, "version": s.version, "code_hash": s.code_hash, "ref": s.ref}
        if s.kind == "task_output":
            base["upstream"] = _task_output(run, s.ref)[0]
        ident[s.name] = base
    learners = {s.name for s in t.sources if _learns_from_others(s)}
    for n in learners:  # a neighbour-mode embedding source learns from every other source's labels
        ident[n] = {**ident[n], "upstream": {m: i for m, i in ident.items() if m not in learners}}
    return ident


def _apply_slices(run: _Run, t: TaskRecord, force: bool, strict: bool) -> dict[str, Any] | None:
    """TASK's slice membership: a new version when its slices or dataset changed (unchanged slices reused
    from the previous version), applied like LFs (labeling/lf/slicing.py). None: a task that never had slices."""
    prev = run.snap.latest_membership.get(t.name)
    if not t.slices and prev is None:
        return None
    ds = run.snap.datasets[t.dataset]
    ident = slices.identities(t)
    key = _h({"dataset": ds.content_hash, "slices": ident})
    if prev and prev.inputs_key == key and not force:
        return {"version": prev.version, "status": "up to date", "sizes": prev.sizes,
                "faults": [f for f in prev.faults if f.get("fatal")]}
    reuse = set() if not prev or force or prev.dataset_hash != ds.content_hash else {
        n for n, i in ident.items() if prev.slice_versions.get(n) == i}
    todo = [s.name for s in t.slices if s.name not in reuse]
    parts = []
    if todo:
        fns = src_mod.build_slices(t, todo)
        parts.append(apply_lfs(run.data.table(t.dataset), [fns[n] for n in todo], 1, run.config,
                               label=f"{t.name}: {len(todo)} slices"))
    if reuse:
        parts.append(_reused(run, prev.path, prev.content_hash, "slice", reuse))
    rows, cols, _, names, reports = _merge(parts)
    faults = [r.to_dict() for r in reports.values() if r.failed_rows or r.first_error]
    if strict and any(f["failed_rows"] for f in faults):
        raise LabelingFaults(f"task {t.name}: {len(faults)} slice(s) failed on some rows; nothing recorded (--strict)")
    sizes = dict(zip(names, np.bincount(cols, minlength=len(names)).tolist()))
    path, digest = label_files.write_membership(run.store.ws, t.name, rows, names, cols)
    rec = run.store.record_slice_membership(t, path=path, content_hash=digest, dataset_hash=ds.content_hash,
                                            slice_versions=ident, inputs_key=key, num_rows=ds.num_rows, sizes=sizes,
                                            faults=faults)
    run.snap.latest_membership[t.name] = rec
    return {"version": rec.version, "status": "created", "sizes": sizes, "recomputed": sorted(todo),
            "reused": sorted(reuse), "faults": faults}


def _learns_from_others(s: SourceRecord) -> bool:
    return s.kind == "embedding" and bool(json.loads(s.code).get("neighbours"))


def _compute(run: _Run, t: TaskRecord, todo, lfs: dict[str, LabelingFunction]
             ) -> tuple[list[Applied], dict[str, dict[str, Any]]]:
    """Label entries of the sources that must be (re)computed, and what the model-computed ones cost."""
    table = run.data.table(t.dataset)
    ds = run.snap.datasets[t.dataset]
    stats: dict[str, dict[str, Any]] = {}
    k = len(t.classes)
    parts = [src_mod.column_entries(table, [s for s in todo if s.kind == "column"], k)]
    lf_sources = [s for s in todo if s.kind == "lf"]
    if lf_sources:
        chosen = [lfs[s.name] for s in lf_sources]
        if run.config.engine == "dask":
            # Workers read the dataset's Parquet file themselves (a path all of them can reach).
            path = str(run.store.ws.home / run.snap.datasets[t.dataset].path)
            parts.append(apply_lfs_dask(path, chosen, k, run.config, client=run.config.scheduler))
        else:
            parts.append(apply_lfs(table, chosen, k, run.config, label=f"{t.name}: {len(lf_sources)} LFs"))
    for s in todo:
        if s.kind == "task_output":
            parts.append(src_mod.map_output(t, s, run.snap.tasks[s.ref], _task_output(run, s.ref)[1], table))
        elif s.kind == "model":
            parts.append(src_mod.model_source(s))
        elif s.kind == "hand":
            parts.append(src_mod.hand_entries(run.store.ws, t, s, table))
    for kind, module in (("embedding", embedding), ("prompt", prompted)):
        chosen = [s for s in todo if s.kind == kind]
        if chosen:
            applied, cost = module.entries(run.store.ws, ds, table, t, chosen, run.config)
            parts.append(applied)
            stats.update(cost)
    return parts, stats


def _others(t: TaskRecord, parts: list[Applied], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchors for neighbour-mode sources from the other sources' entries (embedding.anchors_from)."""
    rows, cols, labels, names, _ = _merge(parts)
    learners = {s.name for s in t.sources if _learns_from_others(s)}
    hand_name = t.hand_source.name if t.hand_source else None
    src = np.array(names, dtype=object)[cols] if len(cols) else np.empty(0, object)
    is_hand = src == hand_name
    vote = ~is_hand & ~np.isin(src, list(learners))
    counts = np.zeros((n, len(t.classes)), np.int64)
    np.add.at(counts, (rows[vote], labels[vote].astype(np.int64)), 1)
    hand = np.full(n, -1, np.int64)
    hand[rows[is_hand]] = labels[is_hand]
    return embedding.anchors_from(counts, hand)


def _reused(run: _Run, path: str, content_hash: str, column: str, reuse: set[str]) -> Applied:
    """The entries of unchanged sources (or slices: `column` "slice", every entry IN_SLICE), taken from the
    previous version's file."""
    old = label_files.read_checked(run.store.ws, path, content_hash)
    src = old.column(column).combine_chunks()
    names = src.dictionary.to_pylist()
    keep_names = [n for n in names if n in reuse]
    remap = np.array([keep_names.index(n) if n in reuse else -1 for n in names], np.int64)
    c = remap[src.indices.to_numpy(zero_copy_only=False)]
    m = c >= 0
    labels = old.column("label").to_numpy()[m] if "label" in old.column_names else np.zeros(int(m.sum()))
    return Applied(old.column("row").to_numpy()[m], c[m].astype(np.int32), labels.astype(np.int16), keep_names, {})


def _merge(parts: list[Applied]):
    """One sparse matrix from several parts: rows, global source indices, labels, source names, reports."""
    names: list[str] = []
    R, C, Lb = [], [], []
    reports: dict[str, LFReport] = {}
    for p in parts:
        R.append(p.rows); C.append(p.cols + len(names)); Lb.append(p.labels)
        names += p.sources
        reports.update(p.reports)
    rows = np.concatenate(R) if R else np.empty(0, np.int64)
    cols = np.concatenate(C).astype(np.int32) if C else np.empty(0, np.int32)
    labels = np.concatenate(Lb) if Lb else np.empty(0, np.int16)
    return rows, cols, labels, names, reports


def _task_output(run: _Run, up_name: str) -> tuple[str, np.ndarray]:
    """An upstream task's hard labels per row: its latest fresh probabilistic labels,
    else a majority vote over its current label matrix. Computed once per run."""
    if up_name in run.outputs:
        return run.outputs[up_name]
    up = run.snap.tasks[up_name]
    n = run.snap.datasets[up.dataset].num_rows
    p = run.snap.latest_probs.get(up_name)
    if p and p.task_fingerprint == up.fingerprint:
        tbl = label_files.read_checked(run.store.ws, p.path, p.content_hash)
        pred = np.full(n, -1, np.int64)
        pred[tbl.column("row").to_numpy()] = tbl.column("pred").to_numpy()
        out = (f"probs:{p.content_hash}", pred)
    else:
        m = run.snap.latest_matrix.get(up_name)
        if not m:
            raise UserError(f"task {up_name}: no labels yet; run `mothermodel label apply {up_name}` first")
        L = label_files.dense(label_files.read_checked(run.store.ws, m.path, m.content_hash), n, up.source_names())
        out = (f"majority:{m.content_hash}", majority_hard(L, len(up.classes), DEFAULT_SEED))
    run.outputs[up_name] = out
    return out
