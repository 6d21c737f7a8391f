"""The mother model: one shared encoder, one small head per task.

::

    text ─► encoder ─► pool (mean | cls) ─► dropout ─► h ─┬─► head(task A) ─► logits A
                                                          ├─► head(task B) ─► logits B
                                                          └─► ...

Layouts:

* ``flat``: every head is a linear layer on ``h``.
* ``hierarchical`` (HierMTL, Snorkel MeTaL): a child task's head reads
  ``[h, softmax(parent logits)]``, so what the parent decided informs the child.
  The parent's probabilities enter the child detached: the parent head learns
  from its own labels only. (MeTaL lets the child's loss flow into the parent;
  on our synthetic trees that bent the parent toward what suited the child and
  cost it accuracy, while the child lost nothing from the detach.)

Slice heads (optional, MMTL slice-based learning, simplified): a task may
declare named slices (a boolean per row). Each slice gets an *indicator* (a
logistic unit predicting membership, trained on every row) and an *expert* (a
linear classifier trained on the slice's members only); the task head then also
reads each expert's class probabilities gated by the indicator's membership
probability. Membership at prediction time comes from the indicator, so no
slice function is needed to predict. The indicator reads the pooled vector
detached: it routes, and a membership rule that is not the task (say, "short
texts") must not reshape the shared encoder (it did, and cost the task up to
40 points on synthetic data when it could).

Heads are addable and removable by name (:meth:`MotherModel.add_head`,
:meth:`MotherModel.remove_head`, :func:`reconcile_heads`) for warm starts. A
new head's initial weights depend only on (seed, task name), never on which
other heads exist.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from mothermodel.trainer.encoder import load_encoder

__all__ = ["HeadSpec", "TaskHead", "MotherModel", "head_specs", "reconcile_heads", "WarmStart", "build_model",
           "warm_start"]


@dataclass(frozen=True)
class HeadSpec:
    """What a task head looks like (its structure, not its weights).

    Attributes:
        name: the task.
        classes: class names (the head has one output per class).
        parent: the parent task in a tree (read by the hierarchical layout), or None.
        parent_class: the parent's class index this task refines, or None.
        slices: names of the task's slices (each gets an indicator and an expert).
        spans: marked spans in the task's input (mothermodel.inputs markers): the head reads the pooled
            vector and the encoder's vector at each span's opening marker (entity-start pooling, the
            relation classifiers' choice: the sentence's mean says little about which pair is asked about).
    """

    name: str
    classes: tuple[str, ...]
    parent: Optional[str] = None
    parent_class: Optional[int] = None
    slices: tuple[str, ...] = ()
    spans: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"], d["slices"] = list(self.classes), list(self.slices)
        if not self.spans:
            del d["spans"]  # descriptions of models without marked inputs read as before
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HeadSpec":
        return cls(name=d["name"], classes=tuple(d["classes"]), parent=d.get("parent"),
                   parent_class=d.get("parent_class"), slices=tuple(d.get("slices") or ()),
                   spans=int(d.get("spans") or 0))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def head_specs(tasks: Sequence[Any], span_pooling: bool = True) -> list[HeadSpec]:
    """HeadSpecs of TaskData-like objects (name, classes, parent, parent_class, slices, spans);
    `span_pooling=False` gives marked tasks plain heads."""
    return [HeadSpec(t.name, tuple(t.classes), t.parent, t.parent_class, tuple(sorted(getattr(t, "slices", {}) or {})),
                     int(getattr(t, "spans", 0) or 0) if span_pooling else 0)
            for t in tasks]


def _init_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


def _linear(in_dim: int, out_dim: int, gen: torch.Generator) -> nn.Linear:
    # BERT-style init (N(0, 0.02), zero bias): near-uniform first predictions, gentle first gradients.
    lin = nn.Linear(in_dim, out_dim)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(out_dim, in_dim, generator=gen) * 0.02)
        lin.bias.zero_()
    return lin


class TaskHead(nn.Module):
    """One task's head: a linear classifier, plus slice indicators and experts when the task has slices."""

    def __init__(self, spec: HeadSpec, hidden: int, parent_classes: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(_init_seed(seed, spec.name))
        k = spec.num_classes
        self.parent_classes = parent_classes
        self.span_dim = hidden * spec.spans
        self.indicators = nn.ModuleDict({s: _linear(hidden, 1, gen) for s in spec.slices})
        self.experts = nn.ModuleDict({s: _linear(hidden, k, gen) for s in spec.slices})
        self.out = _linear(hidden + self.span_dim + parent_classes + k * len(spec.slices), k, gen)

    def forward(self, h: torch.Tensor, parent_probs: Optional[torch.Tensor],
                span_h: Optional[torch.Tensor] = None) -> dict[str, Any]:
        feats = [h]
        if self.span_dim:
            feats.append(span_h[:, :self.span_dim])
        if self.parent_classes:
            feats.append(parent_probs)
        res: dict[str, Any] = {}
        if len(self.experts):
            gates, experts = {}, {}
            for s in self.experts:
                g = self.indicators[s](h.detach()).squeeze(-1)  # a router: membership must not reshape the encoder
                e = self.experts[s](h)
                gates[s], experts[s] = g, e
                feats.append(torch.sigmoid(g).unsqueeze(-1) * torch.softmax(e, dim=-1))
            res["slice_gates"], res["slice_logits"] = gates, experts
        res["logits"] = self.out(torch.cat(feats, dim=-1) if len(feats) > 1 else h)
        return res


class MotherModel(nn.Module):
    """Shared encoder + one head per task.

    Args:
        encoder: a Hugging Face encoder (AutoModel) returning ``last_hidden_state``.
        specs: the task heads, any order (parents are computed before children).
        pooling: 'mean' or 'cls'.
        layout: 'flat' or 'hierarchical'.
        dropout: dropout on the pooled vector.
        seed: seed of head initialisation (with the task name).

    ``forward(input_ids, attention_mask)`` returns ``{task: {"logits": (B, C),
    ["slice_gates": {slice: (B,)}, "slice_logits": {slice: (B, C)}]}}`` for
    every head, on every row of the batch (heads are tiny next to the encoder;
    the loss picks each task's rows).
    """

    def __init__(self, encoder: nn.Module, specs: Sequence[HeadSpec], *, pooling: str = "mean",
                 layout: str = "flat", dropout: float = 0.1, seed: int = 0):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        if layout not in ("flat", "hierarchical"):
            raise ValueError(f"layout must be 'flat' or 'hierarchical', got {layout!r}")
        self.encoder = encoder
        self.pooling, self.layout, self.dropout_p, self.seed = pooling, layout, float(dropout), int(seed)
        self.hidden = int(encoder.config.hidden_size)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleDict()
        self.specs: dict[str, HeadSpec] = {}
        self._order: list[str] = []
        self.__dict__["_encode_fn"] = None  # optional torch.compile'd encoder (not a submodule)
        for spec in _parents_first(list(specs), layout):
            self.add_head(spec)

    # ------------------------------------------------------------------ heads
    def _parent_dim(self, spec: HeadSpec) -> int:
        if self.layout != "hierarchical" or spec.parent is None:
            return 0
        if spec.parent not in self.specs:
            raise ValueError(f"task {spec.name!r}: its parent {spec.parent!r} has no head (hierarchical layout "
                             "needs the whole tree)")
        return self.specs[spec.parent].num_classes

    def add_head(self, spec: HeadSpec) -> None:
        """Add a freshly initialised head (replacing one of the same name)."""
        if spec.name in self.specs:
            self.remove_head(spec.name, _keep_children=True)
        head = TaskHead(spec, self.hidden, self._parent_dim(spec), self.seed)
        p = next(self.encoder.parameters(), None)
        if p is not None:
            head.to(p.device)
        self.heads[spec.name] = head
        self.specs[spec.name] = spec
        self._order = [s.name for s in _parents_first(list(self.specs.values()), self.layout)]

    def remove_head(self, name: str, _keep_children: bool = False) -> None:
        """Drop a task's head."""
        if not _keep_children and self.layout == "hierarchical":
            kids = [s.name for s in self.specs.values() if s.parent == name]
            if kids:
                raise ValueError(f"cannot remove {name!r}: tasks {kids} read its output (hierarchical layout)")
        del self.heads[name]
        del self.specs[name]
        self._order = [n for n in self._order if n != name]

    def reset_head(self, name: str) -> None:
        """Re-initialise a head (same structure) to its fresh weights."""
        spec = self.specs[name]
        head = TaskHead(spec, self.hidden, self._parent_dim(spec), self.seed)
        with torch.no_grad():
            for (k, dst), (_, src) in zip(self.heads[name].state_dict().items(), head.state_dict().items()):
                dst.copy_(src)

    @property
    def task_names(self) -> list[str]:
        """Head names, parents before children."""
        return list(self._order)

    # ---------------------------------------------------------------- forward
    def compile_encoder(self) -> None:
        """Use a torch.compile'd encoder forward (GPU; dynamic shapes for bucketed batches)."""
        self.__dict__["_encode_fn"] = torch.compile(self.encoder, dynamic=True)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             marks: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, H) float32 sentence vectors, and (B, spans * H) the vectors at the marker positions
        `marks` (B, spans) when a head reads spans (None otherwise)."""
        enc = self.__dict__["_encode_fn"] or self.encoder
        hs = enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        spans = max((s.spans for s in self.specs.values()), default=0)
        span_h = None
        if spans:
            pos = torch.zeros((hs.shape[0], spans), dtype=torch.long, device=hs.device)
            if marks is not None:  # no marks (e.g. a text without markers): the first token stands in
                k = min(spans, marks.shape[1])
                pos[:, :k] = marks[:, :k].clamp(0, hs.shape[1] - 1)
            span_h = hs.gather(1, pos.unsqueeze(-1).expand(-1, -1, hs.shape[-1])).flatten(1).float()
        if self.pooling == "cls":
            return hs[:, 0].float(), span_h
        m = attention_mask.unsqueeze(-1).to(hs.dtype)
        # sum in float32: bf16 sums over hundreds of tokens lose digits
        return (hs * m).float().sum(1) / m.float().sum(1).clamp_min(1.0), span_h

    def heads_forward(self, h: torch.Tensor, span_h: Optional[torch.Tensor] = None) -> dict[str, dict[str, Any]]:
        """Every head on pooled vectors `h` (B, H) (and marker vectors `span_h`), parents first."""
        out: dict[str, dict[str, Any]] = {}
        for name in self._order:
            spec = self.specs[name]
            head = self.heads[name]
            pp = None
            if head.parent_classes:
                pp = torch.softmax(out[spec.parent]["logits"].float(), dim=-1).detach()
            out[name] = head(h, pp, span_h)
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                marks: Optional[torch.Tensor] = None) -> dict[str, dict[str, Any]]:
        h, span_h = self.pool(input_ids, attention_mask, marks)
        return self.heads_forward(self.drop(h), None if span_h is None else self.drop(span_h))

    # ------------------------------------------------------------ description
    def describe(self) -> dict[str, Any]:
        """JSON-ready structure (heads, pooling, layout, dropout, seed): what a checkpoint needs to rebuild it."""
        return {
            "heads": [self.specs[n].to_dict() for n in self._order],
            "pooling": self.pooling,
            "layout": self.layout,
            "dropout": self.dropout_p,
            "seed": self.seed,
            "hidden_size": self.hidden,
        }

    @classmethod
    def from_description(cls, encoder: nn.Module, desc: dict[str, Any]) -> "MotherModel":
        return cls(encoder, [HeadSpec.from_dict(h) for h in desc["heads"]], pooling=desc["pooling"],
                   layout=desc["layout"], dropout=desc["dropout"], seed=desc.get("seed", 0))


def _parents_first(specs: list[HeadSpec], layout: str) -> list[HeadSpec]:
    """Order heads so a parent comes before its children (stable otherwise)."""
    by = {s.name: s for s in specs}
    out: list[HeadSpec] = []
    state: dict[str, int] = {}

    def visit(s: HeadSpec, path: tuple[str, ...]) -> None:
        if state.get(s.name) == 2:
            return
        if s.name in path:
            raise ValueError(f"task tree has a cycle: {' -> '.join(path + (s.name,))}")
        if s.parent in by:
            visit(by[s.parent], path + (s.name,))
        state[s.name] = 2
        out.append(s)

    for s in specs:
        visit(s, ())
    return out


# --------------------------------------------------------------------------- #
# Warm starts
# --------------------------------------------------------------------------- #
@dataclass
class WarmStart:
    """What :func:`reconcile_heads` did, head by head."""

    kept: list[str] = field(default_factory=list)
    finetuned: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    slices: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # head -> slices kept / added / dropped

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.slices:
            del d["slices"]  # runs without slice heads report what they did before
        return d


@torch.no_grad()
def transfer_slices(old: "TaskHead", new: "TaskHead", old_spec: HeadSpec, new_spec: HeadSpec) -> None:
    """Carry a head's weights over a change of its slices alone: the output layer's columns for the pooled
    vector (and spans, parent), each kept slice's indicator, expert and output columns; a new slice's output
    columns start at zero, so the head's predictions do not move until training moves them."""
    k = new_spec.num_classes
    base = new.out.in_features - k * len(new_spec.slices)
    new.out.weight[:, :base] = old.out.weight[:, :base]
    new.out.bias.copy_(old.out.bias)
    for j, s in enumerate(new_spec.slices):
        cols = slice(base + k * j, base + k * (j + 1))
        if s in old_spec.slices:
            i = old_spec.slices.index(s)
            new.out.weight[:, cols] = old.out.weight[:, base + k * i: base + k * (i + 1)]
            new.indicators[s].load_state_dict(old.indicators[s].state_dict())
            new.experts[s].load_state_dict(old.experts[s].state_dict())
        else:
            new.out.weight[:, cols] = 0.0


def reconcile_heads(model: MotherModel, specs: Sequence[HeadSpec], *, changed: Iterable[str] = (),
                    changed_policy: str = "finetune", keep: Iterable[str] = ()) -> WarmStart:
    """Make `model`'s heads match `specs`, in place, keeping what can be kept.

    * a head whose task is gone is removed; a head in `keep` (a task this run
      does not train, e.g. `train --task` chose others) is kept as it is,
      unless its parent's head no longer fits it (hierarchical layout), then
      it is removed too;
    * a task without a head gets a new, freshly initialised one;
    * a head whose structure differs (classes, parent, parent class) is
      re-initialised: its outputs would mean something else;
    * a head whose slices alone changed keeps its weights and the kept slices' indicators and experts;
      a new slice's expert enters the output layer with zero weights (the head predicts what it did until
      training moves them), a dropped slice's weights go (`transfer_slices`); fine-tuned;
    * a task in `changed` (its labels moved, its structure did not) is
      fine-tuned from its current weights (``changed_policy='finetune'``, the
      default) or re-initialised (``'reinit'``). Fine-tuning is the default
      because the shared encoder is warm-started anyway: a fresh random head
      on a trained encoder sends large, random gradients into the features the
      other tasks rely on (the LP-FT effect), while the old head is already
      close to the new optimum when an LF or two changed;
    * every other head is kept with bit-identical weights.
    """
    if changed_policy not in ("finetune", "reinit"):
        raise ValueError(f"changed_policy must be 'finetune' or 'reinit', got {changed_policy!r}")
    changed = set(changed)
    want = {s.name: s for s in specs}
    ws = WarmStart()
    # children before parents when removing, parents before children when adding
    keep = set(keep) - set(want)
    for name in reversed(model.task_names):
        if name not in want and name not in keep:
            model.remove_head(name, _keep_children=True)
            ws.removed.append(name)
    for spec in _parents_first(list(specs), model.layout):
        old = model.specs.get(spec.name)
        if old is None:
            model.add_head(spec)
            ws.added.append(spec.name)
        elif old != spec and old == replace(spec, slices=old.slices) and \
                model.heads[spec.name].parent_classes == model._parent_dim(spec):
            old_head = model.heads[spec.name]
            model.add_head(spec)
            transfer_slices(old_head, model.heads[spec.name], old, spec)
            ws.finetuned.append(spec.name)
            ws.slices[spec.name] = {"kept": [x for x in spec.slices if x in old.slices],
                                    "added": [x for x in spec.slices if x not in old.slices],
                                    "dropped": [x for x in old.slices if x not in spec.slices]}
        elif old != spec or model.heads[spec.name].parent_classes != model._parent_dim(spec):
            model.add_head(spec)
            ws.reinitialized.append(spec.name)
        elif spec.name in changed:
            if changed_policy == "reinit":
                model.reset_head(spec.name)
                ws.reinitialized.append(spec.name)
            else:
                ws.finetuned.append(spec.name)
        else:
            ws.kept.append(spec.name)
    broken: list[str] = []
    for name in model.task_names:  # parents first: a kept head under a broken one is broken too
        if name not in keep:
            continue
        spec = model.specs[name]
        lost = model.layout == "hierarchical" and spec.parent is not None and (
            spec.parent not in model.specs or spec.parent in broken)
        if lost or model.heads[name].parent_classes != model._parent_dim(spec):
            broken.append(name)
        else:
            ws.kept.append(name)
    for name in reversed(broken):
        model.remove_head(name, _keep_children=True)
        ws.removed.append(name)
    return ws


# --------------------------------------------------------------------------- #
# Building and warm-starting (what the registry glue calls)
# --------------------------------------------------------------------------- #
def build_model(specs: Sequence[HeadSpec], config: Any) -> tuple[MotherModel, Any]:
    """A fresh (MotherModel, tokenizer): `config.encoder` (None = default MiniLM) plus new heads."""
    encoder, tokenizer = load_encoder(config.encoder)
    model = MotherModel(encoder, specs, pooling=config.pooling, layout=config.layout, dropout=config.dropout,
                        seed=config.seed)
    return model, tokenizer


def warm_start(model_dir: Any, specs: Sequence[HeadSpec], config: Any, *, changed: Iterable[str] = (),
               changed_policy: str = "finetune", verify_all: bool = True,
               keep: Iterable[str] = ()) -> tuple[MotherModel, Any, WarmStart]:
    """(model, tokenizer, what happened) from a saved model, its heads reconciled with `specs`.

    The encoder and tokenizer are the saved model's (hash-checked on load, unless
    `verify_all` is False because the caller verified every file just before);
    pooling and dropout follow `config`; a layout change re-initialises every
    child head. The caller decides whether a warm start makes sense at all
    (e.g. not when `config.encoder` differs from ``manifest["config"]["encoder"]``).
    """
    from mothermodel.trainer.checkpoint import load_model  # lazy: import cycle (checkpoint imports MotherModel)

    model, tokenizer, _ = load_model(model_dir, verify_all=verify_all)
    model.pooling = config.pooling
    model.dropout_p = float(config.dropout)
    model.drop.p = float(config.dropout)
    model.layout = config.layout
    model.seed = int(config.seed)  # new heads: initialised from (this run's seed, task name)
    ws = reconcile_heads(model, specs, changed=changed, changed_policy=changed_policy, keep=keep)
    return model, tokenizer, ws
