"""MLflow: a training run logged to a sqlite store, read back with mlflow.MlflowClient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
mlflow = pytest.importorskip("mlflow")

from trainer_util import synthetic_tasks, tiny_config, tiny_encoder  # noqa: E402

from mothermodel.trainer.evaluate import evaluate, metric_keys  # noqa: E402
from mothermodel.trainer.loop import train  # noqa: E402
from mothermodel.trainer.model import build_model, head_specs  # noqa: E402
from mothermodel.trainer.tracking import Tracker, flatten_params  # noqa: E402


def test_run_is_read_back_with_mlflow_client(tmp_path):
    ws = tmp_path / "ws" / ".mothermodel"
    ws.mkdir(parents=True)
    uri = f"sqlite:///{ws / 'mlflow.db'}"
    artifacts = (ws / "mlartifacts").as_uri()
    tasks = synthetic_tasks(n_sent=120, n_topic=120)
    cfg = tiny_config(encoder=str(tiny_encoder(tmp_path / "enc")), max_steps=12, log_every=4)
    model, tok = build_model(head_specs(tasks), cfg)
    with Tracker(uri, experiment="mothermodel", artifact_location=artifacts, run_name="train-1",
                 tags={"mothermodel.model_version": "1"}, flush_every=5) as tr:
        tr.log_params({"config": cfg.to_dict(), "tasks": ["sentiment", "topic"],
                       "fingerprints": {"sentiment": "f1", "topic": "f2"}})
        res = train(model, tok, tasks, cfg, checkpoint_dir=tmp_path / "ck", progress=False,
                    on_step=lambda s: tr.log_step(s.step, {"loss": s.loss, **{f"loss/{k}": v
                                                                             for k, v in s.task_losses.items()}}))
        m = metric_keys(evaluate(model, tok, tasks, tokens=res.tokens), {t.name: t.name + "_ds" for t in tasks})
        tr.log_metrics(m)
        tr.log_dict(json.loads((res.checkpoint / "manifest.json").read_text()), "manifest.json")
        run_id = tr.run_id

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "train-1"
    assert run.data.tags["mothermodel.model_version"] == "1"
    assert run.data.params["config.max_steps"] == "12" and run.data.params["config.pooling"] == "mean"
    assert json.loads(run.data.params["tasks"]) == ["sentiment", "topic"]
    assert run.data.params["fingerprints.topic"] == "f2"
    hist = client.get_metric_history(run_id, "loss")
    assert [h.step for h in sorted(hist, key=lambda h: h.step)] == list(range(1, 13))
    assert [h.value for h in sorted(hist, key=lambda h: h.step)] == pytest.approx(res.losses, rel=1e-6)
    assert len(client.get_metric_history(run_id, "loss/topic")) == 12
    assert run.data.metrics["sentiment/sentiment_ds/test/accuracy"] == pytest.approx(m["sentiment/sentiment_ds/test/accuracy"])
    assert "topic/topic_ds/valid/macro_f1" in run.data.metrics
    names = [a.path for a in client.list_artifacts(run_id)]
    assert names == ["manifest.json"]
    local = client.download_artifacts(run_id, "manifest.json", str(tmp_path / "dl"))
    assert json.loads(Path(local).read_text())["step"] == 12
    # artifacts live inside the workspace
    assert list((ws / "mlartifacts").rglob("manifest.json"))
    # a run that raises ends FAILED
    with pytest.raises(RuntimeError):
        with Tracker(uri, experiment="mothermodel") as tr2:
            raise RuntimeError("boom")
    assert client.get_run(tr2.run_id).info.status == "FAILED"


def test_flatten_params_cuts_long_values():
    p = flatten_params({"a": {"b": 1, "c": [1, 2]}, "s": "x" * 7000})
    assert p["a.b"] == "1" and p["a.c"] == "[1, 2]" and len(p["s"]) == 6000
