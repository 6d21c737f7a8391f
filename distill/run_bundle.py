#!/usr/bin/env python3
"""Run an exported mothermodel bundle with onnxruntime and tokenizers only.

A bundle (``mothermodel export TASK --format onnx --out DIR``) is a folder::

    model.onnx      input_ids, attention_mask (int64 [batch, length]) -> logits [batch, classes]
    tokenizer.json  Hugging Face tokenizers (truncation to the model's max length set inside)
    labels.json     class index -> class name
    manifest.json   task, fingerprint, model version, label versions, student, metrics, sha256 of each file

This file is standalone on purpose: copy it next to a bundle and run it
anywhere with ``pip install onnxruntime tokenizers numpy``. Outside the
standard library it imports only numpy, onnxruntime and tokenizers.

    python run_bundle.py BUNDLE --text "check out my channel" --text "great song"
    python run_bundle.py BUNDLE --input texts.jsonl      # one {"text": ...} per line
    python run_bundle.py BUNDLE --input texts.txt        # one text per line

prints one JSON object per text: ``{"label": ..., "probs": {class: p}}``.
Every file is checked against the manifest's sha256 before anything is
loaded; a modified file is refused (exit 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

FORMAT = "mothermodel-bundle"
FILES = ("model.onnx", "tokenizer.json", "labels.json")


class BundleError(ValueError):
    """A bundle is incomplete, or a file differs from what its manifest records."""


def _sha256(path: Path) -> str:  # registry.files.sha256_file's twin: this file imports nothing of mothermodel
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
        import onnxruntime as ort
        from tokenizers import Tokenizer

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

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) int64, padded to the longest text of `texts`."""
        enc = self.tokenizer.encode_batch([t if isinstance(t, str) else "" for t in texts])
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

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[str]:
        """Class names, one per text."""
        return [self.classes[i] for i in self.logits(texts, batch_size).argmax(axis=1)]


def _read_texts(path: str) -> Iterable[str]:
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            yield json.loads(line)["text"] if path.endswith(".jsonl") else line.rstrip("\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Run a mothermodel ONNX bundle on texts.")
    ap.add_argument("bundle")
    ap.add_argument("--text", action="append", default=[], help="A text to classify (repeatable).")
    ap.add_argument("--input", help="A .jsonl file of {\"text\": ...} objects, or a text file of one text per line.")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        bundle = Bundle(args.bundle, threads=args.threads)
    except BundleError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    texts = list(args.text) + (list(_read_texts(args.input)) if args.input else [])
    probs = bundle.predict_proba(texts)
    for p in probs:
        sys.stdout.write(json.dumps({"label": bundle.classes[int(p.argmax())],
                                     "probs": {c: round(float(x), 6) for c, x in zip(bundle.classes, p)}}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
