"""Draw docs/img/architecture.png (the picture in docs/architecture.md).

    python docs/draw_architecture.py          # needs matplotlib (a dependency of mothermodel)

Boxes and arrows only, so the picture stays easy to keep current: edit the
lists below when a module moves.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "img" / "architecture.png"

# (title, lines, colour): the pipeline, left to right
STAGES = [
    ("task specs", ["Task(...) + LFs (.py)", ".yaml / .toml", "datasets: .parquet", ".csv / .jsonl"], "#eeeeee"),
    ("registry/", ["RegistryStore (all SQL)", "DuckDB tables", "networkx DAG", "fingerprints, staleness"], "#dbe9f6"),
    ("labeling/", ["LFs: Python, keyword,", "regex, threshold", "appliers: local / Dask", "label models, text view"], "#dff0d8"),
    ("trainer/", ["shared encoder (MiniLM)", "+ one head per task", "DDP (torchrun), bf16", "warm starts, MLflow"], "#fcf3cf"),
    ("distill/", ["tiny / n-gram student", "per task, KD on the", "mother model's outputs", "ONNX export + check"], "#f9e0d9"),
    ("deployables", ["bundle: model.onnx,", "tokenizer.json,", "labels.json, manifest", "MLflow Model Registry"], "#eeeeee"),
]
TOP = ("mothermodel/", "cli.py (click)  ·  api.Registry (one method per command)  ·  spec.py  ·  "
       "watch.py (relabel, refit, retrain, redistil)  ·  demo/")
# what each stage writes under .mothermodel/ (None: nothing)
STORE = [None, "registry.duckdb\ndata/ (datasets, Parquet)", "labels/ (Parquet, DVC)", "models/ (safetensors)\nmlflow.db, mlartifacts/",
         "deployables/<task>/\nmlartifacts/", None]

W, H, GAP = 2.55, 1.75, 0.45
Y = 2.3


def box(ax, x, y, w, h, colour, title, lines, title_size=12.5):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=colour, ec="#555555", lw=1.2))
    ax.text(x + w / 2, y + h - 0.24, title, ha="center", va="center", fontsize=title_size,
            fontweight="bold", family="DejaVu Sans Mono" if title.endswith("/") else "DejaVu Sans")
    for i, line in enumerate(lines):
        ax.text(x + w / 2, y + h - 0.6 - i * 0.3, line, ha="center", va="center", fontsize=9.5)


def arrow(ax, a, b, style="-|>", ls="-", colour="#333333", rad=0.0):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=16, lw=1.4, ls=ls, color=colour,
                                 connectionstyle=f"arc3,rad={rad}"))


def main() -> None:
    n = len(STAGES)
    width = n * W + (n - 1) * GAP
    fig, ax = plt.subplots(figsize=(width * 0.95, 6.4), dpi=110)
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-0.35, 6.0)
    ax.axis("off")

    xs = [i * (W + GAP) for i in range(n)]
    for x, (title, lines, colour) in zip(xs, STAGES):
        box(ax, x, Y, W, H, colour, title, lines)
    for x in xs[:-1]:
        arrow(ax, (x + W + 0.03, Y + H / 2), (x + W + GAP - 0.03, Y + H / 2))

    # the root package over the stages: the CLI and API drive each stage
    top_y = 4.75
    box(ax, xs[1], top_y, xs[-2] + W - xs[1], 0.85, "#e8e0f0", TOP[0], [], title_size=12.5)
    ax.text((xs[1] + xs[-2] + W) / 2, top_y + 0.27, TOP[1], ha="center", va="center", fontsize=9.5)
    for x in xs[1:-1]:
        arrow(ax, (x + W / 2, top_y - 0.03), (x + W / 2, Y + H + 0.03), colour="#7a5c99")

    # the workspace on disk: every stage records through the registry store
    store_y, store_h = 0.0, 1.25
    box(ax, xs[1], store_y, xs[-2] + W - xs[1], store_h, "#f4f4f4",
        ".mothermodel/   (the workspace; one short registry transaction per write)", [], title_size=10.5)
    for x, what in zip(xs, STORE):
        if what is None:
            continue
        ax.text(x + W / 2, store_y + 0.5, what, ha="center", va="center", fontsize=9.5, family="DejaVu Sans Mono")
        arrow(ax, (x + W / 2, Y - 0.03), (x + W / 2, store_y + store_h + 0.03), ls="--", colour="#777777")
    ax.text(xs[0] + W / 2, 1.55, "task submit\ndataset add", ha="center", va="center", fontsize=9, color="#555555")
    ax.text(xs[-1] + W / 2, 1.55, "export, mlflow\nmodels serve", ha="center", va="center", fontsize=9,
            color="#555555")
    ax.text(width / 2, 5.85, "mothermodel: data flows one way, left to right; each stage reads what the one "
            "before recorded in the registry", ha="center", va="center", fontsize=11.5)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, bbox_inches="tight", facecolor="white")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
