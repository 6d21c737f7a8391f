"""The mother model over the registry, through the CLI: train, --if-changed, warm starts, stale labels,
predict, watch --once, MLflow read-back, kill -9 and --resume, concurrent writers. Tiny random encoders only."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import cli_exe, run_cli, run_proc, snapshot

WORDS = {0: ["hello", "friend", "thanks", "lunch", "notes", "meeting"], 1: ["cheap", "money", "win", "click", "free", "pills"]}
SPEC = '''
from mothermodel import ABSTAIN, KeywordLF, Task
task = Task(name="spam", dataset="mail", classes=["HAM", "SPAM"])
money = KeywordLF("money", ["money", "cheap", "win"], label=1)
friendly = KeywordLF("friendly", ["hello", "thanks", "lunch"], label=0)
'''


def make_mail(n=240, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(WORDS[int(c)], 4)) + " " + " ".join(rng.choice(WORDS[1 - int(c)], 1)) for c in y]
    split = np.where(np.arange(n) < n * 0.6, "train", np.where(np.arange(n) < n * 0.8, "valid", "test"))
    return pa.table({"text": texts, "split": split, "label": pa.array(y, pa.int8())})


@pytest.fixture
def tws(tmp_path):
    """A workspace with task `spam` fitted, and a tiny random encoder folder beside it."""
    return fitted_mail_workspace(tmp_path)


def fitted_mail_workspace(folder):
    """FOLDER/ws with dataset `mail` and task `spam` (majority-vote labels fit), and FOLDER/enc: a tiny random
    encoder knowing the mail words. Returns the workspace root."""
    from mothermodel.trainer.encoder import write_tiny_encoder

    root = folder / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(make_mail(), folder / "mail.parquet")
    assert run_cli("dataset", "add", "mail", folder / "mail.parquet", "--gold-field", "label", ws=root).code == 0
    (folder / "spam.py").write_text(SPEC)
    assert run_cli("task", "submit", folder / "spam.py", ws=root).code == 0
    assert run_cli("label", "fit", "spam", "--model", "majority", ws=root).code == 0
    write_tiny_encoder(folder / "enc", words=sum(WORDS.values(), []))
    return root


# A random encoder must learn its word embeddings (the default freezes the pretrained encoder's).
TINY = ["--set", "freeze_embeddings=false", "--set", "temperature=1", "--set", "layer_decay=1"]


def train(ws, *extra, steps=40, rounds=0, lr="1e-3"):
    enc = ws.parent / "enc"
    return run_cli("train", "--encoder", enc, "--max-steps", steps, "--batch-size", 16, "--max-length", 16,
                   "--lr", lr, "--self-train-rounds", rounds, *TINY, *extra, "--json", ws=ws)


def test_train_json_if_changed_and_warm_start(tws, tmp_path):
    r = train(tws)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["trained"] and res["model_version"] == 1 and res["changes"]["new"] == ["spam"]
    for split in ("train", "valid", "test"):
        assert 0 <= res["metrics"][f"spam/mail/{split}/accuracy"] <= 1
        assert f"spam/mail/{split}/macro_f1" in res["metrics"] and f"spam/mail/{split}/label_model_accuracy" in res["metrics"]
    # The words say the class: even 40 steps of a tiny model learn it.
    assert res["metrics"]["spam/mail/test/accuracy"] > 0.7
    st = {t["name"]: t for t in json.loads(run_cli("status", "--json", ws=tws).out)["tasks"]}
    assert not st["spam"]["model"]["stale"]

    again = json.loads(train(tws, "--if-changed").out)
    assert again == {**again, "trained": False, "model_version": 1, "status": "up to date"}
    # A plain `train` with nothing changed trains again from a fresh model (it recorded a 0-step copy of v1).
    fresh = json.loads(train(tws).out)
    assert fresh["trained"] and fresh["model_version"] == 2 and fresh["warm_start"] is None and fresh["steps"] == 40

    # A refit (another label model) moves what the model learns from: --if-changed now trains, warm.
    assert run_cli("label", "fit", "spam", "--model", "label-model", ws=tws).code == 0
    res2 = json.loads(train(tws, "--if-changed").out)
    assert res2["trained"] and res2["model_version"] == 3 and res2["changes"]["changed"] == ["spam"]
    assert res2["warm_start"]["finetuned"] == ["spam"]
    # --fresh: the same change trains from scratch instead; --fresh with --resume is refused, nothing written.
    assert run_cli("label", "fit", "spam", "--model", "majority", ws=tws).code == 0
    bad = train(tws, "--fresh", "--resume")
    assert bad.code == 2 and "--fresh" in bad.err and bad.err.count("\n") <= 1, bad
    res3 = json.loads(train(tws, "--if-changed", "--fresh").out)
    assert res3["trained"] and res3["model_version"] == 4 and res3["changes"]["changed"] == ["spam"]
    assert res3["warm_start"] is None and res3["steps"] == 40


def test_self_training_then_an_incremental_retrain_for_a_new_task(tws, tmp_path):
    """Self-training rounds follow the first stage; a new task on a new dataset warm-starts the model and the
    run spends its steps there (replaying the unchanged task); removing it drops the head without training."""
    r = train(tws, rounds=1, steps=40, lr="1e-2")
    assert r.code == 0, r
    full = json.loads(r.out)
    assert full["stages"] == 2 and full["steps"] > 30 and full["focus"] is None
    pq.write_table(make_mail(n=300, seed=1), tmp_path / "mail2.parquet")
    assert run_cli("dataset", "add", "mail2", tmp_path / "mail2.parquet", "--gold-field", "label", ws=tws).code == 0
    (tmp_path / "spam2.py").write_text(SPEC.replace('name="spam", dataset="mail"', 'name="spam2", dataset="mail2"'))
    assert run_cli("task", "submit", tmp_path / "spam2.py", ws=tws).code == 0
    assert run_cli("label", "fit", "spam2", "--model", "majority", ws=tws).code == 0
    enc = tws.parent / "enc"
    r = run_cli("train", "--if-changed", "--encoder", enc, "--epochs", 1, "--batch-size", 16, "--max-length", 16,
                "--lr", "2e-3", "--self-train-rounds", 1, "--set", "warm_epochs=3", *TINY, "--json", ws=tws)
    assert r.code == 0, r
    inc = json.loads(r.out)
    assert inc["changes"] == {"new": ["spam2"], "changed": [], "unchanged": ["spam"], "removed": []}
    assert inc["focus"] == ["spam2"] and inc["warm_start"]["kept"] == ["spam"] and inc["warm_start"]["added"] == ["spam2"]
    # warm_epochs over spam2's train rows, a fifth of the draws replaying spam's
    assert inc["stages"] == 2 and inc["steps"] > 0
    assert inc["metrics"]["spam/mail/test/accuracy"] >= full["metrics"]["spam/mail/test/accuracy"] - 0.05
    assert inc["metrics"]["spam2/mail2/test/accuracy"] > 0.6
    assert run_cli("task", "remove", "spam2", ws=tws).code == 0
    r = train(tws, "--if-changed")
    assert r.code == 0, r
    dropped = json.loads(r.out)
    assert dropped["trained"] and dropped["steps"] == 0 and dropped["warm_start"]["removed"] == ["spam2"]
    assert dropped["metrics"]["spam/mail/test/accuracy"] == inc["metrics"]["spam/mail/test/accuracy"]
    st = json.loads(run_cli("status", "--json", ws=tws).out)
    assert [t["name"] for t in st["tasks"]] == ["spam"] and not st["tasks"][0]["model"]["stale"]


def test_stale_or_missing_labels_exit_2_naming_the_fix(tws, tmp_path):
    (tmp_path / "spam.py").write_text(SPEC.replace('"win"]', '"win", "free"]'))
    assert run_cli("task", "submit", tmp_path / "spam.py", "--replace", ws=tws).code == 0
    before = snapshot(tws)
    r = train(tws)
    assert r.code == 2 and "cannot train spam: its labels are stale" in r.err and "mothermodel label fit spam" in r.err
    assert len(r.err.strip().splitlines()) == 1 and snapshot(tws) == before
    r = run_cli("train", "--max-length", 2, ws=tws)
    assert r.code == 2 and r.err.startswith("error: --max-length: must be >= 4")
    r = run_cli("train", "--set", "replay=1.5", ws=tws)
    assert r.code == 2 and r.err.startswith("error: --set replay: must be in [0, 1)")
    r = run_cli("train", "--set", "warm_epoch=1", ws=tws)
    assert r.code == 2 and "unknown TrainConfig field 'warm_epoch'" in r.err


def test_predict_split_input_and_out(tws, tmp_path):
    assert train(tws).code == 0
    res = json.loads(run_cli("predict", "spam", "--split", "test", "--json", ws=tws).out)
    assert len(res) == 48 and set(res[0]) == {"row", "text", "pred", "p_HAM", "p_SPAM"}
    assert all(abs(r["p_HAM"] + r["p_SPAM"] - 1) < 1e-5 and r["pred"] in ("HAM", "SPAM") for r in res)
    (tmp_path / "new.jsonl").write_text('{"text": "cheap money win click"}\n{"text": "hello friend thanks lunch"}\n')
    r = run_cli("predict", "spam", "--input", tmp_path / "new.jsonl", "--out", tmp_path / "p.parquet", ws=tws)
    assert r.code == 0, r
    got = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert [g["pred"] for g in got] == ["SPAM", "HAM"]
    assert run_cli("predict", "nope", ws=tws).code == 2
    assert run_cli("predict", "spam", "--split", "holdout", ws=tws).code == 2


def test_runs_are_read_back_with_mlflow_client(tws):
    from mlflow import MlflowClient

    res = json.loads(train(tws).out)
    uri = json.loads(run_cli("status", "--json", ws=tws).out)["mlflow_tracking_uri"]
    assert res["mlflow_tracking_uri"] == uri and uri.endswith(".mothermodel/mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["mothermodel.model_version"] == "1"
    assert json.loads(run.data.params["tasks"]) == ["spam"] and run.data.params["config.max_steps"] == "40"
    assert run.data.metrics["spam/mail/test/accuracy"] == pytest.approx(res["metrics"]["spam/mail/test/accuracy"])
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert len(losses) >= 4 and losses[-1].step == 40
    assert "manifest.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
    # Artifacts stay inside the workspace.
    assert str(tws) in client.get_experiment(run.info.experiment_id).artifact_location


def test_watch_once_relabels_refits_and_retrains(tws, tmp_path):
    assert train(tws).code == 0
    (tmp_path / "spam.py").write_text(SPEC.replace('"win"]', '"win", "free"]'))
    assert run_cli("task", "submit", tmp_path / "spam.py", "--replace", ws=tws).code == 0
    r = run_cli("watch", "--once", "--encoder", tws.parent / "enc", "--max-steps", 10, "--max-length", 16, *TINY,
                "--json", ws=tws)
    assert r.code == 0, r
    tick = json.loads(r.out)
    assert tick["label_apply"] == ["spam"] and [f["task"] for f in tick["label_fit"]] == ["spam"]
    assert tick["label_fit"][0]["model"] == "majority"  # the task's last fit settings
    assert tick["train"]["trained"] and tick["train"]["model_version"] == 2
    st = json.loads(run_cli("status", "--json", ws=tws).out)["tasks"][0]
    assert not st["labels"]["stale"] and not st["model"]["stale"]
    assert run_cli("watch", ws=tws).code == 2  # neither --every nor --once


def test_kill_9_during_train_then_resume(tws):
    """A run killed mid-way records nothing; --resume continues from its last checkpoint and records it."""
    enc = tws.parent / "enc"
    args = ["train", "--encoder", enc, "--max-steps", 200, "--batch-size", 16, "--max-length", 16,
            "--checkpoint-every", 25, "--self-train-rounds", 0, *TINY, "--json"]
    before = snapshot(tws)
    p = subprocess.Popen(cli_exe() + ["-w", str(tws)] + list(map(str, args)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    run_dir = None
    deadline = time.time() + 120
    while time.time() < deadline and run_dir is None:
        time.sleep(0.2)
        runs = list((tws / ".mothermodel" / "models").glob("run-*/stage-0/step-*"))
        run_dir = runs[0].parent if runs else None
    assert run_dir is not None, p.communicate(timeout=5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    after = snapshot(tws)
    assert after["models"] == before["models"] == [] and after["model_tasks"] == []
    assert all((c / "manifest.json").is_file() for c in run_dir.glob("step-*"))  # no half-written checkpoint visible
    r = run_proc(*args, "--resume", ws=tws)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert res["trained"] and res["resumed_from"] and res["steps"] == 200 and res["model_version"] == 1
    assert not (tws / ".mothermodel" / "models" / "in-progress.json").exists()
    assert run_cli("train", "--resume", ws=tws).code == 2  # nothing left to resume


def test_concurrent_writers_land_while_training(tws, tmp_path):
    enc = tws.parent / "enc"
    trainer = subprocess.Popen(cli_exe() + ["-w", str(tws), "train", "--task", "spam", "--encoder", str(enc),
                                            "--max-steps", "100", "--batch-size", "16", "--max-length", "16", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = tws / ".mothermodel" / "models" / "in-progress.json"
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline:  # the run has read the registry and started
        time.sleep(0.1)
    specs = []
    for i in range(16):
        p = tmp_path / f"t{i}.py"
        p.write_text(f"from mothermodel import Task, KeywordLF\ntask = Task(name='t{i}', dataset='mail', "
                     f"classes=['A', 'B'])\nk = KeywordLF('k', ['money'], label=1)\n")
        specs.append(p)
    writers = [subprocess.Popen(cli_exe() + ["-w", str(tws), "task", "submit", str(p)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for p in specs]
    codes = [w.wait(timeout=300) for w in writers]
    out, err = trainer.communicate(timeout=600)
    assert codes == [0] * 16, [w.stderr.read() for w in writers if w.returncode]
    assert trainer.returncode == 0, err[-2000:]
    names = {t["name"] for t in json.loads(run_cli("task", "list", "--json", ws=tws).out)}
    assert names == {"spam"} | {f"t{i}" for i in range(16)}
    assert json.loads(out)["model_version"] == 1


def test_set_reaches_fields_that_also_have_an_option():
    # `--set lr=...` without `--lr` must not be hidden by the option's unset default (it was: None won).
    from mothermodel.cli import _train_config

    base = dict(encoder=None, device=None, epochs=None, max_steps=None, batch_size=None, max_length=None, lr=None,
                layout=None, mixing=None, self_train_rounds=None, seed=None, checkpoint_every=None)
    assert _train_config(**base, settings=("lr=2e-5", "epochs=2")).lr == 2e-5
    assert _train_config(**{**base, "lr": 1e-3}, settings=("lr=2e-5",)).lr == 1e-3  # the option wins
    assert _train_config(**base, settings=("epochs=2",)).epochs == 2
