"""The training loop, top to bottom in one function: :func:`train`.

Objective. For a row i of task t with soft label q (the label model's
posterior) and weight w (data.py: train split, covered, applicable)::

    loss = (1 / B) * sum_t (1 / log C_t) * sum_{i in batch, task t} w_i * CE(q_i, softmax(z_ti))
    CE(q, p) = - sum_c q_c log p_c                      (soft cross-entropy)

B is the batch size, so task shares follow the sampling (data.py) and the
1/log(C) factor (Muppet) puts tasks with many classes on the scale of binary
ones (a uniform guess costs log C). Slice experts add the same term over their
members, and slice indicators a binary cross-entropy on membership.

Optimisation: AdamW (decoupled weight decay on matrices only), encoder and
heads at their own peak rates (optionally layer-wise decayed in the encoder),
linear warm-up then linear decay, gradient clipping. The rate is a function of
the step and dropout is seeded by (seed, rank, step): a run resumed from a
checkpoint takes the same steps it would have taken uninterrupted.

On a GPU: bf16 autocast (config.bf16, default on; also on CPUs with native
bf16 instructions), SDPA attention (encoder.py
loads with ``attn_implementation="sdpa"``), TF32 matmuls, optional
torch.compile of the encoder, batches padded to a multiple of 8.

Multi-process (DDP): under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set) the
process group is initialised (gloo on CPU, nccl on GPU), every rank builds the
same batch plan and takes every world-th row of each global batch (similar
lengths, thanks to bucketing), gradients are averaged by DDP, and only rank 0
writes checkpoints and reports progress.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel as DDP

from mothermodel.defaults import resolve_device
from mothermodel.errors import UserError
from mothermodel.trainer import checkpoint as ckpt
from mothermodel.trainer.config import TrainConfig, native_bf16
from mothermodel.trainer.data import (TaskData, Tokenized, TrainingSet, collate, plan_batches, resolve_config,
                                      round_units, steps_for)
from mothermodel.trainer.model import MotherModel

__all__ = ["StepInfo", "StepBar", "TrainResult", "DistInfo", "setup_distributed", "soft_cross_entropy", "multitask_loss",
           "param_groups", "lr_factor", "train"]

# Config fields a resumed run may change (they do not alter which steps are taken).
_RESUME_FREE = {"device", "bf16", "compile", "checkpoint_every", "keep_checkpoints", "log_every",
                "eval_batch_size", "num_threads", "encoder"}


@dataclass
class StepInfo:
    """What the step callback receives (rank 0 only)."""

    step: int  # 1-based: steps done
    total_steps: int
    loss: float
    task_losses: dict[str, float]  # per task: weighted mean soft CE of its rows in the batch (unscaled)
    lr: float  # encoder peak-group rate at this step
    examples: int  # examples seen so far (all ranks)
    seconds: float  # since the loop started


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: MotherModel
    steps: int
    start_step: int
    seconds: float
    examples: int
    examples_per_s: float
    losses: list[float]
    checkpoint: Optional[Path]
    resumed_from: Optional[Path]
    world_size: int
    tokens: dict[str, Tokenized] = field(default_factory=dict)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: Any = None
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistInfo:
    """Initialise torch.distributed when launched by torchrun; else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1 or "RANK" not in os.environ:
        return DistInfo(device=dev)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, here)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row CE(q, softmax(z)) = -sum_c q_c log softmax(z)_c, in float32."""
    return -(targets.float() * torch.log_softmax(logits.float(), dim=-1)).sum(-1)


def multitask_loss(out: dict[str, dict[str, Any]], batch: Any, task_names: Sequence[str],
                   num_classes: Sequence[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The batch loss (module doc) and each task's weighted mean CE (detached, for logging).

    Heads with no row in the batch still enter the graph with weight 0, so
    every parameter gets a gradient and DDP's reducer sees the same set on every rank.
    """
    total = torch.zeros((), device=batch.input_ids.device)
    per_task: dict[str, torch.Tensor] = {}
    for ti, name in enumerate(task_names):
        o = out[name]
        if ti not in batch.tasks:
            total = total + 0.0 * (o["logits"].sum() + sum(v.sum() for v in o.get("slice_logits", {}).values())
                                   + sum(v.sum() for v in o.get("slice_gates", {}).values()))
            continue
        pos, q, w = batch.tasks[ti]
        scale = 1.0 / math.log(num_classes[ti])
        ce = soft_cross_entropy(o["logits"][pos], q)
        term = (w * ce).sum() * scale
        per_task[name] = ((w * ce).sum() / w.sum().clamp_min(1e-8)).detach()
        if "slice_logits" in o:
            learn = (w > 0).float()
            for s, z in o["slice_logits"].items():
                member = batch.slices[ti][s][pos]
                term = term + (w * member * soft_cross_entropy(z[pos], q)).sum() * scale
                gate = o["slice_gates"][s][pos].float()
                bce = torch.nn.functional.binary_cross_entropy_with_logits(gate, member, reduction="none")
                term = term + (learn * bce).sum()
        total = total + term
    return total / batch.size, per_task


_LAYER_RE = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def param_groups(model: MotherModel, config: TrainConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """AdamW parameter groups and the parameter names in optimizer order.

    Heads at ``head_lr``; encoder at ``lr``, times ``layer_decay ** (L - l)``
    for layer l (embeddings l = 0, layers 1..L); no weight decay on biases and
    norm weights (1-D tensors).
    """
    n_layers = int(getattr(model.encoder.config, "num_hidden_layers", 0) or 0)
    groups: dict[tuple[str, float, bool], list[tuple[str, torch.nn.Parameter]]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2
        if name.startswith("encoder."):
            depth = n_layers
            m = _LAYER_RE.search(name)
            if m:
                depth = int(m.group(1)) + 1
            elif "embed" in name:
                depth = 0
            lr = config.lr * config.layer_decay ** (n_layers - depth) if n_layers else config.lr
            key = ("encoder", lr, decay)
        else:
            key = ("heads", config.head_lr, decay)
        groups.setdefault(key, []).append((name, p))
    out, names = [], []
    for (kind, lr, decay), items in groups.items():
        out.append({"params": [p for _, p in items], "lr": lr, "base_lr": lr,
                    "weight_decay": config.weight_decay if decay else 0.0, "kind": kind})
        names.extend(n for n, _ in items)
    return out, names


def lr_factor(step: int, total: int, warmup_fraction: float, decay: str = "linear") -> float:
    """Multiplier of the peak rate at 0-based `step`: linear warm-up, then linear decay to 0 (or constant)."""
    warm = max(1, int(round(warmup_fraction * total))) if warmup_fraction > 0 else 0
    if step < warm:
        return (step + 1) / warm
    if decay == "constant":
        return 1.0
    return max(0.0, (total - step) / max(1, total - warm))


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (int(seed) * 1_000_003 + rank * 7_919 + step) % (2**63 - 1)


class StepBar:
    """A rich progress bar over steps, on stderr (stdout stays clean for --json): label, bar, n/total,
    time left and one free-text field. For terminals only; callers print plain lines elsewhere
    (training here; distillation too)."""

    def __init__(self, label: str, total: int, start: int = 0):
        self._prog = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                              TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True)
        self._prog.start()
        self._tid = self._prog.add_task(label, total=total, completed=start, info="")

    def update(self, step: int, info: str = "") -> None:
        self._prog.update(self._tid, completed=step, info=info)

    def close(self) -> None:
        self._prog.stop()


class _Progress:
    """A rich bar on a terminal, ~20 plain lines otherwise; stderr, rank 0 only."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.enabled, self.bar = total, enabled, None
        self.every = max(1, total // 20)
        self.next = (start // self.every + 1) * self.every
        if enabled and sys.stderr.isatty():
            self.bar = StepBar("train", total, start)

    def update(self, step: int, loss: float, ex_s: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step, f"loss {loss:.4f}  {ex_s:.0f} ex/s")
        elif step >= self.next or step == self.total:
            self.next = (step // self.every + 1) * self.every
            print(f"train: step {step}/{self.total} loss {loss:.4f} {ex_s:.1f} ex/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(model: MotherModel, tokenizer: Any, tasks: Sequence[TaskData], config: TrainConfig, *,
          checkpoint_dir: Optional[str | os.PathLike] = None, resume: bool = False,
          on_step: Optional[Callable[[StepInfo], None]] = None, meta: Optional[dict] = None,
          progress: bool = True, tokens: Optional[dict[str, Tokenized]] = None,
          focus: Optional[Sequence[str]] = None) -> TrainResult:
    """Train `model` on `tasks` (every task must have a head), in place; return a TrainResult.

    Args:
        model: a MotherModel (fresh, or warm-started by the caller).
        tokenizer: the encoder's tokenizer.
        tasks: the tasks' data; a task's rows teach it per ``TaskData.train_weights``.
        config: hyper-parameters and device.
        checkpoint_dir: where ``step-*/`` checkpoints go (every ``checkpoint_every``
            steps and at the end); None = no checkpoints.
        resume: continue from the newest checkpoint in `checkpoint_dir` (from
            scratch when there is none). The model's heads and the plan-shaping
            config fields must match the checkpoint's.
        on_step: called after every step on rank 0 (batched every ``log_every``
            steps, so a GPU is not synchronised each step).
        meta: JSON-ready metadata stored in every checkpoint's manifest.
        progress: show progress (a bar on a terminal, plain lines elsewhere).
        tokens: already tokenised datasets (by dataset name), reused instead of re-tokenising.
        focus: task names a warm-started run is for (new or changed tasks): an
            epoch is one pass over their datasets' rows, and the other datasets
            get ``config.replay`` of the draws (`data.draw_shares`). None = all.
    """
    # ---- 1. processes, device, seeds -------------------------------------------------------------------
    dist_info = setup_distributed(config.device)
    device, rank, world = dist_info.device, dist_info.rank, dist_info.world
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    cuda = device.type == "cuda"
    use_bf16 = native_bf16(device) if config.bf16 is None else bool(config.bf16)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    missing = [t.name for t in tasks if t.name not in model.specs]
    if missing:
        raise ValueError(f"tasks without a head in the model: {missing}")

    # ---- 2. data: tokenise once, plan every step ----------------------------------------------------
    config = resolve_config(config, tasks)  # epochs / lr left to the data
    ts = TrainingSet(tasks, tokenizer, config.max_length, config.uncovered_weight, tokens=tokens,
                     hand_weight=config.hand_weight)
    global_batch = config.batch_size * world
    focus_ds = None
    if focus is not None:
        focus_ds = sorted({ts.task_dataset[i] for i, t in enumerate(ts.tasks) if t.name in set(focus)})
    total = steps_for(round_units(ts, focus_ds, config.replay), global_batch, config.epochs, config.max_steps)
    plan = plan_batches(ts, total, global_batch, mixing=config.mixing, temperature=config.temperature,
                        bucketing=config.bucketing, bucket_pool=config.bucket_pool, seed=config.seed,
                        focus=focus_ds, replay=config.replay)
    task_names = [t.name for t in ts.tasks]
    num_classes = [t.num_classes for t in ts.tasks]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pad_multiple = 8 if cuda else 1

    # ---- 3. model, optimizer, resume --------------------------------------------------------------
    model.to(device)
    emb = model.encoder.get_input_embeddings()
    if emb is not None:
        emb.weight.requires_grad_(not config.freeze_embeddings)
    groups, param_names = param_groups(model, config)
    opt = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8,
                            fused=True if cuda else None)
    ckdir = ckpt.CheckpointDir(Path(checkpoint_dir), keep=config.keep_checkpoints) if checkpoint_dir else None
    start, resumed_from = 0, None
    run_meta = {**(meta or {}), "total_steps": total, "world_size": world}
    if resume and ckdir is not None and ckdir.latest() is not None:
        resumed_from = ckdir.latest()
        m = ckpt.verify(resumed_from)
        _check_resumable(m, model, config, total, world, resumed_from)
        model.load_state_dict(ckpt.load_weights(resumed_from, m), strict=True)
        ckpt.load_optimizer(resumed_from, opt, param_names, m)
        start = int(m["step"])
    fwd: Any = model
    if config.compile and cuda:
        model.compile_encoder()
    if world > 1:
        fwd = DDP(model, device_ids=[device.index] if cuda else None, find_unused_parameters=False)

    # ---- 4. the loop ----------------------------------------------------------------------------------
    model.train()
    bar = _Progress(total, start, progress and dist_info.is_main)
    pending: list[tuple[int, torch.Tensor, dict[str, torch.Tensor], float]] = []
    losses: list[float] = []
    t0, seen = time.perf_counter(), 0

    def flush() -> None:
        # one device sync per `log_every` steps: the losses come back together
        if not pending:
            return
        flat = [p[1] for p in pending] + [x for p in pending for x in p[2].values()]
        vals = torch.stack(flat).float().cpu().tolist()
        task_vals = iter(vals[len(pending):])
        for (s, _, tl, lr), v in zip(pending, vals):
            losses.append(v)
            per = {k: next(task_vals) for k in tl}
            if on_step is not None and dist_info.is_main:
                el = time.perf_counter() - t0
                on_step(StepInfo(s, total, v, per, lr, (s - start) * global_batch, el))
        el = max(time.perf_counter() - t0, 1e-9)
        bar.update(pending[-1][0], float(np.mean(vals[:len(pending)])), seen * world / el)  # mean: steps are noisy
        pending.clear()

    last_written: Optional[Path] = None
    try:
        for step in range(start, total):
            f = lr_factor(step, total, config.warmup_fraction, config.decay)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * f
            torch.manual_seed(_step_seed(config.seed, rank, step))
            units = plan[step][rank::world]
            batch = collate(ts, units, pad_id, pad_multiple).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = fwd(batch.input_ids, batch.attention_mask, batch.marks)
            loss, per_task = multitask_loss(out, batch, task_names, num_classes)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            seen += batch.size
            pending.append((step + 1, loss.detach(), per_task, opt.param_groups[0]["lr"]))
            if (step + 1) % config.log_every == 0 or step + 1 == total:
                flush()
            if ckdir is not None and ((config.checkpoint_every and (step + 1) % config.checkpoint_every == 0)
                                      or step + 1 == total):
                flush()
                if dist_info.is_main:
                    last_written = ckdir.write(step + 1, model, tokenizer, optimizer=opt, param_names=param_names,
                                               config=config.to_dict(), meta=run_meta)
                if world > 1:
                    torch.distributed.barrier()
        flush()
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    model.eval()
    if ckdir is not None and last_written is None:
        last_written = ckdir.latest()
    dataset_tokens = {d: ts.tokens[i] for i, d in enumerate(ts.datasets)}
    return TrainResult(model, total, start, seconds, seen * world, seen * world / max(seconds, 1e-9), losses,
                       last_written, resumed_from, world, dataset_tokens)


def _check_resumable(m: dict[str, Any], model: MotherModel, config: TrainConfig, total: int, world: int,
                     where: Path) -> None:
    if m["model"]["heads"] != model.describe()["heads"]:
        raise UserError(f"cannot resume from {where}: it was trained with other task heads "
                        f"({[h['name'] for h in m['model']['heads']]})")
    old = m.get("config") or {}
    diff = sorted(k for k, v in config.to_dict().items() if k not in _RESUME_FREE and old.get(k) != v)
    if diff:
        raise UserError(f"cannot resume from {where}: settings changed since it was written: {', '.join(diff)}")
    om = m.get("meta") or {}
    if om.get("total_steps", total) != total or om.get("world_size", world) != world:
        raise UserError(f"cannot resume from {where}: it planned {om.get('total_steps')} steps on "
                        f"{om.get('world_size')} process(es), this run {total} on {world}")
