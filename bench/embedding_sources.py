"""Embedding sources (issue 21): label quality on trec and youtube, and apply speed over many rows, in one run.

    python bench/embedding_sources.py [--sets trec youtube] [--tune] [--rows 20000] [--skip-speed]
                                      [--snorkel-python /tmp/snorkelvenv/bin/python]

Quality, per WRENCH set (../shared/data; skipped when absent), in a fresh workspace:
1. `import wrench`, `label fit`: the weak-only figure (the set's own LFs, lf_0..lf_{m-1});
2. the seeds: per class the first 5 TRAIN rows whose gold label is that class, in `_row` order (a fixed rule; their
   gold labels are the only gold read from train); the task resubmitted with the LFs plus one embedding source
   `seeds` (seed_rows, bundled MiniLM, every other setting at its default), `label apply`, `label fit`;
3. the seeds' gold labels added as hand labels (`label add`), `label fit` again;
4. Snorkel 0.10's LabelModel (its own interpreter: bench/snorkel_peer.py), fitted on the train rows of the same
   matrices (weak-only, and LFs + the embedding source), predicting valid and test.
Figures: valid and test accuracy, coverage (train rows with at least one vote), the source's own coverage and
accuracy. `--tune` first grids threshold x margin for the source by the mean VALID accuracy over the sets of a
`label fit --no-dev --select-on none` (a fit that reads no valid gold, so valid is held out for it; the default
fit uses valid's gold, and tuning on its valid figure overfits valid: docs/benchmarks.md). The spec's defaults
come from such a run; test is only read for the final figures.

Speed: a synthetic dataset of --rows rows (trec + youtube texts repeated, each copy made distinct by a number
appended), one task with one embedding source: the first `label apply` (the encoder pass over every row; rows/s)
and a re-run after the source changed (cached vectors: its time as a share of the first).
JSON in bench/results/embedding_sources.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from snorkel_peer import DEFAULT_SNORKEL, snorkel_interpreter  # noqa: E402 (stdlib only: the child imports it)

SEEDS_PER_CLASS = 5
SEED = 123
THRESHOLDS = (0.0, 0.2, 0.3, 0.4, 0.5)
MARGINS = (0.02, 0.05)
# Neighbour-mode settings tried (with and without the prototype source beside them), chosen on valid.
NEIGHBOUR_GRID = ({"neighbours": 10, "min_agreement": 0.6}, {"neighbours": 5, "min_agreement": 0.6},
                  {"neighbours": 10, "min_agreement": 0.6, "vote_on": "all"},
                  {"neighbours": 10, "min_agreement": 0.8, "vote_on": "all"})
# Tuning fits use no valid gold (--no-dev, --select-on none): valid must stay a held-out score for them.
TUNE_FIT = ("--no-dev", "--select-on", "none")


def cli(ws: Path, *args: str) -> dict:
    """One CLI command with --json; its parsed output."""
    exe = str(Path(sys.executable).with_name("mothermodel"))
    print("$ mothermodel -w", ws, " ".join(args), file=sys.stderr, flush=True)
    r = subprocess.run([exe, "-w", str(ws), *args, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def acc(metrics: dict, split: str):
    v = (metrics or {}).get(split) or {}
    return round(v["accuracy"], 4) if v.get("accuracy") is not None else None


def seed_rows(table, ds, k: int) -> dict[int, list[int]]:
    """The fixed rule: per class, the first SEEDS_PER_CLASS train rows of that gold class, in `_row` order."""
    import numpy as np

    split = np.asarray(table.column(ds.split_field).to_pylist(), dtype=object)
    gold = np.asarray(table.column(ds.gold_field).to_pylist(), dtype=object)
    rows = table.column("_row").to_numpy()
    order = np.argsort(rows, kind="stable")
    out = {}
    for c in range(k):
        hit = order[(split[order] == "train") & (gold[order] == c)]
        out[c] = [int(r) for r in rows[hit[:SEEDS_PER_CLASS]]]
    return out


def submit(ws: Path, name: str, classes, m: int, seeds: dict[int, list[int]] | None, proto: bool = True,
           neighbours: dict | None = None, **params) -> None:
    from mothermodel import Column, Embedding, Task
    from mothermodel.api import Registry

    sources = [Column(f"lf_{j}") for j in range(m)]
    if seeds is not None and proto:
        sources.append(Embedding(name="seeds", seed_rows={classes[c]: r for c, r in seeds.items()}, **params))
    if seeds is not None and neighbours is not None:
        sources.append(Embedding(name="neighbours", seed_rows={classes[c]: r for c, r in seeds.items()},
                                 **neighbours))
    Registry.open(ws).submit(Task(name=name, dataset=name, classes=list(classes), sources=sources), replace=True)


def matrix(ws: Path, name: str):
    """The latest label matrix, dense (rows x sources, -1 = abstain), its source names, gold and splits."""
    import numpy as np

    from mothermodel.api import Registry
    from mothermodel.labeling.label_files import dense, read_checked
    from mothermodel.registry import datasets

    reg = Registry.open(ws)
    t = reg.store.task(name)
    ds = reg.store.dataset(t.dataset)
    log = reg.label_log(name)["label_matrices"][0]
    m = read_checked(reg.store.ws, log["path"], log["content_hash"])
    names = [s.name for s in t.sources if s.kind != "hand"]
    table = reg.store.read_dataset(ds)
    gold = np.asarray([-1 if g is None else g for g in table.column(ds.gold_field).to_pylist()], np.int64)
    return dense(m, ds.num_rows, names), names, gold, np.asarray(datasets.split_column(table, ds))


def snorkel_figures(python: str | None, L, gold, split, k: int, work: Path) -> dict | None:
    """Snorkel's LabelModel fitted on the train rows of L, in its own interpreter; valid/test accuracy."""
    import numpy as np

    if python is None:
        return None
    npz = work / "snorkel-input.npz"
    np.savez(npz, L=L, gold=gold, split=split.astype(str), k=k)
    p = subprocess.run([python, str(HERE), "--child", str(npz)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONHASHSEED="0"))
    if p.returncode != 0:
        raise SystemExit(f"snorkel child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def child(npz: str) -> None:
    """Snorkel's side: numpy + snorkel only."""
    import numpy as np
    from snorkel.labeling.model import LabelModel

    d = np.load(npz)
    L, gold, split, k = d["L"].astype(np.int64), d["gold"], d["split"], int(d["k"])
    lm = LabelModel(cardinality=k, verbose=False)
    lm.fit(L[split == "train"], seed=SEED, progress_bar=False)
    out = {}
    for s in ("valid", "test"):
        pred = lm.predict(L[split == s], tie_break_policy="random")
        out[s] = round(float((pred == gold[split == s]).mean()), 4)
    print(json.dumps(out))


def coverage(L, split) -> float:
    tr = split == "train"
    return round(float((L[tr] >= 0).any(1).mean()), 4)


def source_quality(L, names, gold, split, source: str = "seeds") -> dict:
    v = L[:, names.index(source)]
    out = {}
    for s in ("train", "valid", "test"):
        sel = split == s
        voted = sel & (v >= 0)
        out[s] = {"coverage": round(float(voted.sum() / max(sel.sum(), 1)), 4),
                  "accuracy": round(float((v[voted] == gold[voted]).mean()), 4) if voted.any() else None}
    return out


def run_set(name: str, args, snorkel: str | None) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mothermodel.api import Registry

    ws = args.ws_root / name
    shutil.rmtree(ws, ignore_errors=True)
    subprocess.run([str(Path(sys.executable).with_name("mothermodel")), "init", str(ws)], check=True,
                   capture_output=True)
    cli(ws, "import", "wrench", str(args.data / name), "--task", name)
    reg = Registry.open(ws)
    t = reg.store.task(name)
    ds = reg.store.dataset(t.dataset)
    classes, m = list(t.classes), sum(1 for s in t.sources if s.kind == "column")
    seeds = seed_rows(reg.store.read_dataset(ds), ds, len(classes))
    out: dict = {"classes": classes, "lfs": m, "seed_rule": f"first {SEEDS_PER_CLASS} train rows of each gold class "
                 "in _row order", "seed_rows": {classes[c]: r for c, r in seeds.items()}, "seconds": {}}

    weak = cli(ws, "label", "fit", name)
    L, names, gold, split = matrix(ws, name)
    out["weak_only"] = {"valid": acc(weak["metrics"], "valid"), "test": acc(weak["metrics"], "test"),
                        "votes_only_test": acc(weak["metrics_votes_only"], "test"),
                        "coverage_train": coverage(L, split),
                        "snorkel": snorkel_figures(snorkel, L, gold, split, len(classes), ws)}

    if args.tune:
        grid, cov = {"weak only": acc(cli(ws, "label", "fit", name, *TUNE_FIT)["metrics"], "valid")}, {}
        for th in THRESHOLDS:
            for mg in MARGINS:
                submit(ws, name, classes, m, seeds, threshold=th, margin=mg)
                f = cli(ws, "label", "fit", name, *TUNE_FIT)
                grid[f"threshold={th},margin={mg}"] = acc(f["metrics"], "valid")
                cov[f"threshold={th},margin={mg}"] = coverage(matrix(ws, name)[0], split)
        out["tune_valid_accuracy"], out["tune_coverage_train"] = grid, cov

    submit(ws, name, classes, m, seeds)  # every setting at its default
    t0 = time.perf_counter()
    applied = cli(ws, "label", "apply", name)
    out["seconds"]["label apply (embedding)"] = round(time.perf_counter() - t0, 1)
    out["source_stats"] = applied["tasks"][0].get("sources", {}).get("seeds")
    fit = cli(ws, "label", "fit", name)
    L, names, gold, split = matrix(ws, name)
    out["with_embedding"] = {"valid": acc(fit["metrics"], "valid"), "test": acc(fit["metrics"], "test"),
                             "votes_only_test": acc(fit["metrics_votes_only"], "test"),
                             "coverage_train": coverage(L, split), "source": source_quality(L, names, gold, split),
                             "snorkel": snorkel_figures(snorkel, L, gold, split, len(classes), ws)}

    # Neighbour mode (propagation from the LFs' votes): settings chosen on VALID (a no-dev fit) among those
    # whose train coverage reaches 0.98 (coverage reads no gold), the best valid overall when none does.
    grid = []
    for proto in (False, True):
        for nb in NEIGHBOUR_GRID:
            submit(ws, name, classes, m, seeds, proto=proto, neighbours=nb)
            f = cli(ws, "label", "fit", name, *TUNE_FIT)
            grid.append({"prototype_source": proto, "neighbours": nb, "valid": acc(f["metrics"], "valid"),
                         "coverage_train": coverage(matrix(ws, name)[0], split)})
    full = [g for g in grid if g["coverage_train"] >= 0.98] or grid
    best = max(full, key=lambda g: g["valid"])  # first of equals: the grid's order
    submit(ws, name, classes, m, seeds, proto=best["prototype_source"], neighbours=best["neighbours"])
    applied = cli(ws, "label", "apply", name)
    fit = cli(ws, "label", "fit", name)
    L, names, gold, split = matrix(ws, name)
    out["with_neighbours"] = {"grid_no_dev_valid": grid, "chosen": {k: best[k] for k in ("prototype_source",
                              "neighbours")}, "valid": acc(fit["metrics"], "valid"), "test": acc(fit["metrics"], "test"),
                              "coverage_train": coverage(L, split),
                              "source": source_quality(L, names, gold, split, "neighbours"),
                              "source_stats": applied["tasks"][0].get("sources", {}).get("neighbours"),
                              "snorkel": snorkel_figures(snorkel, L, gold, split, len(classes), ws)}
    submit(ws, name, classes, m, seeds)  # back to the prototype source alone for the hand-label figure

    hand = ws / "seed-hand-labels.parquet"
    pairs = sorted((r, c) for c, rs in seeds.items() for r in rs)
    pq.write_table(pa.table({"row": [r for r, _ in pairs], "label": [classes[c] for _, c in pairs]}), hand)
    cli(ws, "label", "add", name, str(hand), "--by", "bench-seed-rule")
    fit = cli(ws, "label", "fit", name)
    out["with_embedding_and_hand"] = {"valid": acc(fit["metrics"], "valid"), "test": acc(fit["metrics"], "test"),
                                      "uses_dev_labels": fit["uses_dev_labels"], "hand_rows": len(pairs)}
    w, e, nb = out["weak_only"], out["with_embedding"], out["with_neighbours"]
    out["targets"] = {"lift_test_points": round(100 * (e["test"] - w["test"]), 2),
                      "lift >= 2 points": e["test"] - w["test"] >= 0.02,
                      "coverage >= 0.98": e["coverage_train"] >= 0.98,
                      "neighbours: lift_test_points": round(100 * (nb["test"] - w["test"]), 2),
                      "neighbours: lift >= 2 points": nb["test"] - w["test"] >= 0.02,
                      "neighbours: coverage >= 0.98": nb["coverage_train"] >= 0.98}
    return out


def speed(args) -> dict:
    """Rows/s of the first embedding apply over --rows rows, and a cached re-run's share of it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = []
    for name in ("trec", "youtube"):
        for s in ("train", "valid", "test"):
            f = args.data / name / f"{s}.json"
            if f.is_file():
                texts += [v["data"]["text"] for v in json.loads(f.read_text()).values()]
    if not texts:
        return {"skipped": "no trec/youtube texts"}
    rows = [f"{texts[i % len(texts)]} {i // len(texts)}" if i >= len(texts) else texts[i] for i in range(args.rows)]
    ws = args.ws_root / "speed"
    shutil.rmtree(ws, ignore_errors=True)
    exe = str(Path(sys.executable).with_name("mothermodel"))
    subprocess.run([exe, "init", str(ws)], check=True, capture_output=True)
    pq.write_table(pa.table({"text": rows}), ws / "synthetic.parquet")
    cli(ws, "dataset", "add", "synthetic", str(ws / "synthetic.parquet"))
    spec = ws / "task.yaml"

    def write(threshold: float) -> None:
        spec.write_text("name: synthetic\ndataset: synthetic\nclasses: [A, B]\nsources:\n  - kind: embedding\n"
                        "    name: sim\n    seed_rows: {A: [0, 1], B: [2, 3]}\n"
                        f"    threshold: {threshold}\n")
        cli(ws, "task", "submit", str(spec), "--replace")

    write(0.5)
    t0 = time.perf_counter()
    first = cli(ws, "label", "apply")
    first_s = time.perf_counter() - t0
    write(0.6)  # a changed source: recomputed, from the cached vectors
    t0 = time.perf_counter()
    again = cli(ws, "label", "apply")
    again_s = time.perf_counter() - t0
    st1, st2 = first["tasks"][0]["sources"]["sim"], again["tasks"][0]["sources"]["sim"]
    cache = sorted((ws / ".mothermodel" / "embeddings").glob("*.parquet"))
    return {"rows": args.rows, "cpu_threads": os.cpu_count(), "first": {"command_s": round(first_s, 1), **st1},
            "cached_rerun": {"command_s": round(again_s, 1), **st2},
            "cached_share_of_first_source_s": round(st2["seconds"] / st1["seconds"], 4),
            "cached_share_of_first_command_s": round(again_s / first_s, 4),
            "cache_file_mb": round(sum(p.stat().st_size for p in cache) / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["trec", "youtube"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--ws-root", type=Path, default=Path("/tmp/mm-bench-embedding"))
    ap.add_argument("--tune", action="store_true", help="also grid threshold x margin on valid")
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the speed run's synthetic dataset")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--snorkel-python", default=DEFAULT_SNORKEL)
    ap.add_argument("--skip-snorkel", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "embedding_sources.json")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.data.is_dir():
        print(f"skipped: no data folder {args.data}")
        return
    snorkel = snorkel_interpreter(args.snorkel_python, args.skip_snorkel)
    # A partial run (--skip-speed / --skip-quality) keeps the other half of an earlier result.
    res: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if not args.skip_quality:
        res["sets"] = {n: run_set(n, args, snorkel) for n in args.sets if (args.data / n).is_dir()}
        res.pop("tune_mean_valid", None)
        if args.tune and res["sets"]:
            keys = next(iter(res["sets"].values()))["tune_valid_accuracy"]
            res["tune_mean_valid"] = {k: round(sum(s["tune_valid_accuracy"][k] for s in res["sets"].values())
                                               / len(res["sets"]), 4) for k in keys}
    if not args.skip_speed:
        res["speed"] = speed(args)
    print(f"{'set':8} {'weak':>6} {'+emb':>6} {'+nbrs':>6} {'+hand':>6} {'lift':>6} {'cov':>6} {'cov+emb':>8} "
          f"{'cov+nbrs':>8} {'snorkel':>8} {'snork+emb':>9} {'snork+nbrs':>10}")
    for n, r in res.get("sets", {}).items():
        w, e, h, nb = r["weak_only"], r["with_embedding"], r["with_embedding_and_hand"], r.get("with_neighbours", {})
        f = lambda v: f"{v:.3f}" if isinstance(v, float) else "-"  # noqa: E731
        print(f"{n:8} {f(w['test']):>6} {f(e['test']):>6} {f(nb.get('test')):>6} {f(h['test']):>6} "
              f"{r['targets']['lift_test_points']:>6} {f(w['coverage_train']):>6} {f(e['coverage_train']):>8} "
              f"{f(nb.get('coverage_train')):>8} {f((w['snorkel'] or {}).get('test')):>8} "
              f"{f((e['snorkel'] or {}).get('test')):>9} {f((nb.get('snorkel') or {}).get('test')):>10}")
    if "speed" in res:
        print(json.dumps(res["speed"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
