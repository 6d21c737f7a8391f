"""Staleness by lineage: what each artefact was built from, against what there is now.

- Labels are stale when the newest probabilistic labels were fit for another
  fingerprint than the task's current one (or there are none).
- A model is stale for a task when the latest model was not trained on the
  task, when it recorded another fingerprint, or when the task's labels were
  refit since (another label model, the text view, dev labels): the newest
  fresh probabilistic-labels version differs from the one the model learned.
- A deployable is stale when its task has none, when a newer model superseded
  the one it was distilled from, when that model is stale for the task, or
  when the task's fingerprint moved.

Pure functions over records; `RegistryStore` gathers the records.
"""

from __future__ import annotations

from typing import Any

from mothermodel.registry.records import DeployableRecord, ModelRecord, Staleness


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
    if mt.task_fingerprint != fingerprint:
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
        return Staleness(v, True, f"superseded: distilled from model v{deployable.model_version}, "
                                  f"the latest is v{model.version}")
    if deployable.task_fingerprint != fingerprint:
        return Staleness(v, True, "task changed since it was distilled")
    if model_state.stale:
        return Staleness(v, True, f"its model is stale ({model_state.reason})")
    return Staleness(v, False)


def task_staleness(task: str, fingerprint: str, latest_labels: tuple[int, str] | None, fresh_labels: int | None,
                   model: ModelRecord | None, deployable: DeployableRecord | None) -> dict[str, Staleness]:
    m = model_staleness(task, fingerprint, fresh_labels, model)
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
                  label_versions: list[dict[str, Any]], model_tasks: list[tuple[int, list[str]]],
                  deployables: list[tuple]) -> dict[str, Any]:
    """`dag impact`'s answer: each stale thing, and the reason (which changed task it depends on)."""
    tasks = sorted(reached, key=lambda t: (reached[t][0], t))
    return {
        "changed": {"kind": what, "name": canonical},
        "tasks": [{"name": t, "depth": reached[t][0], "via": reached[t][1],
                   "edge": g.edges[reached[t][1], t]["kind"] if reached[t][1] else None} for t in tasks],
        "label_versions": label_versions,
        "models": [v for v, _ in model_tasks],
        "deployables": [{"task": t, "version": v, "model_version": mv, "student": s} for t, v, mv, s in deployables],
        "reasons": {
            "models": {str(v): f"trained on {', '.join(ts)}" for v, ts in model_tasks},
            "deployables": {f"{t} v{v}": f"distilled for {t} from model v{mv}" for t, v, mv, _ in deployables},
        },
    }


def serving(mt) -> dict[str, Any] | None:
    """What serves a task in the latest model (the guard's choice, `ModelTaskRecord`), for `status`: the source,
    the model's margin over its labels on valid, whether it is below them and why; None without a model
    (or for a model from before the guard)."""
    if mt is None or not mt.served_by:
        return None
    g = mt.guard or {}
    out = {"served_by": mt.served_by, "stage": g.get("stage"), "final_stage": g.get("final_stage"),
           "margin": g.get("margin"), "split": g.get("split"), "below_labels": bool(g.get("below_labels")),
           "agreement": g.get("agreement"), "reason": g.get("reason")}
    if g.get("cause"):
        out["cause"] = g["cause"]
    fit = g.get("encoder_fit") or {}
    if fit.get("poor"):
        out["encoder_fit"] = {k: fit[k] for k in ("whole_word_share", "pieces_per_word", "unknown_share", "advice")
                              if k in fit}
    return out
