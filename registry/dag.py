"""Pictures of the dependency DAG: an indented text tree, Graphviz DOT, mermaid, PNG.

The graph itself comes from `RegistryStore.graph()` (built in `registry.graph`);
impact analysis lives in `registry.lineage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mothermodel.atomic import atomic_path

# --- renderings ---------------------------------------------------------------


def _label(g, n) -> str:
    d = g.nodes[n]
    return f"{n} [{d.get('dataset')}, {d.get('n_classes')} classes, {d.get('n_sources')} sources, v{d.get('version')}]"


def to_text(g) -> str:
    """An indented tree; a task with several upstreams appears under each (marked ↑ after the first)."""
    import networkx as nx  # lazy: networkx (~70 ms) stays off the registry commands that build no graph

    lines: list[str] = []
    shown: set[str] = set()

    def walk(n: str, prefix: str, last: bool, kind: str | None, top: bool) -> None:
        connector = "" if top else ("└── " if last else "├── ")
        tag = f"({kind}) " if kind else ""
        if n in shown:
            lines.append(f"{prefix}{connector}{tag}{n} ↑")
            return
        shown.add(n)
        lines.append(f"{prefix}{connector}{tag}{_label(g, n)}")
        kids = sorted(g.successors(n))
        child_prefix = prefix + ("" if top else ("    " if last else "│   "))
        for i, c in enumerate(kids):
            walk(c, child_prefix, i == len(kids) - 1, g.edges[n, c].get("kind"), False)

    roots = sorted(n for n in g.nodes if g.in_degree(n) == 0)
    for r in roots:
        walk(r, "", True, None, True)
    if not lines:
        return "(no tasks)"
    assert nx.is_directed_acyclic_graph(g)
    return "\n".join(lines)


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g) -> str:
    # DOT is a few lines of text; pydot/pygraphviz would add a system dependency for this.
    out = ["digraph mothermodel {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fillcolor="#eef4ff"];']
    datasets = sorted({d.get("dataset") for _, d in g.nodes(data=True)})
    for ds in datasets:
        out.append(f'  {_q("dataset:" + ds)} [label={_q(ds)}, shape=cylinder, fillcolor="#fff4d6"];')
    for n, d in sorted(g.nodes(data=True)):
        out.append(f"  {_q(n)} [label={_q(n + chr(10) + str(d.get('n_sources')) + ' sources')}];")
        out.append(f"  {_q('dataset:' + str(d.get('dataset')))} -> {_q(n)} [style=dotted, arrowhead=none];")
    for u, v, d in sorted(g.edges(data=True)):
        style = "solid" if d.get("kind") == "parent" else "dashed"
        out.append(f"  {_q(u)} -> {_q(v)} [label={_q(d.get('kind', ''))}, style={style}];")
    out.append("}")
    return "\n".join(out)


def to_mermaid(g) -> str:
    ids = {n: f"t{i}" for i, n in enumerate(sorted(g.nodes))}
    out = ["flowchart LR"]
    for n in sorted(g.nodes):
        d = g.nodes[n]
        out.append(f'  {ids[n]}["{n}<br/>{d.get("n_sources")} sources"]')
    for u, v, d in sorted(g.edges(data=True)):
        arrow = "-->" if d.get("kind") == "parent" else "-.->"
        out.append(f"  {ids[u]} {arrow}|{d.get('kind')}| {ids[v]}")
    return "\n".join(out)


def to_png(g, out_path) -> None:
    """Draw the DAG left to right by topological generation (matplotlib, no system graphviz)."""
    import networkx as nx  # lazy: networkx (~70 ms) stays off the registry commands that build no graph

    import matplotlib  # lazy: heavy; `dag show` (a registry command) must not import it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: heavy; `dag show` (a registry command) must not import it

    g = g.copy()
    for layer, nodes in enumerate(nx.topological_generations(g)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    n_layers = max((d.get("layer", 0) for _, d in g.nodes(data=True)), default=0) + 1
    widest = max((sum(1 for _, d in g.nodes(data=True) if d.get("layer") == i) for i in range(n_layers)), default=1)
    fig, ax = plt.subplots(figsize=(max(6, 3.2 * n_layers), max(3, 0.9 * widest + 1)))
    if g.number_of_nodes():
        pos = nx.multipartite_layout(g, subset_key="layer")
        # Labels do not count for the axes' limits: invisible points make every node's place count,
        # or a task without edges beyond the others' extent is cut off.
        ax.scatter([p[0] for p in pos.values()], [p[1] for p in pos.values()], s=0)
        parent_edges = [(u, v) for u, v, d in g.edges(data=True) if d.get("kind") == "parent"]
        output_edges = [(u, v) for u, v, d in g.edges(data=True) if d.get("kind") != "parent"]
        nx.draw_networkx_edges(g, pos, edgelist=parent_edges, ax=ax, arrows=True, arrowsize=16,
                               edge_color="#3b5b92", min_source_margin=40, min_target_margin=40)
        nx.draw_networkx_edges(g, pos, edgelist=output_edges, ax=ax, arrows=True, arrowsize=16, style="dashed",
                               edge_color="#b5651d", min_source_margin=40, min_target_margin=40)
        labels = {n: f"{n}\n{d.get('dataset')} · {d.get('n_sources')} src" for n, d in g.nodes(data=True)}
        nx.draw_networkx_labels(g, pos, labels=labels, ax=ax, font_size=8,
                                bbox=dict(boxstyle="round,pad=0.4", fc="#eef4ff", ec="#3b5b92"))
        ax.plot([], [], color="#3b5b92", label="parent → child")
        ax.plot([], [], color="#b5651d", linestyle="--", label="task output used as source")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
        ax.margins(0.15)
    else:
        ax.text(0.5, 0.5, "(no tasks)", ha="center", va="center")
    ax.set_title("mothermodel task DAG")
    ax.axis("off")
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out, suffix=".tmp.png") as tmp:  # savefig picks the format by the name's ending
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
