"""Staleness by lineage: what each artefact was built from, against what there is now.

- Labels are stale when the newest probabilistic labels were fit for another
  fingerprint than the task's current one (or there are none).
- A model is stale for a task when the latest model was not trained on the
  task, when it recorded another fingerprint, or when the task's labels were
  refit since (another label model, the text view, dev labels): the newest
  fresh probabilistic-labels version differs from the one the model learned.
- A deployable is stale when its task has none, when a newer model superseded
  the one it was distilled from, when that model is stale for the task, or
  when the task's fingerprint moved. A newer model that carried the task over
  (`train --task` chose others: its record's `guard["trained_in"]`, the version
  that trained it) supersedes only deployables distilled before that version.

Pure functions over records; `RegistryStore` gathers the records.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from mothermodel.registry.records import (
    DeployableRecord,
    ImpactedDeployable,
    ImpactedModel,
    ImpactedTask,
    ImpactReport,
    LabelVersionRef,
    ModelRecord,
    Serving,
    Staleness,
)


def labels_staleness(fingerprint: str, latest: tuple[int, str] | None) -> Staleness:
    """latest: (version, fingerprint it was fit for) of the task's newest probabilistic labels."""
    if latest is None:
        return Staleness(None, True, "no probabilistic labels yet")
    version, fit_for = latest
    if fit_for != fingerprint:
        return Staleness(version, True, f"task changed since labels v{version} were fit")
    return Staleness(version, False)


def model_staleness(task: str, fingerprint: str, fresh_labels: int | None, model: ModelRecord | None) -> Staleness:
    """fresh_labels: the newest probabilistic-labels version fit for the current fingerprint, if any."""
    if model is None:
        return Staleness(None, True, "no model yet")
    mt = model.tasks.get(task)
    if mt is None:
        return Staleness(None, True, f"not in the latest model (v{model.version})")
    if mt.task_fingerprint != fingerprint:  # the model fingerprint: with slice heads, its slices too
        return Staleness(model.version, True, f"task changed since model v{model.version} was trained")
    if fresh_labels is not None and mt.prob_label_version != fresh_labels:
        return Staleness(model.version, True, f"labels refit: model v{model.version} learned labels "
                                              f"v{mt.prob_label_version}, the newest are v{fresh_labels}")
    return Staleness(model.version, False)


def deployable_staleness(fingerprint: str, deployable: DeployableRecord | None, model: ModelRecord | None,
                         model_state: Staleness) -> Staleness:
    if deployable is None:
        return Staleness(None, True, "no deployable yet")
    v = deployable.version
    if model is not None and deployable.model_version != model.version:
        # a model that only carried the task over (`train --task` chose others) supersedes older deployables only
        mt = model.tasks.get(deployable.task)
        trained_in = (mt.guard or {}).get("trained_in", model.version) if mt is not None else model.version
        if deployable.model_version < trained_in:
            return Staleness(v, True, f"superseded: distilled from model v{deployable.model_version}, "
                                      f"the latest is v{model.version}")
    if deployable.task_fingerprint != fingerprint:
        return Staleness(v, True, "task changed since it was distilled")
    if model_state.stale:
        return Staleness(v, True, f"its model is stale ({model_state.reason})")
    return Staleness(v, False)


def slices_staleness(current: dict[str, Any], latest: Mapping[str, Any] | None) -> Staleness:
    """A task's slice membership: stale when its slices (name -> {version, code_hash}) or its dataset changed
    since its latest membership (`latest`: version, slice_versions JSON, same_data), or when there is none."""
    if latest is None:
        return Staleness(None, True, "no slice membership yet")
    recorded = json.loads(latest["slice_versions"]) if isinstance(latest["slice_versions"], str) else latest["slice_versions"]
    if not latest["same_data"]:
        return Staleness(latest["version"], True, "dataset changed")
    changed = sorted(n for n, i in current.items() if recorded.get(n) != i)
    removed = sorted(set(recorded) - set(current))
    if changed or removed:
        why = [f"slice {n} {'new' if n not in recorded else 'changed'}" for n in changed] + \
              [f"slice {n} removed" for n in removed]
        return Staleness(latest["version"], True, "; ".join(why))
    return Staleness(latest["version"], False)


def task_staleness(task: str, fingerprint: str, latest_labels: tuple[int, str] | None, fresh_labels: int | None,
                   model: ModelRecord | None, deployable: DeployableRecord | None,
                   model_fp: str | None = None) -> dict[str, Staleness]:
    """model_fp: the task's model fingerprint (records.model_fingerprint; default: its fingerprint)."""
    m = model_staleness(task, model_fp or fingerprint, fresh_labels, model)
    return {"labels": labels_staleness(fingerprint, latest_labels), "model": m,
            "deployable": deployable_staleness(fingerprint, deployable, model, m)}


def reach(g, direct: list[str]) -> dict[str, tuple[int, str | None]]:
    """Breadth-first from the changed tasks: task -> (hops from the change, the task it was reached via)."""
    found: dict[str, tuple[int, str | None]] = {t: (0, None) for t in direct}
    frontier = list(direct)
    while frontier:
        nxt = []
        for u in frontier:
            for v in sorted(g.successors(u)):
                if v not in found:
                    found[v] = (found[u][0] + 1, u)
                    nxt.append(v)
        frontier = nxt
    return found


def impact_report(what: str, canonical: str, g, reached: dict[str, tuple[int, str | None]],
                  label_versions: Sequence[LabelVersionRef], models: Sequence[ImpactedModel],
                  deployables: Sequence[ImpactedDeployable]) -> ImpactReport:
    """`dag impact`'s answer: each stale thing, and the reason (which changed task it depends on)."""
    tasks = sorted(reached, key=lambda t: (reached[t][0], t))
    return ImpactReport(
        kind=what, name=canonical,
        tasks=tuple(ImpactedTask(t, reached[t][0], reached[t][1],
                                 g.edges[reached[t][1], t]["kind"] if reached[t][1] else None) for t in tasks),
        label_versions=tuple(label_versions), models=tuple(models), deployables=tuple(deployables))


def serving(mt) -> Serving | None:
    """What serves a task in the latest model (the guard's choice, `ModelTaskRecord`), for `status`: the source,
    the model's margin over its labels on valid, whether it is below them and why; None without a model
    (or for a model from before the guard)."""
    if mt is None or not mt.served_by:
        return None
    g = mt.guard or {}
    fit = g.get("encoder_fit") or {}
    return Serving(served_by=mt.served_by, stage=g.get("stage"), final_stage=g.get("final_stage"),
                   margin=g.get("margin"), split=g.get("split"), below_labels=bool(g.get("below_labels")),
                   agreement=g.get("agreement"), reason=g.get("reason"), cause=g.get("cause") or None,
                   encoder_fit={k: fit[k] for k in ("whole_word_share", "pieces_per_word", "unknown_share", "advice")
                                if k in fit} if fit.get("poor") else None)
