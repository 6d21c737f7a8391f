"""The dependency DAG: networkx over the registry's edges.

Nodes are tasks; an edge u -> v means v depends on u (u is v's parent, or v
uses u's output as a weak source). Datasets and sources hang off tasks, so a
change to either starts at the tasks that hold them.
"""

from __future__ import annotations

from typing import Any

from mothermodel.errors import UserError


def task_graph(con):
    """All tasks and typed edges as a networkx DiGraph (node attrs: dataset, classes, sources)."""
    import networkx as nx

    g = nx.DiGraph()
    for name, dataset, n_classes, parent, version, n_src in con.execute(
        """SELECT t.name, t.dataset, len(t.classes), t.parent, t.version, coalesce(s.n, 0)
           FROM tasks t LEFT JOIN (SELECT task, count(*) n FROM sources GROUP BY task) s ON s.task = t.name"""
    ).fetchall():
        g.add_node(name, dataset=dataset, n_classes=n_classes, parent=parent, version=version, n_sources=n_src)
    for up, down, kind in con.execute("SELECT upstream, downstream, kind FROM edges").fetchall():
        g.add_edge(up, down, kind=kind)
    return g


def resolve(con, name: str, kind: str = "auto") -> tuple[str, str, list[str]]:
    """What NAME denotes: ('task'|'source'|'dataset', canonical name, tasks it changes directly)."""
    if kind in ("auto", "task"):
        if con.execute("SELECT 1 FROM tasks WHERE name = ?", [name]).fetchone():
            return "task", name, [name]
    if kind in ("auto", "source") and "." in name:
        task, src = name.split(".", 1)
        if con.execute("SELECT 1 FROM sources WHERE task = ? AND name = ?", [task, src]).fetchone():
            return "source", name, [task]
    if kind in ("auto", "dataset"):
        if con.execute("SELECT 1 FROM datasets WHERE name = ?", [name]).fetchone():
            users = [r[0] for r in con.execute("SELECT name FROM tasks WHERE dataset = ? ORDER BY name", [name]).fetchall()]
            return "dataset", name, users
    what = {"auto": "task, TASK.SOURCE or dataset", "task": "task", "source": "TASK.SOURCE", "dataset": "dataset"}[kind]
    raise UserError(f"NAME: no {what} named {name!r}")


def impact(con, name: str, kind: str = "auto") -> dict[str, Any]:
    """Everything a change to NAME makes stale: tasks, label versions, models, deployables."""
    import networkx as nx
    import pyarrow as pa

    what, canonical, direct = resolve(con, name, kind)
    g = nx.DiGraph()
    g.add_edges_from((u, d, {"kind": k}) for u, d, k in con.execute("SELECT upstream, downstream, kind FROM edges").fetchall())
    g.add_nodes_from(direct)
    depth = {t: 0 for t in direct}
    via: dict[str, str | None] = {t: None for t in direct}
    # Breadth-first from the changed tasks: depth = hops from the change.
    frontier = list(direct)
    while frontier:
        nxt = []
        for u in frontier:
            for v in g.successors(u):
                if v not in depth:
                    depth[v] = depth[u] + 1
                    via[v] = u
                    nxt.append(v)
        frontier = nxt
    tasks = sorted(depth, key=lambda t: (depth[t], t))
    con.register("_impacted", pa.table({"name": tasks}))
    try:
        label_versions = [
            {"task": r[0], "kind": r[1], "version": r[2]}
            for r in con.execute(
                """SELECT task, 'label_matrix', version FROM label_matrices WHERE task IN (SELECT name FROM _impacted)
                   UNION ALL
                   SELECT task, 'prob_labels', version FROM prob_labels WHERE task IN (SELECT name FROM _impacted)
                   ORDER BY 1, 2, 3"""
            ).fetchall()
        ]
        models = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT model_version FROM model_tasks WHERE task IN (SELECT name FROM _impacted) ORDER BY 1"
            ).fetchall()
        ]
        deployables = [
            {"task": r[0], "version": r[1], "model_version": r[2], "student": r[3]}
            for r in con.execute(
                "SELECT task, version, model_version, student FROM deployables "
                "WHERE task IN (SELECT name FROM _impacted) ORDER BY 1, 2"
            ).fetchall()
        ]
    finally:
        con.unregister("_impacted")
    return {
        "changed": {"kind": what, "name": canonical},
        "tasks": [
            {"name": t, "depth": depth[t], "via": via[t], "edge": g.edges[via[t], t]["kind"] if via[t] else None}
            for t in tasks
        ],
        "label_versions": label_versions,
        "models": models,
        "deployables": deployables,
    }


# --- renderings ---------------------------------------------------------------


def _label(g, n) -> str:
    d = g.nodes[n]
    return f"{n} [{d.get('dataset')}, {d.get('n_classes')} classes, {d.get('n_sources')} sources, v{d.get('version')}]"


def to_text(g) -> str:
    """An indented tree; a task with several upstreams appears under each (marked ↑ after the first)."""
    import networkx as nx

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
    import os
    import tempfile
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    from mothermodel.registry.files import umask_mode

    g = g.copy()
    for layer, nodes in enumerate(nx.topological_generations(g)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    n_layers = max((d.get("layer", 0) for _, d in g.nodes(data=True)), default=0) + 1
    widest = max((sum(1 for _, d in g.nodes(data=True) if d.get("layer") == i) for i in range(n_layers)), default=1)
    fig, ax = plt.subplots(figsize=(max(6, 3.2 * n_layers), max(3, 0.9 * widest + 1)))
    if g.number_of_nodes():
        pos = nx.multipartite_layout(g, subset_key="layer")
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
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
