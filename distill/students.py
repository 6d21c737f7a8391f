"""The students: small per-task models with the mother model's inputs, ``(input_ids, attention_mask) -> logits``.

* :class:`TinyStudent`: a small post-LN transformer encoder (BERT-like:
  embeddings, N layers of self-attention + feed-forward, mean pooling, a linear
  classifier) on the teacher's token ids. Its vocabulary is the task's most
  frequent teacher token ids, remapped inside the module (and so inside the
  exported graph) by a lookup buffer; its word and position embeddings start
  as the teacher's, projected onto their top principal directions (SVD).
* :class:`NgramStudent`: fastText-like. Every token n-gram (n in `orders`) is
  hashed to one of `buckets` rows of an embedding table; the masked mean of the
  rows goes through one linear layer. The hashing is integer arithmetic on the
  token ids inside forward(), so the exported graph needs nothing else.

* ``chars``: the same n-gram student over *characters*: its own tokenizer
  (:func:`char_tokenizer`, one id per character of the task's text, built
  from the dataset) replaces the teacher's. Character n-grams need no fitted
  vocabulary, so it is what distillation tries where the encoder's tokenizer
  fits the text badly (another language: mothermodel.textfit).

Both are plain torch (no transformers), which keeps the ONNX graphs small and
the export path (TorchScript exporter) simple.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from typing import Any, Optional, Sequence

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from torch import nn
from transformers import PreTrainedTokenizerFast

from mothermodel.distill.config import DistillConfig
from mothermodel.inputs import as_text

__all__ = ["TinyStudent", "NgramStudent", "build_student", "task_vocabulary", "char_tokenizer",
           "param_count"]

_HASH_MUL = 1_000_003
_HASH_MOD = 2_147_483_647  # keeps every intermediate product below 2**51: no int64 overflow


class _Block(nn.Module):
    """One post-LN transformer layer (as BERT): x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, hidden: int, heads: int, inter: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ff1 = nn.Linear(hidden, inter)
        self.ff2 = nn.Linear(inter, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        d = h // self.heads
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(b, n, h)
        x = self.ln1(x + self.drop(self.proj(y)))
        return self.ln2(x + self.drop(self.ff2(torch.nn.functional.gelu(self.ff1(x)))))


class TinyStudent(nn.Module):
    """A small transformer classifier over the teacher's token ids.

    Args:
        vocab_map: (teacher vocabulary size,) int64: teacher token id -> student row
            (ids the student does not keep map to the unknown token's row).
        vocab_size: student embedding rows.
        num_classes: outputs.
        max_positions: position embeddings (the longest input it accepts).
    """

    kind = "tiny"

    def __init__(self, vocab_map: torch.Tensor, vocab_size: int, num_classes: int, *, hidden_size: int = 128,
                 num_layers: int = 2, num_heads: int = 4, intermediate_size: int = 512, max_positions: int = 512,
                 dropout: float = 0.1):
        super().__init__()
        self.register_buffer("vocab_map", vocab_map.to(torch.int64))
        self.word = nn.Embedding(vocab_size, hidden_size)
        self.pos = nn.Embedding(max_positions, hidden_size)
        self.ln = nn.LayerNorm(hidden_size, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(_Block(hidden_size, num_heads, intermediate_size, dropout)
                                    for _ in range(num_layers))
        self.out = nn.Linear(hidden_size, num_classes)
        self.shape = dict(vocab_size=vocab_size, num_classes=num_classes, hidden_size=hidden_size,
                          num_layers=num_layers, num_heads=num_heads, intermediate_size=intermediate_size,
                          max_positions=max_positions, teacher_vocab_size=int(vocab_map.shape[0]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids = self.vocab_map[input_ids.clamp(0, self.vocab_map.shape[0] - 1)]
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.drop(self.ln(self.word(ids) + self.pos(pos)))
        m = attention_mask.to(x.dtype)
        bias = (1.0 - m)[:, None, None, :] * -1e4  # padded keys get no attention
        for layer in self.layers:
            x = layer(x, bias)
        pooled = (x * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
        return self.out(pooled)


class NgramStudent(nn.Module):
    """Hashed token n-grams, a masked mean of their embeddings, one linear layer."""

    kind = "ngram"

    def __init__(self, num_classes: int, *, orders: Sequence[int] = (1, 2, 3), buckets: int = 65536, dim: int = 32):
        super().__init__()
        self.orders = tuple(int(n) for n in orders)
        self.buckets = int(buckets)
        self.emb = nn.Embedding(self.buckets, dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        self.out = nn.Linear(dim, num_classes)
        self.shape = dict(num_classes=num_classes, orders=list(self.orders), buckets=self.buckets, dim=dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        total: Optional[torch.Tensor] = None
        count: Optional[torch.Tensor] = None
        m = attention_mask.to(torch.float32)
        for n in self.orders:
            # n-gram j covers tokens j..j+n-1: slice k runs from k to (length - (n-1-k)); negative
            # constant ends keep the exported graph free of shape arithmetic.
            def part(t: torch.Tensor, k: int) -> torch.Tensor:
                return t[:, k:] if k == n - 1 else t[:, k:k - (n - 1)]

            h = part(input_ids, 0) + n * _HASH_MUL  # the order salts the hash: unigram 5 != bigram (0, 5)
            mask = part(m, 0)
            for k in range(1, n):
                h = (h * _HASH_MUL + part(input_ids, k)) % _HASH_MOD
                mask = mask * part(m, k)
            e = self.emb(h % self.buckets) * mask.unsqueeze(-1)
            total = e.sum(1) if total is None else total + e.sum(1)
            count = mask.sum(1) if count is None else count + mask.sum(1)
        return self.out(total / count.clamp_min(1.0).unsqueeze(-1))


CHAR_SPECIALS = ("[PAD]", "[UNK]", "[SEP]")


def char_tokenizer(texts: Sequence[Any], max_chars: int = 512, vocab: int = 4096) -> Any:
    """A character tokenizer for the `chars` student, as a transformers fast tokenizer (the trainer's
    `tokenize` and the bundle's tokenizer.json both take it): NFC, lower case, one token per character (spaces
    included, so word boundaries count), the `vocab` most frequent characters of `texts`, a pair joined by
    [SEP], truncated to `max_chars` characters."""
    counts = Counter()
    for t in texts:
        counts.update(unicodedata.normalize("NFC", as_text(t) if t else "").lower())
    chars = [c for c, _ in counts.most_common(vocab)]
    table = {tok: i for i, tok in enumerate(CHAR_SPECIALS)}
    for c in chars:
        table.setdefault(c, len(table))
    tok = Tokenizer(models.WordLevel(table, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="$A", pair="$A [SEP] $B:1",
                                                      special_tokens=[("[SEP]", table["[SEP]"])])
    tok.enable_truncation(max_chars)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", sep_token="[SEP]",
                                   model_max_length=max_chars)


def task_vocabulary(ids: np.ndarray, teacher_vocab: int, max_vocab: int, keep: Sequence[int]) -> np.ndarray:
    """The teacher token ids a tiny student keeps: `keep` (special tokens) and the most frequent of `ids`."""
    counts = np.bincount(ids.astype(np.int64), minlength=teacher_vocab)[:teacher_vocab]
    counts[list(keep)] = 0
    order = np.argsort(-counts, kind="stable")
    frequent = order[:max(0, max_vocab - len(keep))]
    frequent = frequent[counts[frequent] > 0]
    return np.concatenate([np.asarray(list(keep), np.int64), np.sort(frequent)])


def _projected(teacher_rows: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor, width: int,
               gen: torch.Generator) -> torch.Tensor:
    """Rows projected on the top principal directions, scaled to the teacher's spread, padded with noise."""
    proj = (teacher_rows - mean) @ basis
    proj = proj * (teacher_rows.std() / proj.std().clamp_min(1e-8))
    if proj.shape[1] < width:  # a teacher narrower than the student: the rest starts random
        proj = torch.cat([proj, torch.randn(proj.shape[0], width - proj.shape[1], generator=gen) * 0.02], 1)
    return proj


def init_from_teacher(student: TinyStudent, teacher_encoder: Any, kept: np.ndarray, seed: int) -> None:
    """Word and position embeddings from the teacher's: one SVD basis of its word-embedding matrix."""
    gen = torch.Generator().manual_seed(seed)
    width = student.word.weight.shape[1]
    with torch.no_grad():
        w = teacher_encoder.get_input_embeddings().weight.detach().float().cpu()
        mean = w.mean(0, keepdim=True)
        # The principal directions of the teacher's vocabulary: the projection loses the least of it.
        _, _, vt = torch.linalg.svd(w - mean, full_matrices=False)
        basis = vt[:min(width, vt.shape[0])].T
        student.word.weight.copy_(_projected(w[torch.from_numpy(kept)], basis, mean, width, gen))
        pos = getattr(getattr(teacher_encoder, "embeddings", None), "position_embeddings", None)
        if pos is not None:
            p = pos.weight.detach().float().cpu()[:student.pos.weight.shape[0]]
            student.pos.weight[:p.shape[0]].copy_(_projected(p, basis, p.mean(0, keepdim=True), width, gen))


def build_student(config: DistillConfig, num_classes: int, *, teacher_encoder: Any = None,
                  token_ids: Optional[np.ndarray] = None, special_ids: Sequence[int] = (), unk_id: int = 0,
                  max_positions: int = 512) -> nn.Module:
    """A fresh student of `config.student` (a tiny one initialised from `teacher_encoder`'s embeddings)."""
    torch.manual_seed(config.seed)
    if config.student == "ngram":
        return NgramStudent(num_classes, orders=config.ngram_orders, buckets=config.ngram_buckets,
                            dim=config.ngram_dim)
    if config.student == "chars":
        student = NgramStudent(num_classes, orders=config.char_orders, buckets=config.ngram_buckets,
                               dim=config.ngram_dim)
        student.kind = "chars"
        return student
    teacher_vocab = int(teacher_encoder.get_input_embeddings().weight.shape[0])
    keep = sorted({int(unk_id), *map(int, special_ids)})
    kept = task_vocabulary(token_ids if token_ids is not None else np.zeros(0, np.int64), teacher_vocab,
                           config.max_vocab, keep)
    vocab_map = torch.full((teacher_vocab,), keep.index(int(unk_id)), dtype=torch.int64)
    vocab_map[torch.from_numpy(kept)] = torch.arange(len(kept))
    student = TinyStudent(vocab_map, len(kept), num_classes, hidden_size=config.hidden_size,
                          num_layers=config.num_layers, num_heads=config.num_heads,
                          intermediate_size=config.intermediate_size, max_positions=max_positions,
                          dropout=config.dropout)
    init_from_teacher(student, teacher_encoder, kept, config.seed)
    return student


def param_count(module: nn.Module) -> int:
    """Trainable parameters (lookup buffers such as the vocabulary map are not parameters)."""
    return int(sum(p.numel() for p in module.parameters()))
