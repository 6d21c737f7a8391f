"""LF applier on Dask distributed: the same `Applied` as the local applier, for data beyond one machine.

Why Dask (rather than Ray or Spark): it installs from PyPI as pure Python (no
JVM, no native cluster runtime), `distributed.LocalCluster` gives real
multi-process clusters in tests, it reads Parquet natively through pyarrow, and
it ships functions with cloudpickle exactly as our LFs need.

How it runs:

- The client plans partitions. Given a Parquet path (a file or a directory of
  `*.parquet` files), it reads only the footers and sends each task a
  `(file, row group, slice)` description: the worker reads its own rows, the
  table never passes through the client. Given an in-memory Arrow table (or a
  pandas DataFrame), the slices are scattered to the workers once.
- LFs travel as one cloudpickle blob, broadcast once. Functions from spec
  modules that workers cannot import by name (loaded from a file, test
  modules, scripts) are pickled by value (`cloudpickle.register_pickle_by_value`
  for the duration of the dump); `mothermodel`, the standard library and
  installed site-packages are pickled by reference and must be installed on
  the workers.
- Each partition runs `label_rows` (Python LFs) and `apply_declarative_lfs`
  (keyword/regex/threshold LFs, one DuckDB pass) on the worker, and per-LF
  reports are merged across partitions in row order.

The time limit. `label_rows` enforces `lf_timeout_s` with SIGALRM, which works
only in a process's main thread, and Dask runs tasks in worker threads. So by
default (`isolate=True`) every Dask worker keeps helper processes (plain
subprocesses in their own session, one per worker thread, started on first
use, exiting when their worker's pipe closes) and each partition runs inside
one of them, in its main thread: the time limit then behaves exactly as in the
local applier (an LF call past it is interrupted, that row is an abstain, the
LF's `timed_out` count goes up). A call that does not stop (it swallows the
interruption, or sits in a C extension) gets its helper killed (with its
process group) after 2 * lf_timeout_s + 1 s; an LF that kills its helper
(os._exit, a native crash) is found the same way (the helper shares which LF
it is in). Either LF is stopped as a whole (`LFReport.fatal`), the partition
runs again without it, and the other LFs land, as locally. With
`isolate=False` partitions run directly in the Dask worker thread: faster to
start, but **no time limit is enforced** (a warning says so when
`lf_timeout_s > 0`) and an LF that kills its process takes the Dask worker
with it; raised/bad-type/out-of-range isolation is unchanged, and LF output
on stdout goes to stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import mmap
import os
import pickle
import select
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mothermodel.labeling.apply.config import ApplyConfig
from mothermodel.labeling.apply.core import (
    Applied,
    LFReport,
    progress_bar,
    apply_declarative_lfs,
    drop_fatal,
    label_rows,
    row_type,
)
from mothermodel.labeling.lf.core import DeclarativeLF, LabelingFunction


@dataclass
class DaskApplyConfig(ApplyConfig):
    """How LFs are applied on Dask (the `ApplyConfig` fields, plus these).

    Attributes:
        partition_rows: rows per Dask task. Parquet row groups are grouped up to
            this size; a larger row group is split (each piece re-reads that row
            group, so write Parquet with row groups <= partition_rows to avoid it).
        isolate: run each partition in a helper process on the worker so that
            `lf_timeout_s` is enforced (see the module docstring); False runs in
            the Dask worker thread without a time limit.
        n_jobs: only used when no client is given or current: workers of the
            temporary LocalCluster (None: every core).
    """

    partition_rows: int = 50_000
    isolate: bool = True


# --- client side: shipping LFs -------------------------------------------------------


def _site_dirs() -> list[str]:
    dirs = set(getattr(site, "getsitepackages", lambda: [])())
    dirs.add(getattr(site, "getusersitepackages", lambda: "")())
    for key in ("purelib", "platlib"):
        dirs.add(sysconfig.get_paths().get(key, ""))
    return [os.path.realpath(d) + os.sep for d in dirs if d]


def _importable_on_workers(name: str) -> bool:
    """True for modules workers import by name: mothermodel, the stdlib, installed packages."""
    top = name.split(".")[0]
    if top == "mothermodel" or top in getattr(sys, "stdlib_module_names", ()) or top == "builtins":
        return True
    mod = sys.modules.get(name)
    file = getattr(mod, "__file__", None)
    if not file:
        return False
    real = os.path.realpath(file)
    return any(real.startswith(d) for d in _site_dirs())


def _lf_modules(lfs: Sequence[LabelingFunction]) -> set[str]:
    names = set()
    for lf in lfs:
        objs = [lf.f, *lf.pre, type(lf), *(type(v) for v in lf.resources.values())]
        objs += [v for v in lf.resources.values() if callable(v)]
        for o in objs:
            m = getattr(o, "__module__", None)
            if m:
                names.add(m)
    return names


def dumps_lfs(lfs: Sequence[LabelingFunction]) -> bytes:
    """cloudpickle the LFs so that workers which cannot import their modules can still run them."""
    already = {m.__name__ for m in cloudpickle.list_registry_pickle_by_value()} \
        if hasattr(cloudpickle, "list_registry_pickle_by_value") else set()
    registered = []
    try:
        for name in sorted(_lf_modules(lfs)):
            # __main__ and modules no longer in sys.modules (spec loading pops them)
            # are pickled by value by cloudpickle anyway.
            if name == "__main__" or name in already or name not in sys.modules or _importable_on_workers(name):
                continue
            cloudpickle.register_pickle_by_value(sys.modules[name])
            registered.append(sys.modules[name])
        return cloudpickle.dumps(list(lfs))
    finally:
        for mod in registered:
            cloudpickle.unregister_pickle_by_value(mod)


# --- worker side ---------------------------------------------------------------------

_LF_CACHE: dict[str, list] = {}
_CACHE_LOCK = threading.Lock()


def _loads_lfs(blob: bytes) -> list[LabelingFunction]:
    key = hashlib.sha256(blob).hexdigest()
    with _CACHE_LOCK:
        lfs = _LF_CACHE.get(key)
        if lfs is None:
            _LF_CACHE.clear()  # keep one LF set: a worker serves one apply at a time, typically
            lfs = _LF_CACHE[key] = pickle.loads(blob)
    return lfs


def _read_part(source: tuple) -> Any:
    """Materialise a partition: ("table", arrow_table) or ("parquet", path, [(rg, start, stop), ...])."""
    if source[0] == "table":
        return source[1]
    _, path, pieces = source
    pf = _open_parquet(path)
    tables = []
    for rg, start, stop in pieces:
        t = pf.read_row_group(rg)
        tables.append(t if (start == 0 and stop == t.num_rows) else t.slice(start, stop - start))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _open_parquet(path: str):
    if "://" in path:
        fs, p = pafs.FileSystem.from_uri(path)
        return pq.ParquetFile(fs.open_input_file(p))
    return pq.ParquetFile(path)


def label_partition(blob: bytes, source: tuple, row_offset: int, cardinality: int, timeout: float,
                    only: Sequence[int] | None = None, share=None):
    """One partition, wherever it runs: read rows, DuckDB for declarative LFs, label_rows for the rest.

    Returns (rows, cols, labels, reports) with cols indexing the blob's LF list. `only`: the
    indices of the LFs to run (default: all); `share`: see `label_rows` (its LF index counts
    the Python LFs run, in blob order).
    """
    lfs = _loads_lfs(blob)
    table = _read_part(source)
    n = table.num_rows
    if "_row" not in table.column_names:
        table = table.append_column("_row", pa.array(np.arange(row_offset, row_offset + n, dtype=np.int64)))
    run = range(len(lfs)) if only is None else sorted(only)
    decl_idx = [j for j in run if isinstance(lfs[j], DeclarativeLF)]
    py_idx = [j for j in run if not isinstance(lfs[j], DeclarativeLF)]
    rs, cs, ls, reports = [], [], [], {}
    if decl_idx:
        a = apply_declarative_lfs(table, [lfs[j] for j in decl_idx], cardinality)
        rs.append(a.rows); cs.append(np.asarray(decl_idx, np.int32)[a.cols]); ls.append(a.labels)
        reports.update(a.reports)
    if py_idx and n:
        Row, fields = row_type(table.column_names)
        cols = [table.column(f).to_pylist() for f in fields]
        data = [Row(*vals) for vals in zip(*cols)] if fields else [Row() for _ in range(n)]
        r, c, lab, reps = label_rows([lfs[j] for j in py_idx], data, table.column("_row").to_pylist(),
                                     cardinality, timeout, share)
        rs.append(r); cs.append(np.asarray(py_idx, np.int32)[c]); ls.append(lab)
        reports.update({rep.name: rep for rep in reps})
    for j in py_idx:
        reports.setdefault(lfs[j].name, LFReport(lfs[j].name))
    if not rs:
        return np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), reports
    return (np.concatenate(rs).astype(np.int64), np.concatenate(cs).astype(np.int32),
            np.concatenate(ls).astype(np.int16), reports)


def helper_main() -> None:
    """Helper-process loop: requests on stdin, replies on the original stdout (LF prints go to stderr).

    Each request runs in this process's main thread, where SIGALRM (the time limit) works.
    The loop ends at EOF, i.e. when the Dask worker that started us is gone.
    """
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    share = None
    if len(sys.argv) > 1:  # progress shared with the Dask worker (see label_rows), which kills a stuck helper
        with open(sys.argv[1], "r+b") as fh:
            share = (ctypes.c_int64 * 3).from_buffer(mmap.mmap(fh.fileno(), 24))
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        args = pickle.loads(inp.read(int.from_bytes(head, "little")))
        try:
            reply = (True, label_partition(*args, share=share) if args is not None else None)  # None: a ping
        except BaseException:  # noqa: BLE001 - sent back to the Dask task, which raises it
            reply = (False, traceback.format_exc())
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "little"))
        out.write(data)
        out.flush()


class _HelperFailed(Exception):
    """The helper process died, or was killed stuck in an LF call: `lf` is the index (among the Python
    LFs it ran) of the LF it was in, -1 when it was in none."""

    def __init__(self, lf: int, reason: str, message: str):
        super().__init__(message)
        self.lf, self.reason = lf, reason


class _Helper:
    """A helper process (plain subprocess: Dask workers are daemonic, multiprocessing may not fork there),
    in its own session so that whatever its LFs start is killed with it."""

    def __init__(self):
        fd, self.share_path = tempfile.mkstemp(prefix="mothermodel-helper-")
        os.write(fd, b"\0" * 24)
        self.share = (ctypes.c_int64 * 3).from_buffer(mmap.mmap(fd, 24))
        os.close(fd)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from mothermodel.labeling.apply.dask import helper_main; helper_main()",
             self.share_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)

    def call(self, args: tuple | None, hard: float | None = None):
        """Send one request, wait for its reply. `hard`: kill the helper when its LF call count
        (updated by its SIGALRM ticks) stops moving for that many seconds."""
        data = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
        self.share[0], self.share[1] = -1, -1
        seen, since = -1, time.monotonic()
        try:
            self.proc.stdin.write(len(data).to_bytes(8, "little"))
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            while hard is not None and not select.select([self.proc.stdout], [], [], min(0.25, hard / 8))[0]:
                if int(self.share[0]) != seen:
                    seen, since = int(self.share[0]), time.monotonic()
                elif time.monotonic() - since > hard:
                    self.close()
                    raise _HelperFailed(int(self.share[1]), "timeout", (
                        f"a call ran past the time limit without stopping; its helper process was killed after "
                        f"{hard:g} s: its votes are dropped"))
            head = self.proc.stdout.read(8)
            if len(head) < 8:
                raise EOFError
            ok, value = pickle.loads(self.proc.stdout.read(int.from_bytes(head, "little")))
        except (EOFError, BrokenPipeError, OSError):
            self.close()
            raise _HelperFailed(int(self.share[1]), "crashed", (
                f"the helper process died (exit code {self.proc.poll()}) while running this LF (os._exit, a "
                "crash in native code, or out of memory): its votes are dropped")) from None
        self._unlink()  # it has mapped the file by now: the name is no longer needed
        if not ok:
            raise RuntimeError(f"labeling a partition failed in the helper process:\n{value}")
        return value

    def _unlink(self):
        if self.share_path:
            try:
                os.unlink(self.share_path)
            except OSError:
                pass
            self.share_path = None

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # and whatever its LFs started; it is not reaped yet
        except OSError:
            pass
        self.proc.wait()
        self._unlink()


_IDLE: list[_Helper] = []
_IDLE_LOCK = threading.Lock()


def _start_helpers(dask_worker=None) -> int:
    """On a worker: make sure one ready helper process per worker thread exists (see `start_helpers`)."""
    n = int(getattr(dask_worker, "nthreads", None) or dask_worker.state.nthreads) if dask_worker else 1
    with _IDLE_LOCK:
        _IDLE[:] = [h for h in _IDLE if h.proc.poll() is None]
        new = [_Helper() for _ in range(max(0, n - len(_IDLE)))]
    for h in new:
        h.call(None)  # wait until it has imported and answers
    with _IDLE_LOCK:
        _IDLE.extend(new)
    return len(new)


def _worker_threads() -> int:
    try:
        from distributed import get_worker  # lazy: distributed (0.3 s); helper processes import this module

        w = get_worker()
        return int(getattr(w, "nthreads", None) or w.state.nthreads)
    except Exception:  # noqa: BLE001 - not on a worker
        return 1


def start_helpers(client) -> dict[str, int]:
    """Start the helper processes on every worker now (they otherwise start on first use,
    about a second each): useful before timing, or right after a cluster starts.
    Returns {worker address: helpers started}."""
    return client.run(_start_helpers)


def _run_partition(blob: bytes, source: tuple, row_offset: int, cardinality: int, timeout: float, isolate: bool):
    """The Dask task: in a helper process (time limit enforced) or in this worker thread.

    An LF that kills its helper (os._exit, a native crash) or ignores the time limit (its helper is
    killed from here) is stopped: the partition runs again without it, and its report says why."""
    args = (blob, source, row_offset, cardinality, timeout)
    if not isolate:
        with contextlib.redirect_stdout(sys.stderr):  # print() in an LF must not reach the client's stdout
            return label_partition(*args)
    lfs = _loads_lfs(blob)
    hard = 2 * timeout + 1.0 if timeout > 0 else None
    stopped: dict[int, tuple[str, str]] = {}
    while True:
        only = [j for j in range(len(lfs)) if j not in stopped]
        with _IDLE_LOCK:
            helper = _IDLE.pop() if _IDLE else None
        if helper is None or helper.proc.poll() is not None:
            helper = _Helper()  # one per concurrently running task, i.e. per worker thread
        try:
            result = helper.call((*args, only), hard)
        except _HelperFailed as e:
            py = [j for j in only if not isinstance(lfs[j], DeclarativeLF)]
            if not 0 <= e.lf < len(py):
                raise RuntimeError(f"the helper process died outside any LF: {e}") from None
            stopped[py[e.lf]] = (e.reason, str(e))
            continue
        with _IDLE_LOCK:
            _IDLE.append(helper)
        break
    rows, cols, labels, reports = result
    n = _read_part(source).num_rows if stopped else 0
    for j, (reason, message) in stopped.items():
        rep = reports[lfs[j].name] = LFReport(lfs[j].name)
        rep.drop(reason, n, message)
    return rows, cols, labels, reports


# --- client side: planning and merging -----------------------------------------------


def _parquet_files(path: str) -> list[str]:
    if "://" in path:
        return [path]
    p = Path(path)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.parquet files")
        return files
    if not p.exists():
        raise FileNotFoundError(path)
    return [str(p)]


def _plan_parquet(path: str, partition_rows: int) -> list[tuple[tuple, int, int]]:
    """[(source, row_offset, n_rows)] from Parquet footers only."""
    plan, offset = [], 0
    for file in _parquet_files(path):
        md = _open_parquet(file).metadata
        pieces, size, start_off = [], 0, offset
        for rg in range(md.num_row_groups):
            n = md.row_group(rg).num_rows
            for s in range(0, n, partition_rows) if n > partition_rows else [0]:
                e = min(n, s + partition_rows) if n > partition_rows else n
                if e == s:
                    continue
                if pieces and size + (e - s) > partition_rows:
                    plan.append((("parquet", file, pieces), start_off, size))
                    pieces, size, start_off = [], 0, offset
                pieces.append((rg, s, e)); size += e - s; offset += e - s
        if pieces:
            plan.append((("parquet", file, pieces), start_off, size))
    return plan


def _get_client(client, config: DaskApplyConfig):
    """(client, close) from a Client, a scheduler address, the current client, or a temporary LocalCluster."""
    from distributed import Client, LocalCluster, get_client  # lazy: distributed (0.3 s); helpers import this module

    if isinstance(client, str):
        c = Client(client)
        return c, c.close
    if client is not None:
        return client, lambda: None
    try:
        return get_client(), lambda: None
    except ValueError:
        cluster = LocalCluster(n_workers=config.n_jobs or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        c = Client(cluster)

        def close():
            c.close()
            cluster.close()

        return c, close


def apply_lfs_dask(data, lfs: Sequence[LabelingFunction], cardinality: int,
                   config: ApplyConfig | None = None, client=None, label: str = "applying LFs (dask)") -> Applied:
    """Apply LFs on a Dask cluster; the same result as `apply_lfs` (entries sorted by source, then row).

    Args:
        data: a Parquet file or directory path (str/Path, or a pyarrow URI such as
            s3://...; workers read their own row groups), or a pyarrow Table /
            pandas DataFrame (sliced and scattered). Row ids come from a `_row`
            column when there is one, else from the row's position (files in
            sorted order).
        lfs: LabelingFunctions; declarative ones run through DuckDB per partition.
        cardinality: number of classes; labels outside 0..cardinality-1 are reported.
        config: `DaskApplyConfig` (an `ApplyConfig` is accepted: defaults for the rest).
        client: a `distributed.Client`, a scheduler address, or None for the current
            client (or, when there is none, a temporary LocalCluster of `n_jobs` workers).

    Columns are ordered as in `apply_lfs`: declarative LFs first, then Python LFs.
    """
    if config is None:
        config = DaskApplyConfig()
    elif not isinstance(config, DaskApplyConfig):
        config = DaskApplyConfig(**{k: getattr(config, k) for k in ApplyConfig.__dataclass_fields__})
    lfs = list(lfs)
    ordered = [lf for lf in lfs if isinstance(lf, DeclarativeLF)] + [lf for lf in lfs if not isinstance(lf, DeclarativeLF)]
    names = [lf.name for lf in ordered]
    if len(set(names)) != len(names):
        raise ValueError("LF names must be unique")
    reports = {n: LFReport(n) for n in names}
    empty = Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), names, reports)
    if not ordered:
        return empty
    if not config.isolate and config.lf_timeout_s > 0 and any(not isinstance(lf, DeclarativeLF) for lf in ordered):
        warnings.warn("apply_lfs_dask(isolate=False): LFs run in Dask worker threads, where the per-row "
                      "time limit (lf_timeout_s) is not enforced", RuntimeWarning, stacklevel=2)
    step = max(1, int(config.partition_rows))
    is_path = isinstance(data, (str, os.PathLike))
    if is_path:
        plan = _plan_parquet(os.fspath(data), step)
    else:
        if not isinstance(data, pa.Table):
            data = pa.Table.from_pandas(data, preserve_index=False)
        plan = [(None, s, min(step, data.num_rows - s)) for s in range(0, data.num_rows, step)]
    total = sum(n for _, _, n in plan)
    if total == 0:
        return empty

    blob = dumps_lfs(ordered)
    client, close = _get_client(client, config)
    bar = progress_bar(total, label, config.progress)
    try:
        blob_f = client.scatter(blob, broadcast=True, hash=False)
        if not is_path:  # one scatter call for all slices
            slices = client.scatter([data.slice(offset, n) for _, offset, n in plan], hash=False)
            plan = [(("table", f), offset, n) for f, (_, offset, n) in zip(slices, plan)]
        futures = []
        for source, offset, n in plan:
            futures.append(client.submit(_run_partition, blob_f, source, offset, cardinality,
                                         float(config.lf_timeout_s), bool(config.isolate), pure=False))
        index = {f.key: i for i, f in enumerate(futures)}
        parts: list[Any] = [None] * len(futures)
        from distributed import as_completed  # lazy: distributed (0.3 s); helper processes import this module

        for fut in as_completed(futures):
            i = index[fut.key]
            parts[i] = fut.result()
            bar.advance(plan[i][2])
            fut.release()
    finally:
        bar.close()
        close()

    for *_, reps in parts:  # partition order = row order: first_error is the earliest row's
        for name, r in reps.items():
            reports[name].merge(r)
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    labels = np.concatenate([p[2] for p in parts])
    order = np.lexsort((rows, cols))
    return drop_fatal(Applied(rows[order], cols[order], labels[order], names, reports), total)
