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

import importlib
import os
from typing import Any

# libgomp threads spin while they wait; on a shared or oversubscribed CPU (CI,
# a 2-core box, two trainers at once) a 2-thread training step ran 7x slower
# than with passive waiting, which costs little on an idle machine. Only
# effective before torch is first imported; the user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
    "fit": "selftrain",
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
        return getattr(importlib.import_module(f"mothermodel.trainer.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
