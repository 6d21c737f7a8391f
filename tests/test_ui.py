"""`mothermodel ui`: MLflow's server over the workspace's store, checked in headless Chromium.

The end-to-end test builds the cheapest workspace with real MLflow content (the
tiny mail task, a 20-step mother model, one n-gram student registered as model
`spam`), starts `mothermodel ui` on a free port, and looks at the experiment's
runs, one run's artifacts and the Model Registry the way a person would: the
MLflow UI is a JavaScript app, so the names must appear in the rendered page, not
just in the REST answers. Screenshots go to the test's tmp folder (printed). It
skips, never fails, where no Chromium is installed (.ci/run installs it when it can).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import Browser, BrowserError, find_chromium
from conftest import cli_exe, run_cli
from test_train import fitted_mail_workspace

# The MLflow UI keeps these in the browser's localStorage (mlflow 3.x): start in the "Model training"
# view, with the assistant panel and the Model Registry promotion closed, so screenshots show the content.
# Only the pictures depend on them: the checks read the page's text.
UI_PREFS = {"mlflow.workflowType_v1": '"machine_learning"', "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
            "mlflow.assistant.panelOpen_v1": "false", "_mlflow_model_registry_promo_modal_dismissed_v1": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ui(ws, port: int, log: Path) -> tuple[subprocess.Popen, str]:
    """`mothermodel -w WS ui --port PORT` as a user runs it; returns the process and the URL it printed."""
    out = open(log, "w")
    proc = subprocess.Popen(cli_exe() + ["-w", str(ws), "ui", "--port", str(port)], stdout=out,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out.close()
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("MLflow UI: "):
                return proc, line.split()[2]
        if proc.poll() is not None:
            pytest.fail(f"mothermodel ui exited {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    _stop(proc)
    pytest.fail(f"mothermodel ui printed no URL within 150 s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> int:
    """Ctrl-C, as a user stops it; SIGTERM, then SIGKILL only if that hangs."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                continue
    return proc.wait()


def _link(text: str, href_part: str) -> str:
    """JavaScript: is there a link showing TEXT whose href contains HREF_PART?"""
    return (f"[...document.querySelectorAll('a')].some(a => a.textContent.trim() === {json.dumps(text)}"
            f" && (a.getAttribute('href') || '').includes({json.dumps(href_part)}))")


@pytest.fixture
def browser():
    """A headless Chromium page; skips (first, before any work) where there is none or it cannot start."""
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium found (/usr/bin/chromium, $CHROMIUM or PATH): install Debian's `chromium` "
                    "package to run the browser test")
    try:
        b = Browser(exe)
    except (BrowserError, OSError) as e:
        pytest.skip(f"Chromium at {exe} does not start headless here: {e}")
    yield b
    b.close()


def test_ui_shows_runs_artifacts_and_registered_models(browser, tmp_path):
    from mlflow import MlflowClient

    ws = fitted_mail_workspace(tmp_path)
    assert run_cli("train", "--encoder", tmp_path / "enc", "--max-steps", 20, "--batch-size", 16, "--max-length", 16,
                   "--self-train-rounds", 0, ws=ws).code == 0
    r = run_cli("distill", "spam", "--student", "ngram", "--epochs", 2, ws=ws)
    assert r.code == 0, r
    client = MlflowClient(tracking_uri=f"sqlite:///{ws / '.mothermodel' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mothermodel")
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([exp.experiment_id])}
    train_run = next(n for n in runs if n == "model v1: spam")
    assert "distill spam v1: ngram student of model v1" in runs, runs

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    port = _free_port()
    proc, url = _start_ui(ws, port, tmp_path / "ui.log")
    try:
        assert url == f"http://127.0.0.1:{port}/"
        b = browser
        b.goto(url + "health")  # same origin as the UI: its localStorage
        b.evaluate("".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in UI_PREFS.items()))

        # The experiment's runs: the training run and the distillation run, by name.
        b.goto(f"{url}#/experiments/{exp.experiment_id}/runs")
        b.wait_for_text(["mothermodel", train_run, "distill spam v1: ngram student of model v1"])
        b.screenshot(shots / "runs.png")

        # A run's artifacts are served from the workspace (mlartifacts/): the trainer's manifest.json.
        b.goto(f"{url}#/experiments/{exp.experiment_id}/runs/{runs[train_run]}/artifacts")
        b.wait_for_text(["manifest.json"])
        b.screenshot(shots / "run-artifacts.png")

        # The Model Registry: the student registered under the task's name.
        b.goto(url + "#/models")
        b.wait_for(_link("spam", "models/spam"), "a link to the registered model spam")
        b.wait_for_text(["Version 1"])
        b.screenshot(shots / "models.png")
        for f in ("runs.png", "run-artifacts.png", "models.png"):
            assert (shots / f).read_bytes()[:4] == b"\x89PNG"
    finally:
        code = _stop(proc)
    log = (tmp_path / "ui.log").read_text()
    assert code == 0, log[-2000:]
    assert "MLflow UI stopped" in log
    with socket.socket() as s:  # the server went with it: the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_ui_bad_input_exits_2_with_one_line(tmp_path):
    """Not a workspace, a port in use, a port out of range: one line naming what to change, exit 2,
    and no MLflow import on the way (the server starts in a child process)."""
    not_ws = tmp_path / "empty"
    not_ws.mkdir()
    p = subprocess.run(cli_exe() + ["ui"], cwd=not_ws, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "MOTHERMODEL_HOME"})
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not inside a mothermodel workspace" in p.stderr

    ws = tmp_path / "ws"
    assert run_cli("init", ws).code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = subprocess.run([sys.executable, "-X", "importtime", "-m", "mothermodel.cli", "-w", str(ws), "ui",
                            "--port", str(port)], capture_output=True, text=True)
    errors = [line for line in p.stderr.splitlines() if not line.startswith("import time:")]
    assert p.returncode == 2 and errors == [f"error: --port: {port} is already in use on 127.0.0.1 "
                                            "(choose another with --port)"], p.stderr[-1000:]
    mods = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in p.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    assert "duckdb" in mods and not {"mlflow", "torch", "transformers"} & mods

    r = run_cli("ui", "--port", 70000, ws=ws)
    assert r.code == 2 and r.err == "error: --port: 70000 is not a port number (1-65535)\n"
    r = run_cli("ui", "--host", "no-such-host.invalid", "--port", _free_port(), ws=ws)
    assert r.code == 2 and r.err.startswith("error: --host: cannot listen on 'no-such-host.invalid'"), r
