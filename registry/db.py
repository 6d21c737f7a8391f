"""Opening the registry: short-lived connections, a file lock, transactions.

DuckDB lets only one process open a database file for writing, and then no
other process may open it at all, readers included; a second open fails at
once. So every command opens, works, commits and closes, and processes queue
on an advisory lock file first (shared for readers, exclusive for writers).
A DuckDB lock error that still happens (another DuckDB client has the file
open) is retried with backoff until `MOTHERMODEL_LOCK_TIMEOUT` seconds.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from contextlib import contextmanager
from typing import Iterator

import duckdb

from mothermodel.errors import RegistryBusy, UserError
from mothermodel.registry import schema

DEFAULT_LOCK_TIMEOUT = 120.0


def _lock_timeout() -> float:
    try:
        return float(os.environ.get("MOTHERMODEL_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        raise UserError("MOTHERMODEL_LOCK_TIMEOUT: must be a number of seconds") from None


def _backoff(attempt: int) -> float:
    # Exponential with full jitter, capped: many CLI processes started together
    # spread out instead of retrying in lock-step.
    return random.uniform(0, min(0.2, 0.002 * (2**attempt)))


@contextmanager
def _file_lock(path, exclusive: bool, deadline: float) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        attempt = 0
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegistryBusy(f"{path}: registry stayed locked by another process") from None
                time.sleep(_backoff(attempt))
                attempt += 1
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "lock" in msg or "conflicting" in msg or "being used" in msg


def _open(path: str, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
    attempt = 0
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as e:
            if not _is_lock_error(e):
                raise
            if time.monotonic() > deadline:
                # Another DuckDB client (not a mothermodel command: those queue on the lock file) holds it.
                raise RegistryBusy(f"{path}: registry stayed locked by another process "
                                   f"({str(e).splitlines()[0]})") from None
            time.sleep(_backoff(attempt))
            attempt += 1


def _version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()[0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    current = _version(con)
    _check_not_newer(current)
    for v in range(current, schema.LATEST):
        for stmt in schema.MIGRATIONS[v]:
            con.execute(stmt)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [v + 1])


def ensure_schema(ws) -> None:
    """Create or migrate the registry's schema, in one transaction."""
    with connect(ws, write=True, migrate=True):
        pass


def fault_point(name: str) -> None:
    """Test hook: with MOTHERMODEL_FAULT=name:MARKER set, touch MARKER and hang here.

    The kill tests use it to SIGKILL a process at a known point inside a write
    transaction. Costs one environment lookup otherwise.
    """
    spec = os.environ.get("MOTHERMODEL_FAULT")
    if spec and spec.split(":", 1)[0] == name:
        marker = spec.split(":", 1)[1] if ":" in spec else None
        if marker:
            with open(marker, "w") as fh:
                fh.write(str(os.getpid()))
        time.sleep(3600)


def _check_not_newer(v: int) -> None:
    if v > schema.LATEST:
        raise UserError(
            f"registry schema version {v} is newer than this mothermodel knows ({schema.LATEST}): upgrade mothermodel"
        )


@contextmanager
def connect(ws, write: bool = False, migrate: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one unit of work.

    write=True: exclusive lock and one transaction, committed on success and
    rolled back on any exception (a killed process never commits, so the
    registry stays as it was before the command).
    """
    deadline = time.monotonic() + _lock_timeout()
    path = str(ws.db_path)
    if not write and not ws.db_path.exists():
        raise UserError(f"{ws.root}: not a mothermodel workspace (no registry.duckdb)")
    if write:
        with _file_lock(ws.lock_path, exclusive=True, deadline=deadline):
            con = _open(path, read_only=False, deadline=deadline)
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    if migrate or _version(con) != schema.LATEST:
                        _migrate(con)
                    yield con
                    fault_point("before_commit")
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.close()
        return
    for _ in range(2):
        with _file_lock(ws.lock_path, exclusive=False, deadline=deadline):
            con = _open(path, read_only=True, deadline=deadline)
            try:
                v = _version(con)
                _check_not_newer(v)
                if v == schema.LATEST:
                    yield con
                    return
            finally:
                con.close()
        # An older registry: upgrade it under the write lock, then read again.
        ensure_schema(ws)
    raise RuntimeError("registry schema did not reach the latest version")
