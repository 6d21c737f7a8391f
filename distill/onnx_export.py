"""ONNX export of a student (or of the teacher's head for one task) and the onnxruntime-vs-PyTorch check.

Graphs take ``input_ids`` and ``attention_mask`` (int64, [batch, length], both
axes dynamic) and return ``logits`` ([batch, classes]). The TorchScript-based
exporter (``dynamo=False``) is used: it needs only the ``onnx`` package, and
the students are plain tensor code that traces to a static graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

__all__ = ["INPUTS", "OUTPUT", "export", "max_abs_diff", "TaskLogits"]

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "logits"
OPSET = 17


class TaskLogits(torch.nn.Module):
    """The mother model reduced to one task's logits (the teacher as a user would otherwise ship it)."""

    def __init__(self, model: Any, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)[self.task]["logits"]


def export(module: torch.nn.Module, path: str | Path, sample: tuple[torch.Tensor, torch.Tensor]) -> Path:
    """Write `module` (eval mode) as an ONNX graph with dynamic batch and length."""
    module.eval()
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            "logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and exporter-deprecation notices: nothing a user can act on
        torch.onnx.export(module, sample, str(path), input_names=list(INPUTS), output_names=[OUTPUT],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return Path(path)


def max_abs_diff(path: str | Path, module: torch.nn.Module, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The largest |onnxruntime logit - PyTorch logit| over `batches` of (input_ids, attention_mask)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module.eval()
    worst = 0.0
    with torch.no_grad():
        for ids, mask in batches:
            got = sess.run([OUTPUT], {"input_ids": ids, "attention_mask": mask})[0]
            want = module(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
            d = float(np.abs(got - want).max()) if got.size else 0.0
            worst = max(worst, d if np.isfinite(d) else float("inf"))  # a NaN must fail the check, not pass it
    return worst
