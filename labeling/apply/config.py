"""`ApplyConfig`: how labeling functions are applied (torch- and numpy-free, so the CLI builds it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ApplyConfig:
    """How LFs are applied.

    Attributes:
        n_jobs: worker processes for Python LFs (None: every core). Python LFs always run in
            worker processes, never in the applier, so that one can be killed from outside.
        chunk_size: rows per work unit sent to a worker.
        lf_timeout_s: time limit for one LF on one row; past it the row is an abstain
            and the LF is reported (0 disables the limit). A call that does not stop
            (it swallows the interruption, or sits in native code) gets its worker
            killed after 2 * lf_timeout_s + 1 s, and the LF is stopped (fatal "timeout").
        lf_memory_mb: memory limit for each worker process running Python LFs, in MB of
            address space on top of what the worker inherits from the applier when it is
            forked (RLIMIT_AS soft and hard limits, on platforms that have it: an LF cannot
            raise it). An allocation past it raises MemoryError inside the LF: that row is
            an abstain and the LF is reported as raising, like any failing LF. 0 disables
            the limit (needed by LFs that initialise CUDA, which reserves far more address
            space than it uses). Engine "local" only (a Dask worker has its
            own memory_limit).
        progress: show a progress bar (rich) on a terminal, plain lines otherwise.
        engine: "local" (this machine's cores) or "dask" (a Dask cluster; see apply/dask.py).
        scheduler: with engine "dask", the scheduler address (None: a LocalCluster).
    """

    n_jobs: int | None = None
    chunk_size: int = 2000
    lf_timeout_s: float = 5.0
    lf_memory_mb: int = 4096
    progress: bool = True
    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = None
