"""Import a WRENCH-format benchmark folder as a dataset plus a task.

A WRENCH folder holds train.json, valid.json, test.json (each maps id ->
{"label": int, "weak_labels": [int, ...], "data": {"text": ...}}) and
label.json (class index -> name). The dataset keeps the gold labels in a
`label` column marked as gold (evaluation only, never training), and the weak
labels as columns `lf_0` .. `lf_{m-1}`, one column source each.

Relation sets (WRENCH's chemprot, semeval, cdr, spouses) carry more than the
sentence: ``data`` also holds the two mentions the label is about (``entity1``,
``entity2``) and their character spans (``span1``, ``span2``: [start, end]).
They become columns too, and the task reads the sentence with markers around
the two spans (`RELATION_INPUT`), since the label depends on which pair is asked about.
"""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path

import pyarrow as pa

from mothermodel.errors import UserError
from mothermodel.inputs import TaskInput
from mothermodel.registry.records import NAME_RE, SourceSpec, TaskSpec, class_names_problem, is_name

SPLITS = ("train", "valid", "test")
RELATION_FIELDS = ("entity1", "entity2", "span1", "span2")
#: The input of a relation set: the sentence with markers around the two entity spans.
RELATION_INPUT = TaskInput.marked("text", ["span1", "span2"])


def read(folder: str | Path):
    """Read a WRENCH folder into (Arrow table, class names)."""
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"{d}: no such directory")
    label_file = d / "label.json"
    if not label_file.is_file():
        raise UserError(f"{label_file}: missing (a WRENCH folder needs label.json)")
    labels = _load_json(label_file)
    try:
        classes = [labels[k] for k in sorted(labels, key=int)]
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{label_file}: not a WRENCH label map ({e})") from None
    if [int(k) for k in sorted(labels, key=int)] != list(range(len(classes))):
        raise UserError(f"{label_file}: class indices must be 0..k-1")
    problem = class_names_problem(classes)  # the same rules as `task submit`
    if problem is None:
        problem = next((f"class {c!r} is not UTF-8 text" for c in classes if not _encodable(c)), None)
    if problem:
        raise UserError(f"{label_file}: classes: {problem}")
    ids, splits, texts, gold, weak, extra = [], [], [], [], [], []
    m = None
    for split in SPLITS:
        f = d / f"{split}.json"
        if not f.is_file():
            raise UserError(f"{f}: missing (a WRENCH folder needs {', '.join(s + '.json' for s in SPLITS)})")
        data = _load_json(f)
        if not isinstance(data, dict):
            raise UserError(f"{f}: must map id -> example")
        for key, ex in data.items():
            try:
                raw_wl, text, raw_y = ex["weak_labels"], ex["data"]["text"], ex["label"]
            except (KeyError, TypeError) as e:
                raise UserError(f"{f}: example {key!r}: missing or bad field {e}") from None
            if not isinstance(raw_wl, list):
                raise UserError(f"{f}: example {key!r}: weak_labels must be a list of class indices, "
                                f"got {reprlib.repr(raw_wl)}")
            wl = [_label(v, f, key, "weak_labels") for v in raw_wl]
            y = _label(raw_y, f, key, "label")
            if not isinstance(text, str) or not _encodable(text) or not _encodable(key):
                raise UserError(f"{f}: example {key!r:.40}: data.text must be UTF-8 text")
            if m is None:
                m = len(wl)
            elif len(wl) != m:
                raise UserError(f"{f}: example {key!r}: {len(wl)} weak labels, expected {m}")
            if not -1 <= y < len(classes) or any(v >= len(classes) or v < -1 for v in wl):
                raise UserError(f"{f}: example {key!r}: label out of range for {len(classes)} classes")
            ids.append(str(key)); splits.append(split); texts.append(text); gold.append(y); weak.append(wl)
            extra.append(_relation_fields(ex["data"], f, key))
    if m is None or not ids:
        raise UserError(f"{d}: no examples")
    cols = {"id": ids, "split": splits, "text": texts, "label": pa.array(gold, pa.int32())}
    if all(e is not None for e in extra):  # a relation set: every example names its entity pair
        for j, name in enumerate(RELATION_FIELDS):
            cols[name] = pa.array([e[j] for e in extra], pa.string() if j < 2 else pa.list_(pa.int64()))
    for j in range(m):
        cols[f"lf_{j}"] = pa.array([w[j] for w in weak], pa.int8() if len(classes) < 127 else pa.int32())
    return pa.table(cols), classes


def _load_json(f: Path):
    """A JSON file's value; anything JSON-with-extensions or the parser cannot hold (NaN/Infinity, numbers out of
    range, nesting too deep, not UTF-8) is refused naming the file."""
    def refuse_constant(name):
        raise ValueError(f"{name} is not a JSON number")

    def finite(text):
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(f"number {text[:30]} is out of range")
        return v

    def bounded(text):  # a class index never needs more digits; Python would read thousands of them
        if len(text.lstrip("-")) > 18:
            raise ValueError(f"number {text[:20]}... is out of range")
        return int(text)

    try:
        return json.loads(f.read_bytes().decode("utf-8-sig"), parse_constant=refuse_constant, parse_float=finite,
                          parse_int=bounded)
    except UnicodeDecodeError:
        raise UserError(f"{f}: not UTF-8 text") from None
    except RecursionError:
        raise UserError(f"{f}: nested too deeply to read") from None
    except ValueError as e:  # JSONDecodeError, too many digits, NaN/Infinity
        raise UserError(f"{f}: not valid JSON ({str(e).splitlines()[0][:200]})") from None


def _encodable(s) -> bool:
    """False for text Parquet cannot store: JSON's \\ud800 escapes give lone surrogates."""
    try:
        str(s).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _label(v, f: Path, key, fld: str) -> int:
    """A class index as written: an int (a whole-number float too); "01", 1.9 or true are refused, not coerced."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise UserError(f"{f}: example {key!r:.40}: {fld} must hold class indices (integers), got {reprlib.repr(v)}")
    return v


def _relation_fields(data, f: Path, key: str) -> tuple | None:
    """(entity1, entity2, span1, span2) of a relation example, None when it has not all four; a malformed
    span is refused naming the example."""
    if not isinstance(data, dict) or not all(k in data for k in RELATION_FIELDS):
        return None
    spans = []
    for k in ("span1", "span2"):
        v = data[k]
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)
                or not 0 <= v[0] <= v[1] <= len(str(data["text"]))):
            raise UserError(f"{f}: example {key!r}: {k} must be [start, end] offsets into the text, got {v!r}")
        spans.append(list(v))
    if not all(_encodable(data[k]) for k in ("entity1", "entity2")):
        raise UserError(f"{f}: example {key!r:.40}: entity1 and entity2 must be UTF-8 text")
    return (str(data["entity1"]), str(data["entity2"]), *spans)


def task_for(name: str, classes: list[str], m: int, origin: str, relation: bool = False) -> TaskSpec:
    """Task NAME on dataset NAME with one column source per WRENCH LF (`lf_0` .. `lf_{m-1}`); a relation
    set's task reads the sentence with its entity pair marked (`RELATION_INPUT`)."""
    if not is_name(name):
        raise UserError(f"{origin}: name: {name!r} does not match {NAME_RE.pattern}")
    return TaskSpec(name=name, dataset=name, classes=tuple(classes), parent=None,
                    description=f"Imported from WRENCH folder {Path(origin).name}", owner=None,
                    sources=tuple(SourceSpec(name=f"lf_{j}", kind="column", ref=f"lf_{j}") for j in range(m)),
                    origin=origin, input=RELATION_INPUT if relation else None)
