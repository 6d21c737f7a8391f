"""`ui`: MLflow's own tracking server and web UI over the workspace's MLflow store.

The trainer and distill log to `sqlite:///<ws>/.mothermodel/mlflow.db` with
artifacts under `<ws>/.mothermodel/mlartifacts/` (`Workspace.mlflow_tracking_uri`,
`Workspace.mlflow_artifact_uri`). `mothermodel ui` runs `python -m mlflow server`
on exactly that store as a child process: runs, metrics, artifacts and the Model
Registry's per-task students all show, and nothing here reimplements MLflow.

The child runs in its own session so that a terminal's Ctrl-C reaches only us:
we forward SIGINT/SIGTERM once to MLflow (which forwards to its uvicorn) and
wait for a clean exit, killing the group only if it hangs. This module imports
nothing from MLflow: the CLI stays fast and MLflow starts in the child.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import IO, Optional

from mothermodel.defaults import UI_HOST, UI_PORT
from mothermodel.errors import CommandFailed, UserError

READY_TIMEOUT_S = 120.0  # MLflow's server takes 5-30 s to start on a busy 2-core machine
STOP_TIMEOUT_S = 20.0


def server_command(ws, host: str, port: int) -> list[str]:
    """The `mlflow server` command line for workspace WS."""
    return [sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", ws.mlflow_tracking_uri,
            # Experiments made by the trainer keep their file:// artifact location, which the server
            # reads directly; anything created through the UI lands in the workspace too, not ./mlartifacts.
            "--artifacts-destination", ws.mlflow_artifact_uri,
            "--host", host, "--port", str(port),
            "--workers", "1"]  # one person's browser: one worker is plenty and starts fastest


def check_address(host: str, port: int) -> None:
    """UserError naming --port or --host when the server could not listen there."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise UserError(f"--port: {port!r} is not a port number (1-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host: cannot listen on {host!r} ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        # Like uvicorn: a port left in TIME_WAIT by a previous run is free, one with a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"--port: {port} is already in use on {host} (choose another with --port)") from None
            if e.errno == errno.EACCES:
                raise UserError(f"--port: not allowed to listen on port {port} (choose one above 1023)") from None
            raise UserError(f"--host: cannot listen on {host}:{port} ({e.strerror})") from None


def _connect_host(host: str) -> str:
    # A wildcard bind answers on loopback; a browser cannot open http://0.0.0.0/.
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_for(host: str, port: int) -> str:
    h = _connect_host(host)
    return f"http://[{h}]:{port}/" if ":" in h else f"http://{h}:{port}/"


@dataclass
class UIServer:
    """A running `mlflow server` child. Use as a context manager, or `serve()` to block until it ends."""

    process: subprocess.Popen
    url: str
    host: str
    port: int
    tracking_uri: str

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "UIServer":
        """Block until the server answers /health; CommandFailed if it exits or stays silent."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CommandFailed(f"mlflow server exited with code {self.process.returncode} before it answered "
                                    f"on {self.url} (see its output)")
            try:
                with opener.open(self.url + "health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise CommandFailed(f"mlflow server did not answer on {self.url} within {timeout:.0f} s")

    def serve(self) -> int:
        """Wait until the server ends; SIGINT/SIGTERM stop it cleanly. Returns 0 when stopped by a signal,
        else the server's own exit code."""
        stop_at = None

        def forward(signum, _frame):
            nonlocal stop_at
            stop_at = stop_at or time.monotonic()
            self._signal(signal.SIGTERM)  # again on a second Ctrl-C: uvicorn then skips waiting for requests

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                try:
                    code = self.process.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if stop_at and time.monotonic() - stop_at > STOP_TIMEOUT_S:
                        self._kill_group()
            return 0 if stop_at else code
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to MLflow (it stops its uvicorn), then SIGKILL to the whole group if it hangs."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()

    def _kill_group(self) -> None:
        # Only while our child still runs: its pid is then still its own session's id, never a reused one.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def _signal(self, sig: int) -> None:
        try:
            self.process.send_signal(sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "UIServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(ws, host: str = UI_HOST, port: int = UI_PORT, wait: bool = True,
          output: Optional[IO] = None) -> UIServer:
    """Start MLflow's server and UI for workspace WS on HOST:PORT; with `wait`, return once it answers.

    output: where the server's log lines go (default: this process's stdout/stderr)."""
    check_address(host, port)
    env = dict(os.environ)
    # MLflow's background job runner (GenAI evaluation jobs) is not needed to browse runs and models.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    proc = subprocess.Popen(server_command(ws, host, port), env=env, cwd=ws.root, stdin=subprocess.DEVNULL,
                            stdout=output, stderr=subprocess.STDOUT if output is not None else None,
                            start_new_session=True)
    server = UIServer(proc, url_for(host, port), host, port, ws.mlflow_tracking_uri)
    if wait:
        try:
            server.wait_ready()
        except BaseException:  # Ctrl-C while it starts: leave no server behind
            server.stop()
            raise
    return server
