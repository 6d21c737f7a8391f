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
from pathlib import Path

from mothermodel.errors import UserError
from mothermodel.inputs import TaskInput
from mothermodel.registry.records import NAME_RE, SourceSpec, TaskSpec, is_name

SPLITS = ("train", "valid", "test")
RELATION_FIELDS = ("entity1", "entity2", "span1", "span2")
#: The input of a relation set: the sentence with markers around the two entity spans.
RELATION_INPUT = TaskInput.marked("text", ["span1", "span2"])


def read(folder: str | Path):
    """Read a WRENCH folder into (Arrow table, class names)."""
    import pyarrow as pa

    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"{d}: no such directory")
    label_file = d / "label.json"
    if not label_file.is_file():
        raise UserError(f"{label_file}: missing (a WRENCH folder needs label.json)")
    try:
        labels = json.loads(label_file.read_text())
        classes = [labels[k] for k in sorted(labels, key=int)]
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{label_file}: not a WRENCH label map ({e})") from None
    if [int(k) for k in sorted(labels, key=int)] != list(range(len(classes))):
        raise UserError(f"{label_file}: class indices must be 0..k-1")
    ids, splits, texts, gold, weak, extra = [], [], [], [], [], []
    m = None
    for split in SPLITS:
        f = d / f"{split}.json"
        if not f.is_file():
            raise UserError(f"{f}: missing (a WRENCH folder needs {', '.join(s + '.json' for s in SPLITS)})")
        try:
            data = json.loads(f.read_text())
        except ValueError as e:
            raise UserError(f"{f}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise UserError(f"{f}: must map id -> example")
        for key, ex in data.items():
            try:
                wl = [int(v) for v in ex["weak_labels"]]
                text = ex["data"]["text"]
                y = int(ex["label"])
            except (KeyError, TypeError, ValueError) as e:
                raise UserError(f"{f}: example {key!r}: missing or bad field {e}") from None
            if m is None:
                m = len(wl)
            elif len(wl) != m:
                raise UserError(f"{f}: example {key!r}: {len(wl)} weak labels, expected {m}")
            if y >= len(classes) or any(v >= len(classes) or v < -1 for v in wl):
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
