"""The "Weaker Than You Think" anchor (Zhu et al., ACL 2023), issue 21: the default encoder fine-tuned on the
valid split's gold labels alone (no weak labels), scored on test. Any use of hand labels has to beat this.

    python bench/anchor.py [--datasets youtube trec chemprot] [--seeds 0 1 2]

Data: ../shared/data (WRENCH folders). The valid split's gold labels are the training set here (youtube 120
rows, trec 500, chemprot 300): the anchor uses dev labels by construction (`uses_dev_labels: true`); train gold
is never read. Model: the bundled all-MiniLM-L6-v2 (offline), mean pooling, one linear head, AdamW; a fixed
recipe (no selection on test, none on valid either: valid is the training set). Relation sets read the sentence
with the entity pair marked in plain-text markers, as our trainer does (registry/wrench.py RELATION_INPUT); the
anchor pools the whole sentence (our relation head reads the marked spans). Figures: test accuracy
per seed and their median, JSON in bench/results/anchor.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_split(folder: Path, split: str):
    rows = json.loads((folder / f"{split}.json").read_text())
    return [r["data"] for r in rows.values()], [int(r["label"]) for r in rows.values()]


def texts_of(data, relation: bool) -> list[str]:
    from mothermodel.inputs import as_text
    from mothermodel.registry.wrench import RELATION_INPUT

    if not relation:
        return [d["text"] for d in data]
    return [str(as_text(RELATION_INPUT.render(d))) for d in data]


def run_one(name: str, data_dir: Path, seed: int, epochs: int, lr: float, batch: int, max_length: int) -> dict:
    import numpy as np
    import torch

    from mothermodel.trainer.encoder import default_encoder_dir, load_encoder

    folder = data_dir / name
    classes = json.loads((folder / "label.json").read_text())
    k = len(classes)
    train_data, y_train = load_split(folder, "valid")
    test_data, y_test = load_split(folder, "test")
    relation = "span1" in train_data[0]
    x_train, x_test = texts_of(train_data, relation), texts_of(test_data, relation)

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder, tok = load_encoder(default_encoder_dir())
    head = torch.nn.Linear(encoder.config.hidden_size, k)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(x_train) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10))
                                              * max(0.0, (steps - s) / steps))

    def embed(texts):
        enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
        return (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    t0 = time.perf_counter()
    encoder.train()
    y = torch.tensor(y_train)
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            loss = torch.nn.functional.cross_entropy(head(embed([x_train[i] for i in idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.perf_counter() - t0
    encoder.eval()
    preds = []
    with torch.no_grad():
        for s in range(0, len(x_test), 64):
            preds += head(embed(x_test[s:s + 64])).argmax(1).tolist()
    acc = float(np.mean(np.array(preds) == np.array(y_test)))
    return {"seed": seed, "test_accuracy": round(acc, 4), "train_rows": len(x_train), "train_seconds": round(train_s, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["youtube", "trec", "chemprot"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "anchor.json")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data}: skipped", file=sys.stderr)
        return 0
    from mothermodel.trainer.encoder import offline_mode

    offline_mode()
    import torch

    results = {}
    for name in args.datasets:
        runs = [run_one(name, args.data, s, args.epochs, args.lr, args.batch, args.max_length) for s in args.seeds]
        med = statistics.median(r["test_accuracy"] for r in runs)
        results[name] = {"median_test_accuracy": med, "runs": runs, "uses_dev_labels": True,
                         "trained_on": "valid split gold labels only"}
        print(f"{name:<10} anchor (valid gold only, {runs[0]['train_rows']} rows): test accuracy median {med:.3f} "
              f"over seeds {args.seeds} ({', '.join(str(r['test_accuracy']) for r in runs)})", flush=True)
    out = {"command": "python bench/anchor.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "recipe": {"epochs": args.epochs, "lr": args.lr, "batch": args.batch, "max_length": args.max_length,
                      "encoder": "all-MiniLM-L6-v2 (bundled)", "pooling": "mean"},
           "datasets": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
