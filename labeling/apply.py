"""Appliers: run labeling functions over a dataset into sparse (row, source, label) entries.

- Declarative LFs (keyword, regex, threshold) become one SQL query that DuckDB
  runs in a single pass over the table: no Python call per row.
- Python LFs run in a process pool over chunks of rows, every core busy.
- Fault isolation: an LF that raises, returns a non-integer or out-of-range
  label, runs past its time limit on a row, or allocates past its worker's
  memory limit (MemoryError) is reported per LF (rows affected, first
  traceback); those outputs become abstains and every other output is kept.
  Nothing here writes files: the label store does, atomically.
- Worker processes die with the applier: a `label apply` killed with SIGKILL
  leaves no orphaned worker behind (Linux: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections import namedtuple
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mothermodel.labeling.lf import ABSTAIN, DeclarativeLF, KeywordLF, LabelingFunction, sql_ident


@dataclass
class ApplyConfig:
    """How LFs are applied.

    Attributes:
        n_jobs: worker processes for Python LFs (None: every core; 1: one worker, or this
            process itself when lf_memory_mb is 0).
        chunk_size: rows per work unit sent to a worker.
        lf_timeout_s: time limit for one LF on one row; past it the row is an abstain
            and the LF is reported (0 disables the limit).
        lf_memory_mb: memory limit for each worker process running Python LFs, in MB of
            address space on top of what the worker inherits from the applier when it is
            forked (RLIMIT_AS, on platforms that have it). An allocation past it raises
            MemoryError inside the LF: that row is an abstain and the LF is reported as
            raising, like any failing LF. When set, Python LFs always run in a worker
            process (never in the applier itself, whose memory the limit would cap).
            0 disables the limit (needed by LFs that initialise CUDA, which reserves far
            more address space than it uses). Engine "local" only (a Dask worker has its
            own memory_limit).
        progress: show a progress bar (rich) on a terminal, plain lines otherwise.
        engine: "local" (this machine's cores) or "dask" (a Dask cluster; see dask_apply).
        scheduler: with engine "dask", the scheduler address (None: a LocalCluster).
    """

    n_jobs: int | None = None
    chunk_size: int = 2000
    lf_timeout_s: float = 5.0
    lf_memory_mb: int = 4096
    progress: bool = True
    engine: str = "local"
    scheduler: str | None = None


@dataclass
class LFReport:
    """What went wrong with one LF during an apply (all zero when nothing did)."""

    name: str
    raised: int = 0
    timed_out: int = 0
    bad_type: int = 0
    out_of_range: int = 0
    first_row: int | None = None
    first_error: str | None = None

    @property
    def failed_rows(self) -> int:
        return self.raised + self.timed_out + self.bad_type + self.out_of_range

    def merge(self, other: "LFReport") -> None:
        self.raised += other.raised
        self.timed_out += other.timed_out
        self.bad_type += other.bad_type
        self.out_of_range += other.out_of_range
        if self.first_error is None and other.first_error is not None:
            self.first_row, self.first_error = other.first_row, other.first_error

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "failed_rows": self.failed_rows, "raised": self.raised,
                "timed_out": self.timed_out, "bad_type": self.bad_type, "out_of_range": self.out_of_range,
                "first_row": self.first_row, "first_error": self.first_error}


@dataclass
class Applied:
    """Sparse LF outputs: entry i says LF `sources[cols[i]]` gave `labels[i]` to row `rows[i]`."""

    rows: np.ndarray
    cols: np.ndarray
    labels: np.ndarray
    sources: list[str]
    reports: dict[str, LFReport] = field(default_factory=dict)


def _vm_bytes() -> int | None:
    """This process's current address-space size (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _init_worker(parent_pid: int, memory_mb: int) -> None:
    """Pool initializer: die with the applier, and cap this worker's memory.

    Without the first, a SIGKILLed `label apply` left its workers blocked on
    the task queue forever. The cap counts from the size the worker inherited
    at fork (the applier's numpy/pyarrow/duckdb mappings are already there),
    so `memory_mb` is what LFs may add.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the applier died before prctl took effect
        os._exit(1)
    if memory_mb and memory_mb > 0:
        try:
            import resource
        except ImportError:  # no rlimits on this platform
            return
        if not hasattr(resource, "RLIMIT_AS"):
            return
        base = _vm_bytes() or 0
        limit = base + int(memory_mb) * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        except (ValueError, OSError):  # e.g. macOS refuses RLIMIT_AS: run without the cap
            pass


class _LFTimeout(BaseException):
    # BaseException so that an LF's own `except Exception` cannot swallow it.
    pass


class _Watchdog:
    """One periodic SIGALRM per applier run instead of two setitimer calls per LF call
    (those cost ~30% of a cheap LF's time). The loop bumps `calls` before each LF call;
    a tick that finds the same call still running for `ticks` ticks raises in it."""

    TICKS = 10

    def __init__(self, timeout: float):
        self.timeout, self.calls, self.in_call, self.seen, self.stale = timeout, 0, False, -1, 0

    def __call__(self, signum, frame):
        if not self.in_call or self.calls != self.seen:
            self.seen, self.stale = self.calls, 0
            return
        self.stale += 1
        if self.stale >= self.TICKS:
            self.stale = 0
            raise _LFTimeout()

    def start(self):
        self.old = signal.signal(signal.SIGALRM, self)
        tick = self.timeout / self.TICKS
        signal.setitimer(signal.ITIMER_REAL, tick, tick)

    def stop(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)


def row_type(columns: Sequence[str]):
    """A namedtuple class for rows of these columns (x.text, ...), and the fields it keeps."""
    fields = [c for c in columns if c.isidentifier() and not c.startswith("_")]
    return namedtuple("Row", fields), fields


# State a forked worker inherits: set in the parent just before the pool starts,
# so LFs from spec modules (not importable by name) need no pickling.
_STATE: dict[str, Any] = {}


def _run_chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[LFReport]]:
    """Worker side of the local applier: rows start..stop of the inherited state."""
    columns: dict[str, list] = _STATE["columns"]
    Row, fields = _STATE["row_type"]
    data = [Row(*vals) for vals in zip(*(columns[f][start:stop] for f in fields))]
    return label_rows(_STATE["lfs"], data, _STATE["row_ids"][start:stop], _STATE["cardinality"], _STATE["timeout"])


def label_rows(lfs: Sequence[LabelingFunction], data: Sequence[Any], row_ids: Sequence[int], cardinality: int,
               timeout: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[LFReport]]:
    """Apply `lfs` to row objects `data` with fault isolation; any engine's workers call this.

    Returns sparse (rows, lf index, labels) and one report per LF. The time
    limit uses SIGALRM, so it applies when called in a process's main thread.
    """
    import threading

    out_r, out_c, out_l = [], [], []
    reports = [LFReport(lf.name) for lf in lfs]
    use_timer = (timeout > 0 and hasattr(signal, "setitimer")
                 and threading.current_thread() is threading.main_thread())
    dog = _Watchdog(timeout)
    if use_timer:
        dog.start()
    try:
        for j, lf in enumerate(lfs):
            rep = reports[j]
            for i, x in enumerate(data):
                try:
                    dog.calls += 1
                    dog.in_call = True
                    try:
                        v = lf(x)
                    finally:
                        dog.in_call = False
                except _LFTimeout:
                    rep.timed_out += 1
                    if rep.first_error is None:
                        rep.first_row, rep.first_error = row_ids[i], f"timed out after {timeout} s"
                    continue
                except Exception:  # noqa: BLE001 - isolate any LF failure
                    rep.raised += 1
                    if rep.first_error is None:
                        rep.first_row, rep.first_error = row_ids[i], traceback.format_exc(limit=-3)
                    continue
                if v == ABSTAIN and type(v) is int:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    rep.bad_type += 1
                    if rep.first_error is None:
                        rep.first_row, rep.first_error = row_ids[i], f"returned {v!r} ({type(v).__name__}), not an int"
                    continue
                v = int(v)
                if v == ABSTAIN:
                    continue
                if not 0 <= v < cardinality:
                    rep.out_of_range += 1
                    if rep.first_error is None:
                        rep.first_row, rep.first_error = row_ids[i], f"returned {v}, outside 0..{cardinality - 1} or -1"
                    continue
                out_r.append(row_ids[i]); out_c.append(j); out_l.append(v)
    finally:
        if use_timer:
            dog.stop()  # before the result arrays are built: no tick may land there
    return (np.asarray(out_r, np.int64), np.asarray(out_c, np.int32), np.asarray(out_l, np.int16), reports)


def progress_bar(total: int, label: str, enabled: bool, unit: str = "rows", min_total: int = 20_000):
    """A rich progress bar on a terminal; plain lines (about 10) elsewhere, as in CI. Both on stderr.
    Shown only when there are at least `min_total` units (small runs finish before a bar would help)."""
    import sys

    class _Plain:
        def __init__(self):
            self.done, self.next_report = 0, total / 10

        def advance(self, n):
            self.done += n
            if enabled and (self.done >= self.next_report or self.done == total):
                print(f"{label}: {self.done}/{total} {unit}", file=sys.stderr, flush=True)
                self.next_report += total / 10

        def close(self):
            pass

    enabled = enabled and total >= min_total
    if not enabled or not sys.stderr.isatty():
        return _Plain()
    from rich.console import Console
    from rich.progress import Progress

    # stderr: stdout stays clean for --json and pipes.
    prog = Progress(transient=True, console=Console(stderr=True))
    prog.start()
    task = prog.add_task(label, total=total)

    class _Rich:
        def advance(self, n):
            prog.advance(task, n)

        def close(self):
            prog.stop()

    return _Rich()


def apply_python_lfs(table, lfs: Sequence[LabelingFunction], cardinality: int,
                     config: ApplyConfig | None = None, label: str = "applying LFs") -> Applied:
    """Run Python LFs over an Arrow table (needs a `_row` column) with a process pool."""
    import multiprocessing as mp

    config = config or ApplyConfig()
    lfs = list(lfs)
    n = table.num_rows
    names = [lf.name for lf in lfs]
    empty = Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), names,
                    {lf.name: LFReport(lf.name) for lf in lfs})
    if not lfs or n == 0:
        return empty
    rtype = row_type(table.column_names)
    _STATE.update(
        lfs=lfs, cardinality=cardinality, timeout=config.lf_timeout_s, row_type=rtype,
        columns={f: table.column(f).to_pylist() for f in rtype[1]},
        row_ids=table.column("_row").to_pylist() if "_row" in table.column_names else list(range(n)),
    )
    n_jobs = config.n_jobs or os.cpu_count() or 1
    chunks = [(s, min(s + config.chunk_size, n)) for s in range(0, n, config.chunk_size)]
    parts = []
    bar = progress_bar(n, label, config.progress)
    try:
        # A memory limit needs a worker process: it would otherwise cap the applier itself.
        in_process = (n_jobs == 1 or len(chunks) == 1) and not config.lf_memory_mb
        if in_process:
            for s, e in chunks:
                parts.append(_run_chunk(s, e))
                bar.advance(e - s)
        else:
            # fork: workers inherit _STATE (LFs, columns) instead of unpickling it.
            with ProcessPoolExecutor(max_workers=min(n_jobs, len(chunks)), mp_context=mp.get_context("fork"),
                                     initializer=_init_worker,
                                     initargs=(os.getpid(), config.lf_memory_mb)) as pool:
                futures = [(pool.submit(_run_chunk, s, e), e - s) for s, e in chunks]
                try:
                    for fut, size in futures:
                        parts.append(fut.result())
                        bar.advance(size)
                except BaseException:
                    # Ctrl-C or SIGTERM: stop the workers now instead of waiting for their chunks.
                    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
                    pool.shutdown(wait=False, cancel_futures=True)
                    for proc in procs:
                        proc.terminate()
                    raise
    finally:
        bar.close()
        _STATE.clear()
    reports = {lf.name: LFReport(lf.name) for lf in lfs}
    for *_, reps in parts:
        for r in reps:
            reports[r.name].merge(r)
    return Applied(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]), names, reports,
    )


def apply_declarative_lfs(table, lfs: Sequence[DeclarativeLF], cardinality: int) -> Applied:
    """All declarative LFs in one DuckDB pass: one SQL CASE expression per LF, then unpivot."""
    import duckdb

    lfs = list(lfs)
    names = [lf.name for lf in lfs]
    reports = {lf.name: LFReport(lf.name) for lf in lfs}
    if not lfs or table.num_rows == 0:
        return Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), names, reports)
    for lf in lfs:
        if not 0 <= lf.label < cardinality:
            reports[lf.name].out_of_range = table.num_rows
            reports[lf.name].first_error = f"label {lf.label} outside 0..{cardinality - 1}"
    ok = [j for j, lf in enumerate(lfs) if reports[lf.name].failed_rows == 0]
    con = duckdb.connect()
    try:
        con.register("_arrow", table)
        # Copy the needed columns into a DuckDB table once, with lower(field) computed once
        # per field rather than once per keyword LF: scanning Arrow strings per LF costs more.
        fields = sorted({lfs[j].field for j in ok})
        lowered = sorted({lfs[j].field for j in ok if isinstance(lfs[j], KeywordLF) and not lfs[j].case_sensitive})
        cols = (["_row"] + [sql_ident(f) for f in fields]
                + [f"lower({sql_ident(f)}) AS {sql_ident('__lower_' + f)}" for f in lowered])
        con.execute(f"CREATE TEMP TABLE _data AS SELECT {', '.join(cols)} FROM _arrow")

        def sql(lf):
            if isinstance(lf, KeywordLF) and not lf.case_sensitive:
                return lf.sql(lower_col=f"__lower_{lf.field}")
            return lf.sql()

        selects = ", ".join(f"({sql(lfs[j])})::SMALLINT AS c{j}" for j in ok)
        unions = " UNION ALL ".join(
            f"SELECT _row, {j}::INTEGER AS col, c{j} AS label FROM lf_out WHERE c{j} <> -1" for j in ok)
        try:
            res = con.execute(
                f"WITH lf_out AS (SELECT _row, {selects} FROM _data) {unions}").fetchnumpy()
        except duckdb.Error as e:
            # One bad LF (e.g. an invalid regex) must not sink the others: retry each alone.
            parts_r, parts_c, parts_l = [], [], []
            for j in ok:
                try:
                    r = con.execute(
                        f"SELECT _row, {j}::INTEGER AS col, l AS label FROM "
                        f"(SELECT _row, ({sql(lfs[j])})::SMALLINT AS l FROM _data) WHERE l <> -1 ORDER BY _row"
                    ).fetchnumpy()
                    parts_r.append(r["_row"]); parts_c.append(r["col"]); parts_l.append(r["label"])
                except duckdb.Error as e2:
                    rep = reports[lfs[j].name]
                    rep.raised = table.num_rows
                    rep.first_row, rep.first_error = None, str(e2).splitlines()[0]
            del e
            res = {"_row": np.concatenate(parts_r) if parts_r else np.empty(0, np.int64),
                   "col": np.concatenate(parts_c) if parts_c else np.empty(0, np.int32),
                   "label": np.concatenate(parts_l) if parts_l else np.empty(0, np.int16)}
    finally:
        con.close()
    return Applied(np.asarray(res["_row"], np.int64), np.asarray(res["col"], np.int32),
                   np.asarray(res["label"], np.int16), names, reports)


def apply_lfs(table, lfs: Sequence[LabelingFunction], cardinality: int,
              config: ApplyConfig | None = None, label: str = "applying LFs") -> Applied:
    """Declarative LFs through DuckDB, the rest through the process pool; one result."""
    decl = [lf for lf in lfs if isinstance(lf, DeclarativeLF)]
    py = [lf for lf in lfs if not isinstance(lf, DeclarativeLF)]
    a = apply_declarative_lfs(table, decl, cardinality)
    b = apply_python_lfs(table, py, cardinality, config, label=label)
    names = a.sources + b.sources
    return Applied(
        np.concatenate([a.rows, b.rows]),
        np.concatenate([a.cols, b.cols + len(a.sources)]).astype(np.int32),
        np.concatenate([a.labels, b.labels]),
        names, {**a.reports, **b.reports},
    )
