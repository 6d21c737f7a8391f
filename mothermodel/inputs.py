"""A task's input: how the text a model reads is built from a row's fields.

Most tasks read one text field. Some need more than one sentence:

* ``pair``: two fields encoded as a text pair by the tokenizer (as GLUE's pair
  tasks are: ``[CLS] a [SEP] b [SEP]``), e.g. a question and a passage;
* ``markers``: one text field with markers inserted around character spans held
  in other columns, e.g. the two entity mentions a relation is about
  (``... << GLUT2 >> ... [[ STZ ]] ...``). The same sentence asked about another
  pair of entities is another input, so the model can tell the pairs apart.

The template is part of a task's spec and fingerprint, and every stage that
reads text builds the input with it: the label model's text view, the mother
model (`train`, `predict`), distillation, the ONNX bundle's manifest and its
runner, the MLflow pyfunc. A template is plain JSON (``to_dict``), so a bundle
carries it in its manifest.

Standard library only, and no import of the rest of mothermodel: the bundle
runner (distill/run_bundle.py) uses this module, and a standalone copy of the
runner needs only this file beside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

__all__ = ["KINDS", "DEFAULT_MARKERS", "PAIR_JOIN", "TaskInput", "InputError", "MarkedText", "as_text"]

KINDS = ("text", "pair", "markers")
#: Markers of the first and second span: punctuation the encoder's vocabulary already has (no new tokens
#: to learn, so a small dataset can use them), distinct per span so the model knows which entity is which.
DEFAULT_MARKERS: tuple[tuple[str, str], ...] = (("<< ", " >>"), ("[[ ", " ]]"), ("{{ ", " }}"), ("(( ", " ))"))
#: How a text pair reads as one string, for consumers that take one text (hashed n-grams, logs).
PAIR_JOIN = " || "

Rendered = Union[str, tuple]  # one text, or a (text, text_pair) tuple


class InputError(ValueError):
    """A template or a row that does not fit it; the message names the field."""


class MarkedText(str):
    """A rendered markers input: the text, plus where each span's opening marker starts in it.

    ``marks[i]`` is the character offset of span i's opening marker, -1 where the row has no such span.
    The mother model reads its encoder's vectors at those positions (entity-start pooling, as relation
    classifiers do): it compares like the plain string and costs nothing to a consumer that ignores it.
    """

    marks: tuple[int, ...]

    def __new__(cls, text: str, marks: Sequence[int] = ()) -> "MarkedText":
        obj = super().__new__(cls, text)
        obj.marks = tuple(int(m) for m in marks)
        return obj

    def __reduce__(self):  # pickles (worker processes) with its marks
        return (MarkedText, (str(self), self.marks))


def as_text(x: Rendered) -> str:
    """One string for a rendered input: a pair is joined with `PAIR_JOIN`."""
    if isinstance(x, tuple):
        return PAIR_JOIN.join(x)
    return x


def _span(value: Any, field: str, n: int) -> tuple[int, int]:
    """A [start, end) character span as two ints within a text of length n."""
    if isinstance(value, Mapping):
        value = (value.get("start"), value.get("end"))
    try:
        start, end = value
        if isinstance(start, bool) or isinstance(end, bool) or int(start) != start or int(end) != end:
            raise TypeError
        start, end = int(start), int(end)
    except (TypeError, ValueError):
        raise InputError(f"{field}: a span must be [start, end] character offsets, got {value!r}") from None
    if not 0 <= start <= end <= n:
        raise InputError(f"{field}: span [{start}, {end}] is outside the text (length {n})")
    return start, end


@dataclass(frozen=True)
class TaskInput:
    """How a task's model input is built from a row.

    Attributes:
        kind: 'text' (one field), 'pair' (two fields, a tokenizer text pair) or
            'markers' (one field with markers around spans).
        fields: the text field(s): one for 'text' and 'markers', two for 'pair'.
        spans: 'markers' only: columns holding each span's [start, end]
            character offsets into the text (end exclusive).
        markers: 'markers' only: (open, close) strings per span; default
            `DEFAULT_MARKERS` in order.
    """

    kind: str = "text"
    fields: tuple[str, ...] = ("text",)
    spans: tuple[str, ...] = ()
    markers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "spans", tuple(self.spans))
        object.__setattr__(self, "markers", tuple(tuple(m) for m in self.markers))
        if self.kind not in KINDS:
            raise InputError(f"input.kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        want = 2 if self.kind == "pair" else 1
        if len(self.fields) != want or not all(isinstance(f, str) and f for f in self.fields):
            raise InputError(f"input.fields: a {self.kind} input reads {want} field name(s), got {list(self.fields)!r}")
        if self.kind == "pair" and self.fields[0] == self.fields[1]:
            raise InputError("input.fields: a pair needs two different fields")
        if self.kind != "markers":
            if self.spans or self.markers:
                raise InputError("input.spans: only a markers input has spans and markers")
            return
        if not self.spans or not all(isinstance(s, str) and s for s in self.spans):
            raise InputError("input.spans: a markers input needs one or more span columns")
        if len(set(self.spans)) != len(self.spans) or self.fields[0] in self.spans:
            raise InputError("input.spans: each span column once, and not the text field")
        if not self.markers:
            if len(self.spans) > len(DEFAULT_MARKERS):
                raise InputError(f"input.markers: give markers for more than {len(DEFAULT_MARKERS)} spans")
            object.__setattr__(self, "markers", DEFAULT_MARKERS[:len(self.spans)])
        if len(self.markers) != len(self.spans) or not all(
                len(m) == 2 and all(isinstance(s, str) and s.strip() for s in m) for m in self.markers):
            raise InputError("input.markers: one [open, close] pair of non-blank strings per span")

    # --- building ----------------------------------------------------------------

    @classmethod
    def text(cls, field: str = "text") -> "TaskInput":
        """One text field."""
        return cls("text", (field,))

    @classmethod
    def pair(cls, first: str, second: str) -> "TaskInput":
        """Two fields, encoded as a text pair."""
        return cls("pair", (first, second))

    @classmethod
    def marked(cls, field: str, spans: Sequence[str], markers: Optional[Sequence[Sequence[str]]] = None) -> "TaskInput":
        """FIELD with markers around the character spans held in the SPANS columns."""
        return cls("markers", (field,), tuple(spans), tuple(tuple(m) for m in markers or ()))

    # --- JSON form (registry, manifests) -------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "fields": list(self.fields)}
        if self.kind == "markers":
            d["spans"] = list(self.spans)
            d["markers"] = [list(m) for m in self.markers]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "TaskInput":
        """The inverse of `to_dict`; also the spec form (``field`` for one field, ``markers`` optional)."""
        if isinstance(d, TaskInput):
            return d
        if not isinstance(d, Mapping):
            raise InputError(f"input: must be a mapping (kind, fields, ...), got {type(d).__name__}")
        known = {"kind", "fields", "field", "spans", "markers"}
        unknown = sorted(set(map(str, d)) - known)
        if unknown:
            raise InputError(f"input.{unknown[0]}: unknown field ({', '.join(sorted(known))})")
        if "field" in d and "fields" in d:
            raise InputError("input.field: give field or fields, not both")
        fields = d.get("fields", [d["field"]] if "field" in d else ["text"])
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)):
            raise InputError("input.fields: must be a list of field names")
        spans, markers = d.get("spans") or (), d.get("markers") or ()
        if isinstance(spans, str) or not isinstance(spans, (list, tuple)):
            raise InputError("input.spans: must be a list of column names")
        if not isinstance(markers, (list, tuple)) or not all(isinstance(m, (list, tuple)) for m in markers):
            raise InputError("input.markers: must be a list of [open, close] pairs")
        return cls(str(d.get("kind", "text")), tuple(fields), tuple(spans), tuple(tuple(m) for m in markers))

    @property
    def key(self) -> str:
        """A short hash of the template (tells inputs of one dataset apart)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column a row needs."""
        return self.fields + self.spans

    def describe(self) -> str:
        if self.kind == "text":
            return f"text field {self.fields[0]}"
        if self.kind == "pair":
            return f"text pair {self.fields[0]} + {self.fields[1]}"
        return f"{self.fields[0]} with markers around {', '.join(self.spans)}"

    # --- rendering --------------------------------------------------------------------

    def render(self, row: Mapping[str, Any]) -> Rendered:
        """The model input of one row (a mapping of field -> value): a string, or a (text, text_pair) tuple."""
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise InputError(f"{missing[0]}: the row has no such field (the input is the {self.describe()})")
        if self.kind == "text":
            return _str(row[self.fields[0]])
        if self.kind == "pair":
            return (_str(row[self.fields[0]]), _str(row[self.fields[1]]))
        text = _str(row[self.fields[0]])
        cuts = []
        for i, (col, (opening, closing)) in enumerate(zip(self.spans, self.markers)):
            if row[col] is None:
                continue  # no span on this row: the text without that marker
            start, end = _span(row[col], col, len(text))
            # At one offset: closing markers before opening ones, then by span order.
            cuts += [(start, 1, -i, opening), (end, 0, i, closing)]
        pieces, marks, prev, size = [], [-1] * len(self.spans), 0, 0
        for pos, is_open, key, s in sorted(cuts):
            pieces.append(text[prev:pos])
            size += pos - prev
            prev = pos
            if is_open:
                marks[-key] = size
            pieces.append(s)
            size += len(s)
        pieces.append(text[prev:])
        return MarkedText("".join(pieces), marks)

    def render_columns(self, columns: Mapping[str, Sequence[Any]]) -> list[Rendered]:
        """Every row's input, from column lists (field -> values, same length)."""
        n = len(columns[self.fields[0]]) if self.fields[0] in columns else 0
        if self.kind == "text":
            return [_str(v) for v in columns[self.fields[0]]] if n else []
        names = self.columns
        return [self.render({c: columns[c][i] for c in names}) for i in range(n)]


def _str(v: Any) -> str:
    return "" if v is None else str(v)
