"""The versioned label store: label matrices and probabilistic labels on disk.

Files live under `.mothermodel/labels/<task>/`, named by their content hash
(`lm-<hash>.parquet` for label matrices, `pl-<hash>.parquet` for probabilistic
labels), written to a temporary file and renamed, then recorded in the
registry. Every read checks the file against its recorded hash. The folder is
tracked with DVC, so users can `dvc push` it to a remote.

Label matrix file: sparse rows (row int64, source string, label int16) sorted
by source then row; abstains are absent. Probabilistic labels: row, pred
(int16, ties broken with a fixed seed) and one float32 column per class (plus
`hand`, the hand label's class or -1, for a task with hand labels). Hand labels
(`hl-<hash>.parquet`): row, label (class name), added_by, added_in. Slice membership (`sm-<hash>.parquet`):
row int64, slice (dictionary string), one line per member row and slice.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess

import numpy as np
import pyarrow as pa

from mothermodel.registry.files import read_parquet_checked, write_parquet_addressed


def _write_parquet(ws, task: str, prefix: str, table) -> tuple[str, str]:
    """Write `table` content-addressed under labels/<task>/; returns (path relative to home, hash)."""
    final, digest = write_parquet_addressed(table, ws.labels_dir / task, prefix, ws.tmp_dir)
    return str(final.relative_to(ws.home)), digest


def write_matrix(ws, task: str, rows: np.ndarray, sources: list[str], cols: np.ndarray, labels: np.ndarray):
    order = np.lexsort((rows, cols))
    names = pa.array(sources, pa.string())
    table = pa.table({
        "row": pa.array(rows[order], pa.int64()),
        "source": pa.DictionaryArray.from_arrays(pa.array(cols[order], pa.int32()), names),
        "label": pa.array(labels[order], pa.int16()),
    })
    return _write_parquet(ws, task, "lm", table)


def write_probs(ws, task: str, rows: np.ndarray, probs: np.ndarray, preds: np.ndarray, classes: list[str],
                extra: dict[str, np.ndarray] | None = None):
    """extra: more per-row columns (e.g. `applicable`: P(task applies) for a child in a task tree)."""
    cols = {"row": pa.array(rows, pa.int64()), "pred": pa.array(preds, pa.int16())}
    for k, c in enumerate(classes):
        cols[f"p_{k}"] = pa.array(probs[:, k].astype(np.float32))
    for name, values in (extra or {}).items():
        cols[name] = pa.array(np.asarray(values, np.float32))
    table = pa.table(cols).replace_schema_metadata({"classes": json.dumps(classes)})
    return _write_parquet(ws, task, "pl", table)


def write_membership(ws, task: str, rows: np.ndarray, slices: list[str], cols: np.ndarray):
    """A task's slice membership: (row, slice) per member row and slice, sorted by slice then row."""
    order = np.lexsort((rows, cols))
    table = pa.table({
        "row": pa.array(rows[order], pa.int64()),
        "slice": pa.DictionaryArray.from_arrays(pa.array(cols[order], pa.int32()), pa.array(slices, pa.string())),
    })
    return _write_parquet(ws, task, "sm", table)


def write_hand(ws, task: str, table):
    """A task's hand labels (row, label, added_by, added_in), content-addressed like the other label files."""
    return _write_parquet(ws, task, "hl", table)


def read_checked(ws, rel_path: str, expected_hash: str):
    """Read a label or dataset file, refusing it when its bytes no longer match the recorded hash."""
    return read_parquet_checked(ws.home, rel_path, expected_hash)


def dense(table, num_rows: int, sources: list[str]) -> np.ndarray:
    """Sparse matrix table -> dense (num_rows x len(sources)) int16 with -1 for abstain."""
    L = np.full((num_rows, len(sources)), -1, dtype=np.int16)
    if table.num_rows:
        idx = {s: j for j, s in enumerate(sources)}
        src = table.column("source").combine_chunks()
        names = src.dictionary.to_pylist()
        remap = np.array([idx.get(n, -1) for n in names], dtype=np.int64)
        cols = remap[src.indices.to_numpy(zero_copy_only=False)]
        keep = cols >= 0
        rows = table.column("row").to_numpy()[keep]
        L[rows, cols[keep]] = table.column("label").to_numpy()[keep]
    return L


def dvc_track(ws) -> str | None:
    """Track the labels folder with DVC (dvc init --no-scm outside git). Returns a note on failure."""
    try:
        from dvc.repo import Repo  # lazy: dvc (0.15 s to import), only once label files were written; optional
    except ImportError:
        return "dvc is not installed: label files are not DVC-tracked"
    logging.getLogger("dvc").setLevel(logging.WARNING)
    quiet = io.StringIO()  # DVC draws its own progress bars; ours already told the user
    try:
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            _dvc_add(ws.home, Repo)
    except Exception as e:  # noqa: BLE001 - versioning must not lose the labels just written
        return f"dvc add failed: {type(e).__name__}: {e}".splitlines()[0]
    return None


def _dvc_add(home, Repo) -> None:
    """`dvc add` the labels folder (`Repo`: dvc.repo.Repo, imported by the caller), after `dvc init` if needed."""
    if not (home / ".dvc").is_dir():
        # Inside a git work tree DVC wants to use git, unless git ignores the workspace
        # (then DVC refuses to init there): fall back to --no-scm in that case.
        git = ["git", "-C", str(home)]
        in_git = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True).returncode == 0
        ignored = in_git and subprocess.run([*git, "check-ignore", "-q", str(home)], capture_output=True).returncode == 0
        use_git = in_git and not ignored
        Repo.init(str(home), no_scm=not use_git, subdir=use_git)
    with Repo(str(home)) as repo:
        repo.add([str(home / "labels")])
