"""Reliability and first use: export never deletes what it did not write, a copied workspace is its own,
logging never loses a finished run, ordinary commands print no library noise, Ctrl-C during `train` says
how to go on, `dag impact` lists what is current, MLflow runs are named for what they made, and the
getting-started guide's runner command works from where the guide puts you.

One tiny trained and distilled workspace is built once for the module; tests that change a workspace
change a `cp -a` copy of it."""

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, run_cli, run_proc
from test_train import TINY, fitted_mail_workspace


def _train(ws, *extra, enc=None):
    enc = enc or Path(ws).parent / "enc"  # a copy trains with its original's encoder
    return run_cli("train", "--encoder", enc, "--max-steps", 10, "--batch-size", 16, "--max-length", 16,
                   "--lr", "1e-3", "--self-train-rounds", 0, *TINY, *extra, "--json", ws=ws)


def _distill(ws):
    return run_cli("distill", "spam", "--student", "tiny", "--epochs", "1", "--json", ws=ws)


@pytest.fixture(scope="module")
def fws(tmp_path_factory):
    """FOLDER/ws: task `spam` on dataset `mail`, labels fit, a tiny model trained and distilled once;
    FOLDER/enc its encoder."""
    root = fitted_mail_workspace(tmp_path_factory.mktemp("first"))
    r = _train(root)
    assert r.code == 0, r
    r = _distill(root)
    assert r.code == 0, r
    return root


def _copy(ws, dest: Path) -> Path:
    """`cp -a` of the workspace's folder (its encoder and dataset files stay where they were)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(ws), str(dest / "ws")], check=True)
    return dest / "ws"


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _client(ws):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{Path(ws) / '.mothermodel' / 'mlflow.db'}")


# --- 1. export never deletes what it did not write -------------------------------------------------------

def test_export_refuses_a_folder_that_is_not_only_an_earlier_bundle(fws, tmp_path):
    good = tmp_path / "bundle"
    assert run_cli("export", "spam", "--out", good, ws=fws).code == 0
    manifest = (good / "manifest.json").read_text()

    # A bundle folder with the user's own files beside it (the docs suggest copying run_bundle.py there).
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text(manifest)
    (mine / "run_bundle.py").write_text("# my copy\n")
    (mine / "notes").mkdir()
    (mine / "notes" / "todo.txt").write_text("keep me\n")
    # Some other tool's manifest.json.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text(json.dumps({"name": "my-app", "files": {}}))
    (foreign / "app.py").write_text("print('hi')\n")
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "manifest.json").write_text(json.dumps({"name": "my-app"}))
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    for out in (mine, foreign, lone, afile):
        before = _hashes(out) if out.is_dir() else afile.read_text()
        r = run_cli("export", "spam", "--out", out, ws=fws)
        assert r.code == 2, (out, r)
        assert "--out" in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert (_hashes(out) if out.is_dir() else afile.read_text()) == before, out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]

    # An earlier bundle, and nothing else, is replaced.
    (good / "model.onnx").unlink()  # an incomplete earlier bundle is still only the bundle's files
    r = run_cli("export", "spam", "--out", good, "--json", ws=fws)
    assert r.code == 0, r
    assert sorted(p.name for p in good.iterdir()) == ["labels.json", "manifest.json", "model.onnx", "tokenizer.json"]
    assert run_cli("export", "spam", "--out", good, ws=fws).code == 0


# --- 2. a copied workspace is its own --------------------------------------------------------------------

@pytest.fixture(scope="module")
def copied(fws, tmp_path_factory):
    """A `cp -a` copy of fws that labels, trains and distils; with the original's file hashes before and after."""
    before = _hashes(fws)
    copy = _copy(fws, tmp_path_factory.mktemp("copy"))
    assert run_cli("label", "fit", "spam", "--model", "majority", ws=copy).code == 0
    r = _train(copy, enc=fws.parent / "enc")
    assert r.code == 0, r
    trained = json.loads(r.out)
    r = _distill(copy)
    assert r.code == 0, r
    return {"copy": copy, "before": before, "after": _hashes(fws), "train": trained, "distill": json.loads(r.out)}


def test_a_copied_workspace_leaves_the_original_byte_identical(fws, copied):
    assert copied["after"] == copied["before"]
    assert copied["train"]["model_version"] == 2 and copied["distill"]["deployable_version"] == 2
    assert copied["train"]["mlflow_tracking_uri"].startswith(f"sqlite:///{copied['copy']}/")


def test_a_copied_workspace_records_its_mlflow_artifacts_inside_itself(fws, copied):
    copy = copied["copy"]
    home_uri = (copy / ".mothermodel").as_uri() + "/"
    client = _client(copy)
    exp = client.get_experiment_by_name("mothermodel")
    assert exp.artifact_location.startswith(home_uri)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4  # the original's train and distill, and the copy's own
    for run in runs:
        assert run.info.artifact_uri.startswith(home_uri), run.info.artifact_uri
        assert run.data.tags["mothermodel.workspace"] == str(copy)
    new = client.get_run(copied["train"]["mlflow_run_id"])
    assert (copy / ".mothermodel" / "mlartifacts" / new.info.run_id / "artifacts" / "manifest.json").is_file()
    versions = client.search_model_versions("name = 'spam'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    for v in versions:
        assert v.source.startswith(home_uri) and v.tags["mothermodel.workspace"] == str(copy)
    # The original's store still points at the original.
    orig = _client(fws).get_experiment_by_name("mothermodel")
    assert orig.artifact_location.startswith((fws / ".mothermodel").as_uri() + "/")


def test_a_moved_workspace_loads_its_registered_model(fws, tmp_path, monkeypatch):
    import mlflow.pyfunc
    import pandas as pd

    moved = _copy(fws, tmp_path / "a")
    moved = moved.rename(tmp_path / "moved")  # a copy, then moved: its recorded root exists nowhere
    assert run_cli("status", ws=moved).code == 0  # any command rebases its MLflow store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{moved / '.mothermodel' / 'mlflow.db'}")
    # Tamper with the original's registered bundle: loading from the moved workspace must not read it.
    orig, = (fws / ".mothermodel" / "mlartifacts").glob("*/artifacts/model/artifacts/*/model.onnx")
    good = orig.read_bytes()
    try:
        orig.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
        model = mlflow.pyfunc.load_model("models:/spam/1")
        assert len(model.predict(pd.DataFrame({"text": ["win money", "hello friend"]}))) == 2
    finally:
        orig.write_bytes(good)


# --- dag impact and MLflow run names ----------------------------------------------------------------------

def test_dag_impact_lists_the_current_model_and_deployables_only(copied):
    copy = copied["copy"]
    r = run_cli("dag", "impact", "spam", "--json", ws=copy)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert set(res) >= {"changed", "tasks", "label_versions", "models", "deployables", "reasons"}
    assert res["models"] == [2]
    assert res["deployables"] == [{"task": "spam", "version": 2, "model_version": 2, "student": "tiny"}]
    assert set(res["reasons"]["models"]) == {"2"} and set(res["reasons"]["deployables"]) == {"spam v2"}
    text = run_cli("dag", "impact", "spam", ws=copy).out
    assert "models: 2\n" in text and "spam v2 (tiny, from model v2)" in text and "spam v1" not in text


def test_mlflow_runs_are_named_for_what_they_made(copied):
    client = _client(copied["copy"])
    run = client.get_run(copied["train"]["mlflow_run_id"])
    assert run.info.run_name == "model v2: spam"
    d = client.get_run(copied["distill"]["mlflow_run_id"])
    assert d.info.run_name == "distill spam v2: tiny student of model v2"


# --- 5. logging never loses a finished run ----------------------------------------------------------------

def test_metric_names_mlflow_refuses_are_made_safe(tmp_path):
    from mothermodel.trainer.tracking import Tracker, safe_key

    assert safe_key("spam/mail/test (2024)/accuracy") == "spam/mail/test _2024_/accuracy"
    assert safe_key("a/../b") == "a/_/b" and safe_key("/x//y") == "_/x/_/y"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with Tracker(uri, artifact_location=(tmp_path / "art").as_uri()) as t:
        t.log_metrics({"spam/mail/test (2024)/accuracy": 0.5, "loss/spam": 1.0})
        t.log_step(1, {"loss/a (b)": 2.0})
        t.log_params({"splits": {"test (2024)": 3}})
    assert t.warnings == []
    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=uri).get_run(t.run_id)
    assert run.data.metrics["spam/mail/test _2024_/accuracy"] == 0.5 and "loss/a _b_" in run.data.metrics
    assert run.data.params["splits.test _2024_"] == "3" and run.info.status == "FINISHED"


def test_a_logging_failure_is_a_warning_and_the_model_is_recorded(fws, tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    ws = _copy(fws, tmp_path)

    def refuse(self, run_id, metrics=(), params=(), tags=(), **kw):
        raise MlflowException("Invalid metric name: 'x (y)'")

    monkeypatch.setattr(MlflowClient, "log_batch", refuse)
    r = _train(ws, enc=fws.parent / "enc")
    assert r.code == 0, r
    assert json.loads(r.out)["model_version"] == 2
    assert "warning: MLflow refused to log" in r.err and "x (y)" in r.err
    assert not (ws / ".mothermodel" / "models" / "in-progress.json").exists()
    st = json.loads(run_cli("status", "--json", ws=ws).out)
    assert st["latest_model_version"] == 2 and st["training"] is None


# --- Ctrl-C during train ----------------------------------------------------------------------------------

def test_ctrl_c_during_train_says_resume_continues_and_status_shows_it(fws, tmp_path, monkeypatch):
    import mothermodel.trainer.selftrain as selftrain
    from mothermodel.registry.workspace import Workspace, training, training_state

    ws = _copy(fws, tmp_path)
    real_fit = selftrain.fit

    def interrupted(*a, **kw):
        raise KeyboardInterrupt  # Ctrl-C once training started (its run folder and marker exist)

    monkeypatch.setattr(selftrain, "fit", interrupted)
    r = _train(ws, enc=fws.parent / "enc")
    assert r.code == 130, r
    assert r.err.strip() == ("error: interrupted: `mothermodel train --resume` continues this training run from its "
                             "last checkpoint (`mothermodel status` shows it)")
    st = json.loads(run_cli("status", "--json", ws=ws).out)
    assert st["training"]["state"] == "interrupted" and st["training"]["resume"] == "mothermodel train --resume"
    assert st["training"]["run_dir"].startswith("models/run-")
    assert "`mothermodel train --resume` continues it" in run_cli("status", ws=ws).out
    w = Workspace(ws)
    with training(w):  # while a `train` runs, its marker is not an interrupted run
        assert training_state(w)["state"] == "running"

    monkeypatch.setattr(selftrain, "fit", real_fit)
    r = _train(ws, "--resume", enc=fws.parent / "enc")
    assert r.code == 0, r
    assert json.loads(run_cli("status", "--json", ws=ws).out)["training"] is None


# --- predict ----------------------------------------------------------------------------------------------

def test_predict_unknown_task_and_output_columns(fws, tmp_path):
    r = run_cli("predict", "nosuch", ws=fws)
    assert r.code == 2 and r.err == "error: TASK: unknown task 'nosuch'\n", r
    data = pq.read_table(Path(fws).parent / "mail.parquet")
    test_texts = [t for t, s in zip(data["text"].to_pylist(), data["split"].to_pylist()) if s == "test"]
    for suffix in ("csv", "parquet", "jsonl"):
        out = tmp_path / f"p.{suffix}"
        r = run_cli("predict", "spam", "--split", "test", "--out", out, ws=fws)
        assert r.code == 0, r
        if suffix == "csv":
            import pyarrow.csv as pcsv

            t = pcsv.read_csv(out)
        elif suffix == "parquet":
            t = pq.read_table(out)
        else:
            t = pa.Table.from_pylist([json.loads(x) for x in out.read_text().splitlines()])
        assert t.column_names[:3] == ["row", "text", "pred"], t.column_names
        assert t["text"].to_pylist() == test_texts
        assert t["row"].to_pylist() == [i for i, s in enumerate(data["split"].to_pylist()) if s == "test"]


# --- noise ------------------------------------------------------------------------------------------------

NOISE = ("INFO", "\x1b[", "Warning", "warnings.warn")


def test_ordinary_commands_print_no_library_noise(fws, tmp_path):
    ws = _copy(fws, tmp_path)
    # No gold labels in the train split: the label fit must not warn about empty means.
    t = pq.read_table(Path(fws).parent / "mail.parquet")
    gold = [None if s == "train" else g for g, s in zip(t["label"].to_pylist(), t["split"].to_pylist())]
    pq.write_table(t.set_column(2, "label", pa.array(gold, pa.int8())), tmp_path / "mail2.parquet")
    assert run_cli("dataset", "add", "mail2", tmp_path / "mail2.parquet", "--gold-field", "label", ws=ws).code == 0
    spec = (Path(fws).parent / "spam.py").read_text().replace('name="spam", dataset="mail"',
                                                              'name="spam2", dataset="mail2"')
    (tmp_path / "spam2.py").write_text(spec)
    assert run_cli("task", "submit", tmp_path / "spam2.py", ws=ws).code == 0
    enc = Path(fws).parent / "enc"
    env = {"PYTHONWARNINGS": ""}  # as a user runs them: Python's default warning filters
    for args in (["label", "fit", "spam2"], ["label", "fit", "spam", "--model", "majority"],
                 ["train", "--encoder", enc, "--max-steps", 4, "--batch-size", 16, "--max-length", 16,
                  "--self-train-rounds", 0, *TINY],
                 ["distill", "spam", "--student", "tiny", "--epochs", "1"]):
        p = run_proc(*args, ws=ws, env=env)
        assert p.returncode == 0, (args, p.stderr[-3000:])
        noisy = [ln for ln in p.stderr.splitlines() if any(n in ln for n in NOISE)]
        assert noisy == [], (args, noisy)


# --- the getting-started guide's runner command -----------------------------------------------------------

def test_the_guides_run_bundle_command_works_from_the_workspace(fws, tmp_path):
    guide = (REPO / "docs" / "getting-started.md").read_text()
    line, = [ln for ln in guide.splitlines() if "run_bundle" in ln and ln.startswith("python")]
    cmd = shlex.split(line.split("#")[0])
    assert cmd[0] == "python" and "../bundle" in cmd
    # The guide: `mothermodel init myws && cd myws`, then `export urgent ... --out ../bundle`.
    myws = tmp_path / "myws"
    assert run_cli("init", myws).code == 0
    assert run_cli("export", "spam", "--out", tmp_path / "bundle", ws=fws).code == 0
    p = subprocess.run([sys.executable, *cmd[1:]], cwd=myws, capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.splitlines()[0])
    assert out["label"] in ("HAM", "SPAM") and set(out["probs"]) == {"HAM", "SPAM"}


def test_a_train_that_fails_before_training_leaves_no_run_to_resume(tmp_path):
    """An encoder that does not load fails `train` with exit 2; no in-progress marker or run folder is left, so
    `status` does not offer a `--resume` for a run that never started."""
    root = fitted_mail_workspace(tmp_path)
    (tmp_path / "notenc").mkdir()
    r = run_cli("train", "--encoder", tmp_path / "notenc", *TINY, ws=root)
    assert r.code == 2, r
    models = root / ".mothermodel" / "models"
    assert not (models / "in-progress.json").exists() and not list(models.glob("run-*"))
    st = json.loads(run_cli("status", "--json", ws=root).out)
    assert st["training"] is None
