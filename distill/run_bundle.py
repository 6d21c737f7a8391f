#!/usr/bin/env python3
"""Run an exported mothermodel bundle with onnxruntime and tokenizers only.

A bundle (``mothermodel export TASK --format onnx --out DIR``) is a folder::

    model.onnx      input_ids, attention_mask (int64 [batch, length]) -> logits [batch, classes]
    tokenizer.json  Hugging Face tokenizers (truncation to the model's max length set inside)
    labels.json     class index -> class name
    manifest.json   task, fingerprint, model version, label versions, student, metrics, sha256 of each file

This file is standalone on purpose: copy it and mothermodel/inputs.py (the
input templates, standard library only) next to a bundle and run it anywhere
with ``pip install onnxruntime tokenizers numpy``. Outside the standard
library it imports only numpy, onnxruntime, tokenizers and that file.

    python run_bundle.py BUNDLE --text "check out my channel" --text "great song"
    python run_bundle.py BUNDLE --input texts.jsonl      # one {"text": ...} per line
    python run_bundle.py BUNDLE --input texts.txt        # one text per line
    python run_bundle.py BUNDLE --row '{"text": "...", "span1": [3, 8], "span2": [20, 25]}'

A task whose input is more than one text field (a text pair, marked entity
spans: the manifest's ``input``) takes raw rows: JSON objects with the fields
its input reads (``--row``, or ``--input`` of a .jsonl file); the bundle builds
the model input exactly as training did. Prints one JSON object per row:
``{"label": ..., "probs": {class: p}}``. Every file is checked against the
manifest's sha256 before anything is loaded; a modified file is refused (exit 2).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from tokenizers import Tokenizer



def _load_inputs():
    """mothermodel/inputs.py (the input templates), without importing the mothermodel package: the package's
    own when it is loaded already, else the file beside this one (a standalone copy), in the installed
    package's folder, or in a checkout's mothermodel/."""
    loaded = sys.modules.get("mothermodel.inputs")
    if loaded is not None:
        return loaded
    here = Path(__file__).resolve().parent
    for path in (here / "inputs.py", here.parent / "inputs.py", here.parent / "mothermodel" / "inputs.py"):
        if path.is_file():
            spec = importlib.util.spec_from_file_location("_mothermodel_bundle_inputs", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
            spec.loader.exec_module(module)
            return module
    raise ImportError(f"{here}: run_bundle.py needs mothermodel's inputs.py beside it")


_inputs_module = _load_inputs()
InputError, TaskInput = _inputs_module.InputError, _inputs_module.TaskInput

FORMAT = "mothermodel-bundle"
FILES = ("model.onnx", "tokenizer.json", "labels.json")


class BundleError(ValueError):
    """A bundle is incomplete, or a file differs from what its manifest records."""


def _sha256(path: Path) -> str:  # mothermodel.atomic.sha256_file's twin: this file imports nothing of mothermodel
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(folder: str | Path) -> dict:
    """The bundle's manifest, after checking every file it lists against its sha256."""
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise BundleError(f"{folder}: no manifest.json (not a mothermodel bundle, or an incomplete one)")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{mpath}: not a {FORMAT} manifest")
    for name in FILES:
        if name not in manifest["files"]:
            raise BundleError(f"{mpath}: lists no {name}")
    for name, entry in manifest["files"].items():
        # Plain file names only: a listed "../x" would make the check (and export's copy) leave the folder.
        if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise BundleError(f"{mpath}: lists {name!r}, not a plain file name")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{mpath}: the entry for {name} has no sha256")
        p = folder / name
        if not p.is_file():
            raise BundleError(f"{p}: missing (the manifest lists it)")
        got = _sha256(p)
        if got != entry["sha256"]:
            raise BundleError(f"{p}: sha256 {got[:12]}... differs from the manifest's {entry['sha256'][:12]}...: "
                              "the file was modified; refusing to load it (export the bundle again)")
    return manifest


class Bundle:
    """A verified bundle, ready to predict.

    Args:
        folder: the bundle folder.
        threads: onnxruntime intra-op threads (None: onnxruntime's default).
    """

    def __init__(self, folder: str | Path, threads: Optional[int] = None):
        import onnxruntime as ort  # lazy: heavy; bundle.verify imports this module on `mothermodel export`'s path

        self.folder = Path(folder)
        self.manifest = verify(self.folder)
        labels = json.loads((self.folder / "labels.json").read_text())
        self.classes = [labels[str(i)] for i in range(len(labels))]
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()  # we pad per batch ourselves, to the batch's longest text
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self.pad_id = int(self.manifest.get("pad_id", 0))
        # How a raw row becomes the model's input (a bundle from before templates read one text field).
        try:
            self.input = TaskInput.from_dict(self.manifest.get("input") or {"kind": "text", "fields": ["text"]})
        except InputError as e:
            raise BundleError(f"{self.folder / 'manifest.json'}: {e}") from None

    def render(self, rows: Sequence[dict]) -> list:
        """The model inputs of raw rows (mappings with the fields the bundle's input reads)."""
        try:
            return [self.input.render(r) for r in rows]
        except InputError as e:
            raise BundleError(str(e)) from None

    def encode(self, texts: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) int64, padded to the longest text of `texts` (a text pair is a tuple)."""
        enc = self.tokenizer.encode_batch([t if isinstance(t, (str, tuple)) else "" for t in texts])
        width = max((len(e.ids) for e in enc), default=1) or 1
        ids = np.full((len(enc), width), self.pad_id, np.int64)
        mask = np.zeros((len(enc), width), np.int64)
        for i, e in enumerate(enc):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        return ids, mask

    def logits(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        out = [self.session.run(["logits"], dict(zip(("input_ids", "attention_mask"), self.encode(texts[s:s + batch_size]))))[0]
               for s in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        z = self.logits(texts, batch_size)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence, batch_size: int = 256) -> list[str]:
        """Class names, one per model input (a text, or a (text, text_pair) tuple)."""
        return [self.classes[i] for i in self.logits(texts, batch_size).argmax(axis=1)]

    def predict_rows(self, rows: Sequence[dict], batch_size: int = 256) -> list[str]:
        """Class names, one per raw row (its input built by the bundle's template)."""
        return self.predict(self.render(rows), batch_size)


def _read_lines(path: str) -> Iterable:
    """A .jsonl file's objects, or a text file's lines."""
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if not path.endswith(".jsonl"):
                yield line.rstrip("\n")
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise BundleError(f"{path}: line {n}: not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise BundleError(f"{path}: line {n}: must be a JSON object with the input's fields")
            yield obj


def _inputs(bundle: Bundle, texts: Sequence[str], rows: Sequence) -> list:
    """Model inputs from --text values and raw rows (objects) or plain lines."""
    plain = list(texts) + [r for r in rows if isinstance(r, str)]
    objs = [r for r in rows if not isinstance(r, str)]
    if plain and bundle.input.kind != "text":
        raise BundleError(f"this bundle's input is the {bundle.input.describe()}: give rows with the fields "
                          f"{', '.join(bundle.input.columns)} (--row JSON, or --input FILE.jsonl), not plain texts")
    field = bundle.input.fields[0]
    return plain + bundle.render([r if bundle.input.kind != "text" or field in r else {field: r.get("text")}
                                  for r in objs])


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Run a mothermodel ONNX bundle on texts.")
    ap.add_argument("bundle")
    ap.add_argument("--text", action="append", default=[], help="A text to classify (repeatable).")
    ap.add_argument("--row", action="append", default=[],
                    help="A raw row as a JSON object with the fields the bundle's input reads (repeatable).")
    ap.add_argument("--input", help="A .jsonl file of rows ({\"text\": ...}, or the input's fields), "
                                    "or a text file of one text per line.")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        bundle = Bundle(args.bundle, threads=args.threads)
        rows = []
        for i, r in enumerate(args.row):
            try:
                rows.append(json.loads(r))
            except ValueError as e:
                raise BundleError(f"--row {i + 1}: not valid JSON ({e})") from None
            if not isinstance(rows[-1], dict):
                raise BundleError(f"--row {i + 1}: must be a JSON object with the input's fields")
        texts = _inputs(bundle, args.text, rows + (list(_read_lines(args.input)) if args.input else []))
    except (BundleError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    probs = bundle.predict_proba(texts)
    for p in probs:
        sys.stdout.write(json.dumps({"label": bundle.classes[int(p.argmax())],
                                     "probs": {c: round(float(x), 6) for c, x in zip(bundle.classes, p)}}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
