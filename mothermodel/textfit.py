"""How well an encoder's tokenizer fits a dataset's text.

A pretrained encoder reads text through its tokenizer's vocabulary. On text in
the language it was trained on, most words are one vocabulary entry; on another
language (or heavy jargon) words shatter into many short pieces that carry
little of what the encoder learnt, and the mother model can lose to the labels
it learns from. Measured on a sample of rows, with the tokenizer's own
pre-tokenizer deciding what a word is:

* ``whole_word_share``: share of words that are a single vocabulary entry;
* ``pieces_per_word``: mean pieces per word;
* ``unknown_share``: share of pieces that are the unknown token.

On the bundled English MiniLM: youtube 0.93 / 1.15, trec 0.96 / 1.06, chemprot
(biomedical English) 0.79 / 1.43, yoruba 0.50 / 1.71 (whole-word share /
pieces per word, train rows). A dataset below `POOR_WHOLE_WORD_SHARE` (or above
`POOR_UNKNOWN_SHARE`) is flagged: `label analyze`, `train` and `status` say so
and what to do (an encoder for that language: ``train --encoder DIR``), and
distillation also tries a character n-gram student, which needs no vocabulary.

Needs only the ``tokenizers`` package (no torch), so `label analyze` can run it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from tokenizers import Tokenizer

from mothermodel.inputs import as_text

__all__ = ["POOR_WHOLE_WORD_SHARE", "POOR_UNKNOWN_SHARE", "TextFit", "measure", "tokenizer_file"]

#: Below this share of whole-word tokens the encoder is flagged as a poor fit (between chemprot's 0.79
#: and yoruba's 0.50 on the bundled MiniLM).
POOR_WHOLE_WORD_SHARE = 0.65
#: Above this share of unknown tokens, too.
POOR_UNKNOWN_SHARE = 0.05
ADVICE = ("the encoder's vocabulary fits this text badly (another language?): pass an encoder for it "
          "(`mothermodel train --encoder DIR`, a Hugging Face model folder); meanwhile the guard may serve "
          "the labels and distillation tries a character n-gram student")


@dataclass(frozen=True)
class TextFit:
    """A tokenizer's fit to a sample of texts (see the module doc)."""

    rows: int
    words: int
    whole_word_share: float
    pieces_per_word: float
    unknown_share: float

    @property
    def poor(self) -> bool:
        return self.words > 0 and (self.whole_word_share < POOR_WHOLE_WORD_SHARE
                                   or self.unknown_share > POOR_UNKNOWN_SHARE)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        d["poor"] = self.poor
        if self.poor:
            d["advice"] = ADVICE
        return d


def tokenizer_file(encoder_dir: Optional[str | Path]) -> Optional[Path]:
    """The encoder folder's tokenizer.json (None when it has none: a slow tokenizer only)."""
    if encoder_dir is None:
        return None
    p = Path(encoder_dir) / "tokenizer.json"
    return p if p.is_file() else None


def measure(tokenizer_json: str | Path, texts: Sequence[Any], sample: int = 2000, seed: int = 0) -> TextFit:
    """The tokenizer's fit to (a seeded sample of at most `sample` of) `texts`; a pair input counts both texts."""
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.no_padding()
    rows = [as_text(t) for t in texts if t]
    if len(rows) > sample:
        rows = random.Random(seed).sample(rows, sample)
    unk = tok.token_to_id(str(getattr(tok.model, "unk_token", "[UNK]") or "[UNK]"))
    words = whole = pieces = unknown = 0
    for enc in tok.encode_batch(rows, add_special_tokens=False):
        per_word: dict[int, int] = {}
        for w, i in zip(enc.word_ids, enc.ids):
            if w is None:
                continue
            per_word[w] = per_word.get(w, 0) + 1
            pieces += 1
            unknown += int(unk is not None and i == unk)
        words += len(per_word)
        whole += sum(1 for n in per_word.values() if n == 1)
    return TextFit(rows=len(rows), words=words, whole_word_share=whole / words if words else 1.0,
                   pieces_per_word=pieces / words if words else 1.0,
                   unknown_share=unknown / pieces if pieces else 0.0)
