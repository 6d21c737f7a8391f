"""Submitting tasks: the rules, without SQL.

`RegistryStore.submit` reads the registry's current state into `SubmitState`,
calls `plan_submit` (validation, versions, fingerprints; pure), and writes the
`SubmitPlan` in the same transaction. A failed check raises `UserError` before
anything is written, so the transaction rolls back and the registry is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

from mothermodel.errors import UserError
from mothermodel.registry import fingerprint as fp
from mothermodel.registry.graph import build_graph, closure, cycle_text, topological
from mothermodel.registry.records import HAND_SOURCE, Edge, TaskSpec, declarative_params


@dataclass
class ExistingTask:
    version: int
    spec_hash: str
    fingerprint: str
    created_at: datetime
    classes: tuple[str, ...]


@dataclass
class SubmitState:
    """The registry as a submit sees it (read inside the write transaction)."""

    datasets: dict[str, tuple[str, set[str]]]  # name -> (content hash, columns)
    existing: dict[str, ExistingTask]
    edges: list[Edge]
    old_sources: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)  # (task, source) -> (hash, version)
    # Sources a resubmit keeps though its spec does not name them (hand labels): task -> fingerprint tuples
    kept_sources: dict[str, list[tuple[str, str, str | None, int]]] = field(default_factory=dict)


@dataclass
class SubmitPlan:
    """What a submit writes: per task its result, source rows and fingerprint."""

    specs: list[TaskSpec]
    results: dict[str, dict[str, Any]]
    source_versions: dict[str, list[int]]  # task -> version per spec source, in order
    fingerprints: dict[str, str]  # new fingerprints of the batch
    restamped: dict[str, str]  # other tasks downstream whose fingerprint changed
    replaced: list[str]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def versioned(self) -> list[str]:
        """Tasks that get a new row in task_versions."""
        return [n for n in self.names if self.results[n]["status"] in ("created", "updated")]


def plan_submit(specs: Sequence[TaskSpec], state: SubmitState, replace: bool,
                read_inputs: Callable[[set[str]], Mapping[str, fp.Inputs]]) -> SubmitPlan:
    """Check a batch of specs against the registry and decide every version and fingerprint.

    New tasks get version 1. With `replace`, a changed task gets version+1 and
    each source whose content changed gets version+1; unchanged sources keep
    theirs. Fingerprints of every task downstream are recomputed;
    `read_inputs(names)` reads the fingerprint inputs of tasks outside the batch.
    """
    specs = list(specs)
    check_batch(specs, state, replace)
    graph = graph_after(specs, state)
    results, source_versions = plan_versions(specs, state)
    names = [s.name for s in specs]
    batch = set(names)
    affected = closure(graph, names)
    inputs: dict[str, fp.Inputs] = dict(read_inputs(affected - batch))
    for s in specs:
        inputs[s.name] = fp.Inputs(
            dataset=s.dataset, classes=tuple(s.classes), parent=s.parent, parent_class=s.parent_class,
            sources=tuple([(src.name, src.kind, src.ref, v) for src, v in zip(s.sources, source_versions[s.name])
                           if src.kind != "slice"]  # slices never vote: not in it (records.model_fingerprint)
                          + state.kept_sources.get(s.name, [])),
            dataset_hash=state.datasets[s.dataset][0], input=s.input.to_dict() if s.input is not None else None,
            gold=s.gold)
    current = {n: e.fingerprint for n, e in state.existing.items()}
    new_fp = fp.recompute(graph, topological(graph, affected), inputs, current)
    for n in names:
        results[n]["fingerprint"] = new_fp[n]
        if results[n]["status"] == "unchanged" and new_fp[n] != current.get(n):
            results[n]["status"] = "restamped"
    restamped = {n: new_fp[n] for n in sorted(affected - batch) if new_fp[n] != current.get(n)}
    return SubmitPlan(specs, results, source_versions, {n: new_fp[n] for n in names}, restamped,
                      [n for n in names if n in state.existing])


def declarative_field(src) -> str | None:
    """The column a declarative (keyword/regex/threshold) LF or slice reads, or None for other sources."""
    params = declarative_params(src.code) if src.kind in ("lf", "slice") else None
    fld = params.get("field") if params else None
    return fld if isinstance(fld, str) else None


def check_batch(specs: Sequence[TaskSpec], state: SubmitState, replace: bool) -> None:
    """Registry checks: datasets, columns, existing names, parents, upstream tasks."""
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise UserError(f"{s.origin}: name: task {s.name!r} submitted twice in one batch")
        seen.add(s.name)
    by_name = {s.name: s for s in specs}
    for s in specs:
        if s.dataset not in state.datasets:
            known = ", ".join(sorted(state.datasets)[:10]) or "none registered"
            raise UserError(f"{s.origin}: dataset: unknown dataset {s.dataset!r} ({known})")
        cols = state.datasets[s.dataset][1]
        for i, src in enumerate(s.voters):
            if src.name == HAND_SOURCE or src.kind == "hand":
                raise UserError(f"{s.origin}: sources[{i}].name: {src.name!r} is reserved for the task's hand labels "
                                "(add them with `mothermodel label add`)")
            if src.kind == "column" and src.ref not in cols:
                raise UserError(f"{s.origin}: sources[{i}].column: dataset {s.dataset!r} has no column {src.ref!r}")
            fld = declarative_field(src)
            if fld is not None and fld not in cols:
                raise UserError(f"{s.origin}: sources[{i}].field: dataset {s.dataset!r} has no column {fld!r} "
                                f"(LF {src.name})")
        for i, src in enumerate(s.slices):
            if src.name == HAND_SOURCE:
                raise UserError(f"{s.origin}: slices[{i}].name: {src.name!r} is reserved for the task's hand labels")
            fld = declarative_field(src)
            if fld is not None and fld not in cols:
                raise UserError(f"{s.origin}: slices[{i}].field: dataset {s.dataset!r} has no column {fld!r} "
                                f"(slice {src.name})")
        if s.input is not None:
            for f in s.input.columns:
                if f not in cols:
                    raise UserError(f"{s.origin}: input: dataset {s.dataset!r} has no column {f!r} "
                                    f"(the input is the {s.input.describe()})")
        if s.name in state.existing and not replace:
            raise UserError(f"{s.origin}: name: task {s.name!r} already exists (use --replace to change it)")
        if s.parent and s.parent not in state.existing and s.parent not in by_name:
            raise UserError(f"{s.origin}: parent: unknown task {s.parent!r}")
        if s.parent_class is not None:
            pclasses = by_name[s.parent].classes if s.parent in by_name else state.existing[s.parent].classes
            if s.parent_class not in pclasses:
                raise UserError(f"{s.origin}: parent_class: {s.parent_class!r} is not a class of {s.parent} "
                                f"({', '.join(pclasses)})")
        for i, src in enumerate(s.sources):
            if src.kind == "task_output" and src.ref not in state.existing and src.ref not in by_name:
                raise UserError(f"{s.origin}: sources[{i}].task: unknown task {src.ref!r}")


def graph_after(specs: Sequence[TaskSpec], state: SubmitState):
    """The dependency graph once the batch is in (old edges into replaced tasks go); refuses cycles."""
    import networkx as nx  # lazy: networkx (~70 ms) stays off the registry commands that build no graph

    batch = {s.name for s in specs}
    new_edges = [Edge(up, s.name, kind) for s in specs for up, kind in s.upstream_tasks]
    graph = build_graph([*state.existing, *batch], [e for e in state.edges if e.downstream not in batch] + new_edges)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph, source=[s.name for s in specs])
        # Name the field of the submitted task whose new edge closes the cycle.
        into_batch = next(((u, v) for u, v in cycle if v in batch), cycle[0])
        origin = next((s.origin for s in specs if s.name == into_batch[1]), specs[0].origin)
        fld = "parent" if graph.edges[into_batch]["kind"] == "parent" else "sources"
        raise UserError(f"{origin}: {fld}: dependency cycle {cycle_text(cycle)}")
    return graph


def plan_versions(specs: Sequence[TaskSpec], state: SubmitState) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]]:
    """Task and source versions: bump exactly what changed."""
    results: dict[str, dict[str, Any]] = {}
    versions: dict[str, list[int]] = {}
    for s in specs:
        src_results, vs = [], []
        for src in s.sources:
            old = state.old_sources.get((s.name, src.name))
            if old is None:
                version, status = 1, "created"
            elif old[0] == src.content_hash:
                version, status = old[1], "unchanged"
            else:
                version, status = old[1] + 1, "updated"
            vs.append(version)
            src_results.append({"name": src.name, "kind": src.kind, "version": version, "status": status})
        kept = {x.name for x in s.sources}
        removed = sorted(n for (t, n) in state.old_sources if t == s.name and n not in kept)
        prev = state.existing.get(s.name)
        if prev is None:
            version, status = 1, "created"
        elif prev.spec_hash == s.spec_hash:
            version, status = prev.version, "unchanged"
        else:
            version, status = prev.version + 1, "updated"
        versions[s.name] = vs
        results[s.name] = {"name": s.name, "version": version, "previous_version": prev.version if prev else None,
                           "status": status, "sources": src_results, "removed_sources": removed}
    return results, versions
