"""Trainer: the shared-encoder multi-task mother model (torch, transformers).

Modules, one concept each (docs/trainer.md):

* ``config``     -- :class:`TrainConfig`
* ``encoder``    -- load a Hugging Face encoder offline; the default MiniLM; tiny test encoders
* ``data``       -- :class:`TaskData`, tokenisation, task sampling, bucketing, batches
* ``model``      -- :class:`MotherModel`, heads, layouts, warm starts
* ``loop``       -- :func:`train`, the loop (DDP under torchrun)
* ``checkpoint`` -- safetensors checkpoints with hashed manifests, atomic writes
* ``predict``    -- batched inference
* ``evaluate``   -- accuracy and macro-F1 per task and split
* ``tracking``   -- MLflow runs

Importing this package is cheap: names load their module (and torch) on first use.
"""

from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "TaskData": "data",
    "HeadSpec": "model",
    "MotherModel": "model",
    "build_model": "model",
    "warm_start": "model",
    "reconcile_heads": "model",
    "head_specs": "model",
    "train": "loop",
    "TrainResult": "loop",
    "StepInfo": "loop",
    "predict_proba": "predict",
    "evaluate": "evaluate",
    "metric_keys": "evaluate",
    "Tracker": "tracking",
    "load_encoder": "encoder",
    "write_tiny_encoder": "encoder",
    "default_encoder_dir": "encoder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"mothermodel.trainer.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
