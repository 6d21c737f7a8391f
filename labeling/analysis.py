"""LF analysis: polarity, coverage, overlaps, conflicts and empirical accuracy, in DuckDB SQL
over the sparse label matrix (no Python loop over rows), plus the figures that say which regime
of LFs a task is in (overlapping and confirming rows per LF, conflict rate, near-duplicate LFs) and a warning
when a label model cannot learn much about the LFs' accuracies (docs/label_model.md)."""

from __future__ import annotations

from typing import Any, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mothermodel.errors import UserError
from mothermodel.labeling import label_files, slices
from mothermodel.labeling.model.dependencies import near_duplicate_groups
from mothermodel.registry import gold as gold_rule


#: An LF's accuracy is learned only from the rows it shares with other LFs; below this many,
#: the label model leans on the shared weight (LabelModelConfig.shrink_strength is 20 such rows).
MIN_OVERLAP_ROWS = 20


def regime_figures(overlap_rows: Sequence[int], num_rows: int, overlapped: int, conflicted: int,
                   min_overlap_rows: int = MIN_OVERLAP_ROWS,
                   confirm_rows: Sequence[int] | None = None) -> dict[str, Any]:
    """Task-level figures from per-LF overlapping-row counts and the rows with 2+ votes / 2+ classes.

    Returns ``overlap_rate``, ``conflict_rate`` (shares of all rows), ``median_overlap_rows``,
    ``lfs_with_few_overlaps`` (fewer than `min_overlap_rows`), ``median_confirm_rows`` (rows where
    another LF votes an LF's label; None without `confirm_rows`) and ``warnings`` (a list of lines:
    one when most LFs have fewer than `min_overlap_rows` overlapping rows, one when most have
    overlaps but no confirmation: every overlap a conflict).
    """
    counts = np.asarray(list(overlap_rows), dtype=np.int64)
    few = int((counts < min_overlap_rows).sum())
    warnings = []
    if len(counts) and few > len(counts) / 2:
        warnings.append(
            f"{few} of {len(counts)} LFs share fewer than {min_overlap_rows} rows with another LF: their "
            f"accuracies cannot be learned from the votes, so the label model gives them one shared weight "
            f"(a majority vote whose ties the class balance breaks); more overlapping LFs, or dev labels "
            f"(--select-on valid), tell them apart")
    med_conf = None
    if confirm_rows is not None and len(counts):
        conf = np.asarray(list(confirm_rows), dtype=np.int64)
        med_conf = float(np.median(conf))
        if not warnings and med_conf < 1:
            warnings.append(
                f"{int((conf == 0).sum())} of {len(conf)} LFs never vote alongside another LF of the same label: "
                f"every overlap is a conflict, so the votes barely tell their accuracies apart and the label "
                f"model may do no better than majority vote; a second LF per class, or dev labels "
                f"(--select-on valid), tell them apart")
    return {"overlap_rate": overlapped / num_rows if num_rows else 0.0,
            "conflict_rate": conflicted / num_rows if num_rows else 0.0,
            "median_overlap_rows": float(np.median(counts)) if len(counts) else 0.0,
            "lfs_with_few_overlaps": few, "min_overlap_rows": min_overlap_rows,
            "median_confirm_rows": med_conf, "warnings": warnings}


def analyze(store, task: str, split: str | None = None) -> dict[str, Any]:
    snap = store.snapshot()
    if task not in snap.tasks:
        raise UserError(f"TASK: unknown task {task!r}")
    t = snap.tasks[task]
    m = snap.latest_matrix.get(task)
    if m is None:
        raise UserError(f"TASK: {task} has no label matrix yet; run `mothermodel label apply {task}`")
    ds = snap.datasets[t.dataset]
    entries = label_files.read_checked(store.ws, m.path, m.content_hash)
    hand = t.hand_source
    hand_rows = 0
    if hand is not None:  # clean labels, not votes: out of every LF figure, counted on their own
        is_hand = pc.equal(entries.column("source").cast(pa.string()), hand.name)
        hand_rows = int(pc.sum(is_hand).as_py() or 0)
        entries = entries.filter(pc.invert(is_hand))
    sources = [s for s in t.sources if s.kind != "hand"]
    data = store.read_dataset(ds)
    gold, gold_warning = gold_rule.resolve(data, t, ds)  # class names or indices, checked (registry/gold.py)
    cols = {"row": data.column("_row")}
    cols["split"] = data.column(ds.split_field) if ds.split_field else pa.array(["all"] * data.num_rows)
    cols["gold"] = pa.array(gold, pa.int64()) if gold is not None else pa.nulls(data.num_rows, pa.int64())
    rows_tbl = pa.table(cols)
    if split is not None and split not in set(cols["split"].to_pylist()):
        raise UserError(f"--split: no rows in split {split!r}")
    con = duckdb.connect()
    try:
        con.register("entries", entries)
        con.register("rows_tbl", rows_tbl)
        where = "WHERE r.split = $split" if split else ""
        params = {"split": split} if split else {}
        n = con.execute(f"SELECT count(*) FROM rows_tbl r {where}", params).fetchone()[0]
        res = con.execute(
            f"""
            WITH e AS (SELECT e.row, e.source::VARCHAR AS source, e.label, r.gold
                       FROM entries e JOIN rows_tbl r ON r.row = e.row {where}),
                 per_row AS (SELECT row, count(*) AS n_lfs, count(DISTINCT label) AS n_labels FROM e GROUP BY row),
                 per_label AS (SELECT row, label, count(*) AS n_same FROM e GROUP BY row, label)
            SELECT e.source,
                   list(DISTINCT e.label ORDER BY e.label) AS polarity,
                   count(*) AS covered,
                   count(*) FILTER (WHERE p.n_lfs > 1) AS overlapped,
                   count(*) FILTER (WHERE p.n_labels > 1) AS conflicted,
                   count(*) FILTER (WHERE e.gold >= 0 AND e.label = e.gold) AS correct,
                   count(*) FILTER (WHERE e.gold >= 0 AND e.label <> e.gold) AS incorrect,
                   count(*) FILTER (WHERE q.n_same > 1) AS confirmed
            FROM e JOIN per_row p USING (row) JOIN per_label q USING (row, label)
            GROUP BY e.source
            """, params).fetchall()
        totals = con.execute(
            f"""WITH e AS (SELECT e.row, e.label FROM entries e JOIN rows_tbl r ON r.row = e.row {where}),
                     per_row AS (SELECT row, count(*) AS n_lfs, count(DISTINCT label) AS n_labels
                                 FROM e GROUP BY row)
                SELECT count(*), count(*) FILTER (WHERE n_lfs > 1), count(*) FILTER (WHERE n_labels > 1)
                FROM per_row""", params).fetchone()
        pairs = con.execute(
            f"""SELECT e.row, e.source::VARCHAR AS source, e.label FROM entries e JOIN rows_tbl r ON r.row = e.row
                {where}""", params).fetchnumpy()
        member = slices.read(store, t, ds)
        per_slice = _slice_figures(con, member, where, params, t, sources) if member is not None else None
    finally:
        con.close()
    by = {r[0]: r for r in res}
    lfs = []
    for s in sources:
        r = by.get(s.name)
        covered, overlapped, conflicted, correct, incorrect, confirmed = r[2:8] if r else (0, 0, 0, 0, 0, 0)
        lfs.append({
            "name": s.name, "kind": s.kind, "version": s.version,
            "polarity": [t.classes[i] for i in (r[1] if r else [])],
            "coverage": covered / n if n else 0.0,
            "overlaps": overlapped / n if n else 0.0,
            "conflicts": conflicted / n if n else 0.0,
            "overlap_rows": overlapped,
            "confirm_rows": confirmed,
            "correct": correct, "incorrect": incorrect,
            "empirical_accuracy": correct / (correct + incorrect) if correct + incorrect else None,
        })
    names = [s.name for s in sources]
    groups = _near_duplicates(pairs, names, len(t.classes))
    out = {"task": task, "label_matrix_version": m.version, "split": split or "all", "num_rows": n,
           "coverage": (totals[0] / n) if n else 0.0, "gold": gold is not None, "lfs": lfs,
           **regime_figures([lf["overlap_rows"] for lf in lfs], n, totals[1], totals[2],
                            confirm_rows=[lf["confirm_rows"] for lf in lfs]),
           "near_duplicate_groups": [[names[j] for j in g] for g in groups]}
    if per_slice is not None:
        out["slices"] = {**member.to_json(), "slices": per_slice}
        if member.stale:
            out["warnings"].append(f"slice(s) {', '.join(member.stale)} changed since their membership was computed: "
                                   "not analysed; run `mothermodel label apply`")
    elif t.slices:
        out["warnings"].append("the task's slices have no membership yet: run `mothermodel label apply`")
    if hand is not None:  # all the task's hand-labelled rows (the split filter does not apply: they are not scored)
        out["hand_labels"] = {"version": hand.version, "rows": hand_rows}
    if gold_warning:
        out["warnings"].append(gold_warning)
    return out


def _slice_figures(con, member: "slices.Membership", where: str, params: dict, t, sources) -> list[dict[str, Any]]:
    """Inside each slice (rows of the analysed split): its rows, coverage, conflicts, and each LF's coverage
    and empirical accuracy there, next to the same figures over the whole split."""
    r, j = np.nonzero(member.members)
    con.register("members", pa.table({"row": pa.array(r, pa.int64()),
                                      "slice": pa.array(np.array(member.names, dtype=object)[j], pa.string())}))
    m = "SELECT m.row, m.slice FROM members m JOIN rows_tbl r ON r.row = m.row " + where
    e = ("SELECT e.row, e.source::VARCHAR AS source, e.label, r.gold FROM entries e JOIN rows_tbl r ON r.row = e.row "
         + where)
    per = {row[0]: row[1:] for row in con.execute(
        f"""WITH m AS ({m}), e AS ({e}),
                 per_row AS (SELECT row, count(DISTINCT label) AS n_labels FROM e GROUP BY row)
            SELECT m.slice, count(*), count(p.row), count(*) FILTER (WHERE p.n_labels > 1)
            FROM m LEFT JOIN per_row p USING (row) GROUP BY m.slice""", params).fetchall()}
    lf = {}
    for name, source, covered, correct, incorrect in con.execute(
            f"""WITH m AS ({m}), e AS ({e})
                SELECT m.slice, e.source, count(*), count(*) FILTER (WHERE e.gold >= 0 AND e.label = e.gold),
                       count(*) FILTER (WHERE e.gold >= 0 AND e.label <> e.gold)
                FROM m JOIN e USING (row) GROUP BY ALL""", params).fetchall():
        lf.setdefault(name, {})[source] = (covered, correct, incorrect)
    out = []
    for name in member.names:
        n, covered, conflicted = per.get(name, (0, 0, 0))
        lfs = []
        for s in sources:
            c, ok, bad = lf.get(name, {}).get(s.name, (0, 0, 0))
            lfs.append({"name": s.name, "coverage": c / n if n else 0.0, "correct": ok, "incorrect": bad,
                        "empirical_accuracy": ok / (ok + bad) if ok + bad else None})
        out.append({"name": name, "rows": n, "coverage": covered / n if n else 0.0,
                    "conflicts": conflicted / n if n else 0.0, "lfs": lfs})
    return out


def _near_duplicates(pairs: dict, names: list[str], k: int) -> list[list[int]]:
    """Near-duplicate LF groups (labeling/model/dependencies.py) among the covered rows of the analysed split."""
    rows = np.asarray(pairs["row"])
    if not len(rows):
        return []
    uniq, r = np.unique(rows, return_inverse=True)
    col = {nm: j for j, nm in enumerate(names)}
    srcs, inv = np.unique(np.asarray(pairs["source"]).astype(str), return_inverse=True)
    c = np.array([col.get(x, -1) for x in srcs.tolist()], np.int64)[inv.ravel()]  # loop over sources, not entries
    keep = c >= 0
    L = np.full((len(uniq), len(names)), -1, np.int16)
    L[r[keep], c[keep]] = np.asarray(pairs["label"])[keep]
    return near_duplicate_groups(L, k)
