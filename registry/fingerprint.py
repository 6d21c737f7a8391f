"""Task fingerprints: what the trainer compares to decide what to retrain.

A fingerprint hashes what decides a task's labels and what its models read: its
spec (name, dataset, classes, parent, input template; not description or owner,
which change no label), its
sources' versions, its dataset's content hash and its upstream tasks'
fingerprints. So a change anywhere upstream changes every fingerprint below it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence


def compute(
    *,
    name: str,
    dataset: str,
    classes: Iterable[str],
    parent: str | None,
    sources: Iterable[tuple[str, str, str | None, int]],
    dataset_hash: str,
    upstream: Mapping[str, str],
    parent_class: str | None = None,
    input: dict | None = None,
    gold: str | None = None,
) -> str:
    """sources: (name, kind, ref, version); upstream: {task: fingerprint}; input: the task's input template
    (None: the dataset's text field)."""
    payload = {
        "spec": {"name": name, "dataset": dataset, "classes": list(classes), "parent": parent},
        "sources": sorted([list(s) for s in sources]),
        "dataset_hash": dataset_hash,
        "upstream": dict(sorted(upstream.items())),
    }
    if parent_class is not None:
        payload["spec"]["parent_class"] = parent_class
    if input is not None:  # only when set: the fingerprints of tasks without a template stay what they were
        payload["spec"]["input"] = input
    if gold is not None:  # the task's own gold column (selection on valid reads it); only when set, as input
        payload["spec"]["gold"] = gold
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Inputs:
    """What one task's fingerprint is computed from, besides its upstream fingerprints."""

    dataset: str
    classes: tuple[str, ...]
    parent: str | None
    parent_class: str | None
    sources: tuple[tuple[str, str, str | None, int], ...]  # (name, kind, ref, version)
    dataset_hash: str
    input: dict | None = None  # the task's input template (TaskInput.to_dict), None = the dataset's text field
    gold: str | None = None  # the task's own gold column, None = inherited


def recompute(graph, order: Sequence[str], inputs: Mapping[str, Inputs], current: Mapping[str, str]) -> dict[str, str]:
    """New fingerprints for `order` (topological), each from its inputs and its upstream tasks'
    fingerprints: new ones where already recomputed, else the `current` ones."""
    new: dict[str, str] = {}
    for n in order:
        i = inputs[n]
        ups = {u: new.get(u, current.get(u, "")) for u in graph.predecessors(n)}
        new[n] = compute(name=n, dataset=i.dataset, classes=i.classes, parent=i.parent, sources=i.sources,
                         dataset_hash=i.dataset_hash, upstream=ups, parent_class=i.parent_class,
                         input=i.input, gold=i.gold)
    return new
