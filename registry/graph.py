"""The dependency DAG as a networkx graph: built in one place, read everywhere.

Nodes are tasks; an edge u -> v means v depends on u (u is v's parent, or v
uses u's output as a weak source). Datasets and sources hang off tasks, so a
change to either starts at the tasks that hold them.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from mothermodel.registry.records import EDGE_KINDS, Edge


def build_graph(tasks: Iterable[str] | Mapping[str, object], edges: Iterable[Edge | tuple[str, str, str]],
                kinds: tuple[str, ...] = EDGE_KINDS):
    """A DiGraph of `tasks` (names, or a mapping whose keys are names) and the edges of `kinds`
    (edge attribute `kind`)."""
    import networkx as nx  # lazy: networkx (~70 ms) stays off the registry commands that build no graph

    g = nx.DiGraph()
    g.add_nodes_from(tasks)
    g.add_edges_from((u, d, {"kind": k}) for u, d, k in
                     ((e.upstream, e.downstream, e.kind) if isinstance(e, Edge) else e for e in edges) if k in kinds)
    return g


def closure(g, roots: Iterable[str], upstream: bool = False) -> set[str]:
    """`roots` and everything downstream of them (upstream=True: everything they depend on)."""
    import networkx as nx  # lazy: networkx (~70 ms) stays off the registry commands that build no graph

    out = set(roots)
    for r in list(out):
        out |= nx.ancestors(g, r) if upstream else nx.descendants(g, r)
    return out


def topological(g, nodes: Iterable[str] | None = None) -> list[str]:
    """`nodes` (default: all) upstream first."""
    import networkx as nx  # lazy: networkx (~70 ms) stays off the registry commands that build no graph

    sub = g if nodes is None else g.subgraph(nodes)
    return list(nx.topological_sort(sub))


def cycle_text(cycle: list[tuple[str, str]]) -> str:
    nodes = [u for u, _ in cycle] + [cycle[0][0]]
    return " -> ".join(nodes)


def task_tree(tasks: Mapping[str, object], task: str) -> list[str]:
    """The task tree holding `task`: parent links that carry a parent_class, within one dataset; root first.

    `tasks` maps names to objects with `parent`, `parent_class` and `dataset` (e.g. `TaskRecord`).
    """
    root = task
    while True:
        t = tasks[root]
        p = t.parent  # type: ignore[attr-defined]
        if not (p and t.parent_class and p in tasks and tasks[p].dataset == t.dataset):  # type: ignore[attr-defined]
            break
        root = p
    dataset = tasks[root].dataset  # type: ignore[attr-defined]
    order, frontier = [root], [root]
    while frontier:
        kids = sorted(n for n, t in tasks.items()
                      if t.parent in frontier and t.parent_class and t.dataset == dataset)  # type: ignore[attr-defined]
        order += kids
        frontier = kids
    return order
