"""The per-task guard: a task whose labels beat every stage of the mother model on valid is served by its
labels, and `train --json`, `status`, MLflow, `predict` and `distill` all say so and act on it."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from mothermodel.trainer import guard


def test_choose_rules():
    lab = {"valid": {"accuracy": 0.80}, "test": {"accuracy": 0.9}}
    st = {0: {"valid": {"accuracy": 0.85}}, 1: {"valid": {"accuracy": 0.85}}, 2: {"valid": {"accuracy": 0.83}}}
    c = guard.choose("t", st, lab)
    assert (c.served_by, c.stage, c.final_stage, c.margin) == ("model", 1, 2, 5.0)  # ties: the later stage
    assert c.candidates == {"stage-0": 0.85, "stage-1": 0.85, "stage-2": 0.83, "labels": 0.80}
    c = guard.choose("t", st, {"valid": {"accuracy": 0.85}})
    assert c.served_by == "model" and c.margin == 0.0 and not c.below_labels  # a tie keeps the model
    c = guard.choose("t", st, {"valid": {"accuracy": 0.9}})
    assert c.served_by == "labels" and c.below_labels and c.margin == -5.0 and "labels serve" in c.reason
    c = guard.choose("t", {0: {}, 1: {}}, {})  # no gold labels on valid: the final model, nothing to check
    assert (c.served_by, c.stage, c.margin, c.split) == ("model", 1, None, None)
    assert guard.agreement(np.array([0, 1, 1, 0]), np.array([0, 1, 0, -1]), np.array([1, 1, 1, 1], bool)) == 2 / 3


WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]


def _noise_world(tmp_path, n=200, seed=0):
    """Texts that say nothing about the class; a weak label column right 90% of the time. No model can
    learn the class from the text, so the mother model loses to its labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(WORDS, 5)) for _ in range(n)]
    weak = np.where(rng.random(n) < 0.9, y, 1 - y)
    split = np.where(np.arange(n) < n * 0.6, "train", np.where(np.arange(n) < n * 0.8, "valid", "test"))
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(pa.table({"text": texts, "split": split, "label": pa.array(y, pa.int8()),
                             "weak": pa.array(weak, pa.int8())}), tmp_path / "noise.parquet")
    assert run_cli("dataset", "add", "noise", tmp_path / "noise.parquet", "--gold-field", "label", ws=root).code == 0
    (tmp_path / "t.yaml").write_text("name: coin\ndataset: noise\nclasses: [TAILS, HEADS]\n"
                                     "sources:\n  - {kind: column, column: weak}\n")
    assert run_cli("task", "submit", tmp_path / "t.yaml", ws=root).code == 0
    assert run_cli("label", "fit", "coin", "--model", "majority", ws=root).code == 0
    from mothermodel.trainer.encoder import write_tiny_encoder

    write_tiny_encoder(tmp_path / "enc", words=WORDS)
    return root


def test_guard_serves_the_labels_where_the_model_loses(tmp_path):
    from mlflow import MlflowClient

    from mothermodel.api import Registry

    root = _noise_world(tmp_path)
    r = run_cli("train", "--encoder", tmp_path / "enc", "--max-steps", 10, "--batch-size", 16, "--max-length", 16,
                "--self-train-rounds", "1", "--set", "self_train_epochs=0.5", "--json", ws=root)
    assert r.code == 0, r
    res = json.loads(r.out)
    g = res["guard"]["coin"]
    assert g["served_by"] == "labels" and g["below_labels"] and g["split"] == "valid"
    assert g["candidates"]["labels"] > 0.8 > max(v for k, v in g["candidates"].items() if k.startswith("stage-"))
    assert "labels serve" in g["reason"] and g["cause"]
    m = res["metrics"]
    assert m["coin/noise/valid/served_accuracy"] == m["coin/noise/valid/label_model_accuracy"]
    assert m["coin/noise/test/served_accuracy"] > m["coin/noise/test/accuracy"]
    # The registry records the choice; status says which source serves, by how much and why.
    st = json.loads(run_cli("status", "--json", ws=root).out)["tasks"][0]["serving"]
    assert st["served_by"] == "labels" and st["below_labels"] and st["margin"] == g["margin"] and st["cause"]
    text = run_cli("status", ws=root).out
    assert "labels (" in text and "warning: coin: the mother model is" in text and "below its labels" in text
    # MLflow: a tag per task on the training run.
    reg = Registry.open(root)
    run = MlflowClient(reg.ws.mlflow_tracking_uri).get_run(res["mlflow_run_id"])
    assert run.data.tags["mothermodel.guard.coin"].startswith("labels (model -")
    # predict serves the labels' posteriors on the dataset's rows ...
    table = reg.predict("coin", split="valid")
    pl = reg.store.read_prob_labels(reg.store.latest_prob_labels("coin"))
    rows = table.column("row").to_numpy()
    assert table.schema.metadata[b"source"].startswith(b"labels v")
    np.testing.assert_allclose(table.column("p_HEADS").to_numpy(), pl.probs[rows, 1], atol=1e-6)
    # ... and distill teaches the student with them, and says so in the bundle's manifest.
    r = run_cli("distill", "coin", "--student", "ngram", "--epochs", "3", "--json", ws=root)
    assert r.code == 0, r
    d = json.loads(r.out)
    assert d["teacher"]["kind"] == "labels"
    out = tmp_path / "bundle"
    assert run_cli("export", "coin", "--out", out, ws=root).code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher"]["kind"] == "labels" and "labels serve" in manifest["teacher"]["reason"]
    # The student learnt the labels: it is as far above the text-only model as they are (teacher = labels).
    assert manifest["metrics"]["teacher"]["valid"]["accuracy"] == pytest.approx(g["candidates"]["labels"])
