"""Knowledge distillation: a student learns the teacher's softened class distribution on every row.

Loss (Hinton et al., 2015): ``T**2 * KL(softmax(z_t / T) || softmax(z_s / T))``
where ``z_t`` are the teacher's logits (recovered as log-probabilities: a
softmax is invariant to the constant they differ by) and ``T`` the temperature.
No gold label enters the loss; gold labels only score the result (:func:`score`).

Batches are drawn in a seeded random order, sorted by length inside pools of
50 batches so that each pads to a similar length (dynamic padding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from mothermodel.distill.config import DistillConfig
from mothermodel.labeling.metrics import split_metrics
from mothermodel.trainer.data import Tokenized, pad_ids

__all__ = ["KDResult", "soft_targets", "train_student", "student_proba", "score"]


@dataclass
class KDResult:
    steps: int
    seconds: float
    final_loss: float


def soft_targets(teacher_probs: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's distribution softened by `temperature` (rows sum to 1)."""
    z = np.log(np.clip(teacher_probs.astype(np.float64), 1e-12, None)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _batches(lengths: np.ndarray, batch_size: int, epochs: float, rng: np.random.Generator,
             pool: int = 50) -> list[np.ndarray]:
    n = len(lengths)
    draws = np.concatenate([rng.permutation(n) for _ in range(int(np.ceil(epochs)))])[:max(1, int(round(n * epochs)))]
    out = []
    span = batch_size * pool
    for s in range(0, len(draws), span):
        chunk = draws[s:s + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def train_student(student: torch.nn.Module, tokens: Tokenized, teacher_probs: np.ndarray, config: DistillConfig,
                  *, pad_id: int = 0, on_step: Optional[Callable[[int, int, float], None]] = None) -> KDResult:
    """Fit `student` to the teacher's soft predictions on every row of `tokens`, in place."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    targets = torch.from_numpy(soft_targets(teacher_probs, config.temperature))
    batches = _batches(tokens.lengths, config.batch_size, config.epochs, rng)
    decay, no_decay = [], []
    for name, p in student.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith("bias") else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    total = len(batches)
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    zeros = np.zeros(len(tokens), np.int64)
    t_sq = config.temperature ** 2
    student.train()
    t0 = time.perf_counter()
    loss_v = float("nan")
    for step, rows in enumerate(batches):
        ids, mask = pad_ids([tokens], zeros[rows], rows, pad_id)
        logp = torch.log_softmax(student(ids, mask) / config.temperature, dim=-1)
        tgt = targets[torch.from_numpy(rows)]
        loss = t_sq * torch.sum(tgt * (torch.log(tgt.clamp_min(1e-12)) - logp), dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_v = float(loss.detach())
        if on_step is not None:
            on_step(step + 1, total, loss_v)
    student.eval()
    return KDResult(steps=total, seconds=time.perf_counter() - t0, final_loss=loss_v)


@torch.no_grad()
def student_proba(student: torch.nn.Module, tokens: Tokenized, *, pad_id: int = 0, batch_size: int = 256,
                  rows: Optional[np.ndarray] = None) -> np.ndarray:
    """The student's class probabilities for `rows` (default: all) of `tokens`, in input order."""
    rows = np.arange(len(tokens)) if rows is None else np.asarray(rows, np.int64)
    student.eval()
    order = rows[np.argsort(tokens.lengths[rows], kind="stable")]
    zeros = np.zeros(len(tokens), np.int64)
    out: dict[int, np.ndarray] = {}
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        ids, mask = pad_ids([tokens], zeros[idx], idx, pad_id)
        p = torch.softmax(student(ids, mask), dim=-1).numpy()
        out.update(zip(idx.tolist(), p))
    return np.stack([out[int(r)] for r in rows]) if len(rows) else np.zeros((0, 0), np.float32)


def score(probs: np.ndarray, gold: Optional[np.ndarray], split: np.ndarray, num_classes: int,
          reference: Optional[np.ndarray] = None) -> dict[str, dict[str, Any]]:
    """split -> {"accuracy", "macro_f1", "n"[, "agreement"]} on every split with gold labels.

    `reference`: another model's probabilities (the teacher's); "agreement" is
    the share of the split's gold rows where both predict the same class.
    """
    pred = probs.argmax(axis=1)
    res = split_metrics(gold, pred, split, num_classes)
    if reference is not None and gold is not None:
        for s, m in res.items():
            rows = (split == s) & (gold >= 0)
            m["agreement"] = float((reference[rows].argmax(axis=1) == pred[rows]).mean())
    return res
