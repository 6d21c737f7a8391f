"""Appliers: run labeling functions over a dataset into sparse (row, source, label) entries.

- Declarative LFs (keyword, regex, threshold) become one SQL query that DuckDB
  runs in a single pass over the table: no Python call per row.
- Python LFs run in a process pool over chunks of rows, every core busy.
- Fault isolation: an LF that raises (sys.exit() included), returns a
  non-integer or out-of-range label, runs past its time limit on a row, or
  allocates past its worker's memory limit (MemoryError) is reported per LF
  (rows affected, first traceback); those outputs become abstains and every
  other output is kept. An LF that kills its worker (os._exit, a native
  crash), ignores the time limit (the worker is killed from outside), fails
  on every row, or (declarative) names a missing or wrongly typed column is
  stopped as a whole: `LFReport.fatal` says why, none of its votes are kept,
  and the other LFs still land. Nothing here writes files: the label store
  does, atomically.
- Worker processes run in their own session and die with the applier: a
  `label apply` killed with SIGKILL leaves no orphaned worker behind (Linux:
  PR_SET_PDEATHSIG), and when it ends, each worker's process group (whatever
  its LFs started) is killed.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque, namedtuple
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Sequence

import duckdb
import numpy as np
from rich.console import Console
from rich.progress import Progress

from mothermodel.labeling.apply.config import ApplyConfig
from mothermodel.labeling.lf.core import (ABSTAIN, DeclarativeLF, KeywordLF, LabelingFunction, RegexLF, ThresholdLF,
                                         sql_ident)
from mothermodel.registry.columns import column_problem

try:
    import resource
except ImportError:  # no rlimits on this platform
    resource = None


@dataclass
class LFReport:
    """What went wrong with one LF during an apply (all zero when nothing did).

    `fatal` is set when the LF as a whole failed, so that none of its votes were kept:
    "crashed" (its worker process died in it: os._exit, a segfault), "timeout" (a call
    ignored the time limit and its worker was killed), "every row" (it failed on every
    row), "unusable" (a declarative source whose column is missing or of the wrong type).
    A fatal fault makes `label apply` exit 1 after recording every healthy output;
    faults on some rows only do not (unless --strict)."""

    name: str
    raised: int = 0
    timed_out: int = 0
    bad_type: int = 0
    out_of_range: int = 0
    first_row: int | None = None
    first_error: str | None = None
    crashed: int = 0  # rows whose votes were dropped because the LF was stopped (see `fatal`)
    fatal: str | None = None

    @property
    def failed_rows(self) -> int:
        return self.raised + self.timed_out + self.bad_type + self.out_of_range + self.crashed

    def merge(self, other: "LFReport") -> None:
        self.raised += other.raised
        self.timed_out += other.timed_out
        self.bad_type += other.bad_type
        self.out_of_range += other.out_of_range
        self.crashed += other.crashed
        if self.first_error is None and other.first_error is not None:
            self.first_row, self.first_error = other.first_row, other.first_error
        self.fatal = self.fatal or other.fatal

    def drop(self, reason: str, num_rows: int, error: str | None = None, row: int | None = None) -> None:
        """Mark the whole LF failed: every one of its `num_rows` rows counts as failed."""
        if self.fatal is None:
            self.fatal = reason
            if error is not None:  # the cause goes first: it explains the other counts
                self.first_row, self.first_error = row, error
        self.crashed = max(0, num_rows - (self.raised + self.timed_out + self.bad_type + self.out_of_range))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "failed_rows": self.failed_rows, "raised": self.raised,
                "timed_out": self.timed_out, "bad_type": self.bad_type, "out_of_range": self.out_of_range,
                "first_row": self.first_row, "first_error": self.first_error, "crashed": self.crashed,
                "fatal": self.fatal}


def drop_fatal(applied: "Applied", num_rows: int) -> "Applied":
    """Mark LFs that failed on every row as fatal, and drop every vote of a fatal LF
    (a stopped LF keeps no partial votes, so the result does not depend on scheduling)."""
    for rep in applied.reports.values():
        if num_rows and rep.fatal is None and rep.failed_rows >= num_rows:
            rep.drop("every row", num_rows)
    bad = [j for j, n in enumerate(applied.sources) if applied.reports.get(n) and applied.reports[n].fatal]
    if bad:
        keep = ~np.isin(applied.cols, np.asarray(bad, np.int32))
        applied.rows, applied.cols, applied.labels = applied.rows[keep], applied.cols[keep], applied.labels[keep]
    return applied


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
    """Worker start: its own session, die with the applier, LF prints to stderr, a hard memory cap.

    Its own session (process group): whatever an LF starts is killed with the
    group when the applier is done with the worker. Without PDEATHSIG a
    SIGKILLed `label apply` left its workers behind. The cap counts from the
    size the worker inherited at fork (the applier's numpy/pyarrow/duckdb
    mappings are already there), so `memory_mb` is what LFs may add; it is set
    as the hard limit too, which an LF cannot raise again.
    """
    try:
        os.setsid()
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the applier died before prctl took effect
        os._exit(1)
    os.dup2(2, 1)  # print() in an LF must not reach the applier's stdout (--json)
    if memory_mb and memory_mb > 0:
        if resource is None or not hasattr(resource, "RLIMIT_AS"):  # no rlimits on this platform
            return
        base = _vm_bytes() or 0
        limit = base + int(memory_mb) * 1024 * 1024
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
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

    def __init__(self, timeout: float, share=None):
        self.timeout, self.calls, self.in_call, self.seen, self.stale = timeout, 0, False, -1, 0
        self.share = share  # shared with the applier: it kills a worker whose count stops moving

    def __call__(self, signum, frame):
        if self.share is not None:
            self.share[0] = self.calls
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


def _run_chunk(start: int, stop: int, idx: Sequence[int], share=None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[LFReport]]:
    """Worker side of the local applier: LFs `idx` on rows start..stop of the inherited state."""
    columns: dict[str, list] = _STATE["columns"]
    Row, fields = _STATE["row_type"]
    data = [Row(*vals) for vals in zip(*(columns[f][start:stop] for f in fields))] if fields \
        else [Row() for _ in range(stop - start)]
    r, c, lab, reps = label_rows([_STATE["lfs"][j] for j in idx], data, _STATE["row_ids"][start:stop],
                                 _STATE["cardinality"], _STATE["timeout"], share)
    return r, np.asarray(idx, np.int32)[c] if len(c) else c, lab, reps


def _worker_main(conn, share, parent_pid: int, memory_mb: int) -> None:
    """A local worker: (start, stop, LF indices) requests in, results out, until None or EOF."""
    _init_worker(parent_pid, memory_mb)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        conn.send(_run_chunk(*msg, share=share))
    conn.close()


def label_rows(lfs: Sequence[LabelingFunction], data: Sequence[Any], row_ids: Sequence[int], cardinality: int,
               timeout: float, share=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[LFReport]]:
    """Apply `lfs` to row objects `data` with fault isolation; any engine's workers call this.

    Returns sparse (rows, lf index, labels) and one report per LF. The time
    limit uses SIGALRM, so it applies when called in a process's main thread.
    `share` (3 ints shared with the applier, or None): [calls counted at the last
    timer tick, index of the LF running, calls before that LF started], so the
    applier can tell which LF and row a dead or stuck worker was in.
    """
    out_r, out_c, out_l = [], [], []
    reports = [LFReport(lf.name) for lf in lfs]
    use_timer = (timeout > 0 and hasattr(signal, "setitimer")
                 and threading.current_thread() is threading.main_thread())
    dog = _Watchdog(timeout, share)
    if use_timer:
        dog.start()
    try:
        for j, lf in enumerate(lfs):
            rep = reports[j]
            if share is not None:
                share[1], share[2] = j, dog.calls
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
                except (Exception, SystemExit):  # noqa: BLE001 - isolate any LF failure, sys.exit() too
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
    """Run Python LFs over an Arrow table (needs a `_row` column) in forked worker processes."""
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
    bar = progress_bar(n, label, config.progress)
    try:
        parts, stopped = _run_pool(chunks, len(lfs), min(n_jobs, len(chunks)), config, bar)
    finally:
        bar.close()
        row_ids = _STATE.get("row_ids", [])
        _STATE.clear()
    reports = {lf.name: LFReport(lf.name) for lf in lfs}
    for *_, reps in parts:
        for r in reps:
            reports[r.name].merge(r)
    for j, (reason, error, pos) in stopped.items():
        reports[names[j]].drop(reason, n, error, row_ids[pos] if pos is not None else None)
    return drop_fatal(Applied(
        np.concatenate([p[0] for p in parts]) if parts else empty.rows,
        np.concatenate([p[1] for p in parts]) if parts else empty.cols,
        np.concatenate([p[2] for p in parts]) if parts else empty.labels, names, reports,
    ), n)


class _Worker:
    """A forked worker process in its own session, fed (start, stop, LF indices) over a pipe."""

    def __init__(self, ctx, memory_mb: int):
        self.share = ctx.RawArray("q", 3)  # see label_rows
        self.conn, child = ctx.Pipe()
        sys.stdout.flush()  # or the child would write the parent's buffered output again
        self.proc = ctx.Process(target=_worker_main, args=(child, self.share, os.getpid(), memory_mb))
        self.proc.start()
        child.close()
        # Units sent, oldest first: it answers in order, so units[0] is the one it is in. Two are
        # in flight so that a worker never waits for the applier between chunks.
        self.units: deque[tuple[int, int, list[int]]] = deque()
        self.seen, self.since = -1, 0.0

    def assign(self, unit: tuple[int, int, list[int]]) -> None:
        if not self.units:
            self.seen, self.since = -1, time.monotonic()
            self.share[0], self.share[1] = -1, -1
        self.units.append(unit)
        self.conn.send(unit)

    def where(self) -> tuple[int, int]:
        """(LF index, row position in the dataset) the worker was last known to be at."""
        s, _e, idx = self.units[0]
        if int(self.share[1]) < 0:  # it died before any LF ran: no LF to blame, no point retrying
            raise RuntimeError(f"a labeling worker process died before running any LF (exit code "
                               f"{self.proc.exitcode}; a --memory-mb too small for reading its rows?)")
        local = min(int(self.share[1]), len(idx) - 1)
        row = s + max(int(self.share[0]) - int(self.share[2]) - 1, 0)
        return idx[local], row

    def kill(self) -> None:
        """Kill the worker and everything its LFs started (its process group); reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the worker is unreaped here: its pid is still ours
        except (ProcessLookupError, PermissionError, OSError):
            pass
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def _run_pool(chunks: list[tuple[int, int]], n_lfs: int, n_workers: int, config: ApplyConfig, bar):
    """Run chunks x LFs on forked workers; returns (results, {LF index: (reason, error, row position)}
    for LFs that were stopped). The time limit is enforced in the worker (SIGALRM interrupts a slow
    call: that row abstains) and, for a call that ignores it, from here: the worker is killed."""
    ctx = mp.get_context("fork")  # workers inherit _STATE (LFs, columns) instead of unpickling it
    timeout = float(config.lf_timeout_s or 0)
    hard = 2 * timeout + 1.0 if timeout > 0 else None  # the SIGALRM tick count moves at least every timeout/10
    poll = min(0.25, hard / 8) if hard else 1.0
    pending = deque(chunks)
    stopped: dict[int, tuple[str, str, int | None]] = {}
    parts: list = []
    workers: list[_Worker] = []
    try:
        while True:
            for w in workers + [None] * (n_workers - len(workers)):
                while pending and (w is None or len(w.units) < 2):
                    s, e = pending.popleft()
                    idx = [j for j in range(n_lfs) if j not in stopped]
                    if not idx:
                        bar.advance(e - s)
                        continue
                    if w is None:
                        w = _Worker(ctx, config.lf_memory_mb)
                        workers.append(w)
                    w.assign((s, e, idx))
            busy = [w for w in workers if w.units]
            if not busy:
                break
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=poll))
            now = time.monotonic()
            for w in busy:
                s, e, idx = w.units[0]
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        if w.conn.poll():
                            parts.append(w.conn.recv())
                            w.units.popleft()
                            bar.advance(e - s)
                            continue
                    except (EOFError, OSError):
                        pass
                    if w.proc.sentinel not in ready and w.proc.exitcode is None:
                        continue
                    j, pos = w.where()
                    w.kill()
                    code = w.proc.exitcode
                    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    stopped.setdefault(j, ("crashed", f"the worker process died ({how}) while running this LF "
                                           f"on rows {_STATE['row_ids'][s]}..{_STATE['row_ids'][e - 1]} "
                                           "(os._exit, a crash in native code, or killed): its votes are dropped",
                                           None))
                elif hard is not None:
                    seen = int(w.share[0])
                    if seen != w.seen:
                        w.seen, w.since = seen, now
                        continue
                    if now - w.since < hard:
                        continue
                    j, pos = w.where()
                    w.kill()
                    stopped.setdefault(j, ("timeout", f"a call ran past the {timeout:g} s time limit without "
                                           f"stopping; its worker was killed after {hard:g} s: its votes are dropped",
                                           pos))
                else:
                    continue
                workers.remove(w)
                # Its chunks run again elsewhere, without the stopped LF.
                pending.extendleft(reversed([(us, ue) for us, ue, _ in w.units]))
    finally:
        for w in workers:  # done (or Ctrl-C): no worker, and nothing an LF started, outlives the apply
            w.kill()
    return parts, stopped


def _field_problem(lf: DeclarativeLF, schema) -> str | None:
    """Why `lf` cannot run on a table of this schema (missing column, wrong column type: the rule of
    registry/columns.py, as `task submit` checks it), naming the LF's field; or None."""
    if not isinstance(lf, (KeywordLF, RegexLF, ThresholdLF)):
        return None
    problem = column_problem(schema, lf.column, lf.kind)
    return f"field {lf.column!r}: {problem}" if problem else None


def apply_declarative_lfs(table, lfs: Sequence[DeclarativeLF], cardinality: int) -> Applied:
    """All declarative LFs in one DuckDB pass: one SQL CASE expression per LF, then unpivot."""
    lfs = list(lfs)
    names = [lf.name for lf in lfs]
    reports = {lf.name: LFReport(lf.name) for lf in lfs}
    if not lfs or table.num_rows == 0:
        return Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), names, reports)
    for lf in lfs:
        if not 0 <= lf.label < cardinality:
            reports[lf.name].out_of_range = table.num_rows
            reports[lf.name].first_error = f"label {lf.label} outside 0..{cardinality - 1}"
        problem = _field_problem(lf, table.schema)
        if problem:  # e.g. a keyword source on a numeric column: DuckDB would refuse the whole query
            reports[lf.name].raised = table.num_rows
            reports[lf.name].first_error, reports[lf.name].fatal = problem, "unusable"
    ok = [j for j, lf in enumerate(lfs) if reports[lf.name].failed_rows == 0]
    if not ok:
        return drop_fatal(Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), names,
                                  reports), table.num_rows)
    con = duckdb.connect()
    try:
        con.register("_arrow", table)
        # Copy the needed columns into a DuckDB table once, with lower(field) computed once
        # per field rather than once per keyword LF: scanning Arrow strings per LF costs more.
        # Columns are renamed f<k>/l<k>: no dataset column name can shadow an internal one.
        fields = sorted({lfs[j].column for j in ok})
        lowered = sorted({lfs[j].column for j in ok if isinstance(lfs[j], KeywordLF) and not lfs[j].case_sensitive})
        fcol = {f: f"f{k}" for k, f in enumerate(fields)}
        lcol = {f: f"l{k}" for k, f in enumerate(lowered)}
        cols = (["_row"] + [f"{sql_ident(f)} AS {fcol[f]}" for f in fields]
                + [f"lower({sql_ident(f)}) AS {lcol[f]}" for f in lowered])
        con.execute(f"CREATE TEMP TABLE _data AS SELECT {', '.join(cols)} FROM _arrow")

        def sql(lf):
            if isinstance(lf, KeywordLF) and not lf.case_sensitive:
                return lf.sql(lower_col=lcol[lf.column], col=fcol[lf.column])
            return lf.sql(col=fcol[lf.column])

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
                    rep.raised, rep.fatal = table.num_rows, "unusable"
                    rep.first_row, rep.first_error = None, str(e2).splitlines()[0]
            del e
            res = {"_row": np.concatenate(parts_r) if parts_r else np.empty(0, np.int64),
                   "col": np.concatenate(parts_c) if parts_c else np.empty(0, np.int32),
                   "label": np.concatenate(parts_l) if parts_l else np.empty(0, np.int16)}
    finally:
        con.close()
    return drop_fatal(Applied(np.asarray(res["_row"], np.int64), np.asarray(res["col"], np.int32),
                              np.asarray(res["label"], np.int16), names, reports), table.num_rows)


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
