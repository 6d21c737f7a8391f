"""Benchmark: the mother model's trainer against Snorkel's and a classic loop; quality, yardstick, retraining.

    python bench/train.py [--parts speed,quality,yardstick,incremental,alone] [--device auto]
                          [--snorkel-python /tmp/snorkelvenv/bin/python] [--ws-root /tmp/mm-bench-train]
                          [--ws FITTED_WS] [--out bench/results/trainer.json]

Data: WRENCH youtube (task `spam`) and trec (task `trec`) from ../shared/data,
imported and label-fitted with the CLI into a fresh workspace. Training reads the
label fit's probabilistic labels of the train split only; gold labels are read
for valid/test figures only.

Parts (each prints a line and lands in the JSON):

* speed: examples/s of three training loops on the same encoder (the default
  MiniLM) and the same rows, each in a fresh child process (peak RSS too):
  - Snorkel 0.10's MultitaskClassifier + Trainer (its own venv, `--snorkel-python`:
    `pip install torch==2.13.0 snorkel==0.10.0 transformers`), hard labels, one
    task per batch (its shuffled batch scheduler), Adam;
  - a classic loop: fp32, one task per batch, every sequence padded to 128, AdamW;
  - ours: `mothermodel.trainer.loop.train` with the default TrainConfig.
  Two workloads: `fixed` (every sequence exactly 128 tokens: the loop itself)
  and `real` (youtube + trec's own texts, cut at 128; ours buckets by length
  and pads each batch to its longest; Snorkel gets the tokenizer's usual
  `padding=True` over each task's rows; the classic loop pads to 128).
  Each loop runs `--warmup` steps, then `--steps` timed steps of 32.
* quality: `mothermodel train --device cpu --json` from the CLI in the fresh
  workspace (the default configuration): wall time, test accuracy per task next
  to its `label fit` figure.
* yardstick: the plain fine-tune of the issue (mean pooling, one linear head a
  task, soft cross-entropy scaled by 1/log C, mixed batches of 32, max length 64,
  AdamW 1e-4 with 10% warm-up and linear decay, 2 epochs) on the same labels.
* incremental: after `quality`, a third task (`spam_links`, keyword LFs on the
  youtube rows) is submitted and fitted, and `train --if-changed` runs: its wall
  time against the full run's, and the two old tasks' test accuracy before/after.
* alone: each task trained alone with the same configuration, against the joint model.

Figures are one run each (the machine is noisy: compare ratios within a run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see trainer/__init__.py)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
from snorkel_peer import DEFAULT_SNORKEL  # noqa: E402 (bench/ is sys.path[0])
DEFAULT_DATA = REPO.parent / "shared" / "data"
WRENCH = {"spam": "youtube", "trec": "trec"}
LINKS_SPEC = '''
from mothermodel import KeywordLF, Task

task = Task(name="spam_links", dataset="spam", classes=["HAM", "SPAM"])  # youtube's rows (imported as `spam`)
links = KeywordLF("links", ["http", "www", ".com", "channel", "subscribe", "check out"], label=1)
money = KeywordLF("money", ["money", "free", "win", "cash"], label=1)
music = KeywordLF("music", ["song", "love this", "voice", "best", "beautiful"], label=0)
'''


# --------------------------------------------------------------------------- #
# The CLI side: a fresh workspace, label fits, train runs
# --------------------------------------------------------------------------- #


def mm_exe() -> list[str]:
    exe = Path(sys.executable).parent / "mothermodel"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mothermodel.cli"]


def cli(ws: Path, *args: str) -> tuple[str, float]:
    """Run `mothermodel -w WS ARGS`; (stdout, wall seconds)."""
    cmd = mm_exe() + ["-w", str(ws), *map(str, args)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-1500:]}")
    return p.stdout, time.perf_counter() - t0


def fitted_workspace(root: Path, data: Path, tasks=("spam", "trec")) -> tuple[Path, dict]:
    """A fresh workspace with the tasks imported and label-fitted; the label fits' metrics."""
    import shutil

    ws = root / ("ws-" + "-".join(tasks))
    shutil.rmtree(ws, ignore_errors=True)
    subprocess.run(mm_exe() + ["init", str(ws)], check=True, capture_output=True)
    fits = {}
    for t in tasks:
        cli(ws, "import", "wrench", data / WRENCH[t], "--task", t)
        fits[t] = json.loads(cli(ws, "label", "fit", t, "--json")[0])["metrics"]
    return ws, fits


def test_acc(metrics: dict, task: str) -> float:
    return next(v for k, v in metrics.items() if k.startswith(f"{task}/") and k.endswith("/test/accuracy")
                and "label_model" not in k)


def part_quality(root: Path, data: Path, device: str) -> dict:
    ws, fits = fitted_workspace(root, data)
    out, wall = cli(ws, "train", "--device", device, "--json")
    res = json.loads(out)
    fig = {"command": f"mothermodel train --device {device} --json", "wall_s": round(wall, 1),
           "train_s": res["seconds"], "steps": res["steps"], "examples_per_s": res["examples_per_s"], "tasks": {}}
    for t in ("spam", "trec"):
        fig["tasks"][t] = {"label_fit_test": fits[t]["test"]["accuracy"], "mother_model_test": test_acc(res["metrics"], t),
                           "mother_model_valid": res["metrics"][f"{t}/{t}/valid/accuracy"]}
    print(f"quality: {json.dumps(fig['tasks'])}, wall {wall:.0f}s", file=sys.stderr)
    fig["workspace"] = str(ws)
    return fig


def part_incremental(quality: dict, device: str) -> dict:
    ws = Path(quality["workspace"])
    (ws / "spam_links.py").write_text(LINKS_SPEC)
    cli(ws, "task", "submit", ws / "spam_links.py")
    cli(ws, "label", "fit", "spam_links")
    out, wall = cli(ws, "train", "--if-changed", "--device", device, "--json")
    res = json.loads(out)
    fig = {"command": "mothermodel train --if-changed (after `task submit spam_links.py` and `label fit spam_links`)",
           "wall_s": round(wall, 1), "full_wall_s": quality["wall_s"], "ratio": round(wall / quality["wall_s"], 3),
           "train_s": res["seconds"], "steps": res["steps"], "focus": res["focus"], "warm_start": res["warm_start"],
           "old_tasks_test": {t: {"before": quality["tasks"][t]["mother_model_test"], "after": test_acc(res["metrics"], t)}
                              for t in ("spam", "trec")},
           "new_task_test": test_acc(res["metrics"], "spam_links")}
    print(f"incremental: {wall:.0f}s = {fig['ratio']:.2f} of the full run; old tasks {fig['old_tasks_test']}",
          file=sys.stderr)
    return fig


def part_alone(root: Path, data: Path, device: str, quality: dict) -> dict:
    out = {}
    for t in ("spam", "trec"):
        ws, _ = fitted_workspace(root, data, tasks=(t,))
        res = json.loads(cli(ws, "train", "--device", device, "--json")[0])
        out[t] = {"alone_test": test_acc(res["metrics"], t), "joint_test": quality["tasks"][t]["mother_model_test"],
                  "alone_steps": res["steps"]}
    print(f"alone vs joint: {out}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- #
# Child processes: one training loop each (torch imported there only)
# --------------------------------------------------------------------------- #


def child_snorkel(spec: dict) -> dict:
    """Snorkel 0.10's MultitaskClassifier + Trainer; imports torch, transformers and snorkel only."""
    import torch
    import torch.nn.functional as F
    from snorkel.classification import DictDataLoader, DictDataset, MultitaskClassifier, Operation, Task, Trainer
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(spec["encoder"])
    enc = Encoder(AutoModel.from_pretrained(spec["encoder"]))
    dim = enc.model.config.hidden_size
    tasks, loaders = [], {}
    for t in spec["tasks"]:
        head = torch.nn.Linear(dim, len(t["classes"]))
        tasks.append(Task(name=t["name"], module_pool=torch.nn.ModuleDict({"encoder": enc, f"{t['name']}_head": head}),
                          op_sequence=[Operation(name="enc", module_name="encoder",
                                                 inputs=[("_input_", "input_ids"), ("_input_", "attention_mask")]),
                                       Operation(name=f"{t['name']}_head", module_name=f"{t['name']}_head",
                                                 inputs=["enc"])],
                          loss_func=F.cross_entropy))
    model = MultitaskClassifier(tasks, device=0 if spec["device"] == "cuda" else -1)

    def loaders_for(n_steps: int) -> list:
        out = []
        share = _shares([len(t["texts"]) for t in spec["tasks"]], n_steps)
        for t, k in zip(spec["tasks"], share):
            texts, labels = _take(t["texts"], k * 32), _take(t["hard"], k * 32)
            # the tokenizer's usual call: pad to the longest row of the list (fixed: all are 128)
            enc_in = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            ds = DictDataset(t["name"], "train", {"input_ids": enc_in["input_ids"],
                                                  "attention_mask": enc_in["attention_mask"]},
                             {t["name"]: torch.as_tensor(labels, dtype=torch.long)})
            out.append(DictDataLoader(ds, batch_size=32, shuffle=True))
        return out

    kw = dict(n_epochs=1, lr=1e-4, optimizer="adam", progress_bar=False, checkpointing=False, logging=False)
    Trainer(**kw).fit(model, loaders_for(spec["warmup"]))
    dls = loaders_for(spec["steps"])
    n = sum(len(d.dataset) for d in dls)
    t0 = time.perf_counter()
    Trainer(**kw).fit(model, dls)
    return {"examples_per_s": n / (time.perf_counter() - t0), "examples": n}


def _encoder_class():
    import torch

    class Encoder(torch.nn.Module):
        """A Hugging Face encoder, mean-pooled: (ids, mask) -> (B, H)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1)

    return Encoder


def Encoder(model):  # noqa: N802 - a class made on first use, so that this file imports no torch at top level
    return _encoder_class()(model)


def _shares(sizes: list[int], steps: int) -> list[int]:
    """Steps per task in proportion to size (at least one each)."""
    tot = sum(sizes)
    out = [max(1, round(steps * s / tot)) for s in sizes]
    out[-1] = max(1, steps - sum(out[:-1]))
    return out


def _take(xs: list, k: int) -> list:
    return [xs[i % len(xs)] for i in range(k)]


def child_classic(spec: dict) -> dict:
    """The classic loop: fp32, one task per batch, every sequence padded to 128, plain AdamW."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    dev = torch.device(spec["device"])
    tok = AutoTokenizer.from_pretrained(spec["encoder"])
    enc = Encoder(AutoModel.from_pretrained(spec["encoder"])).to(dev)
    heads = torch.nn.ModuleList([torch.nn.Linear(enc.model.config.hidden_size, len(t["classes"])) for t in spec["tasks"]]).to(dev)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(heads.parameters()), lr=1e-4)
    data = []
    for t in spec["tasks"]:
        e = tok(t["texts"], padding="max_length", truncation=True, max_length=128, return_tensors="pt")
        data.append((e["input_ids"], e["attention_mask"], torch.as_tensor(t["hard"])))

    def run(n_steps: int) -> int:
        seen = 0
        order = [i for i, k in enumerate(_shares([len(t["texts"]) for t in spec["tasks"]], n_steps)) for _ in range(k)]
        for step, ti in enumerate(order):
            ids, mask, y = data[ti]
            idx = torch.randint(0, len(y), (32,))
            logits = heads[ti](enc(ids[idx].to(dev), mask[idx].to(dev)))
            loss = torch.nn.functional.cross_entropy(logits, y[idx].to(dev))
            loss.backward()
            opt.step()
            opt.zero_grad()
            seen += 32
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return seen

    run(spec["warmup"])
    t0 = time.perf_counter()
    n = run(spec["steps"])
    return {"examples_per_s": n / (time.perf_counter() - t0), "examples": n}


def child_ours(spec: dict) -> dict:
    """mothermodel.trainer.loop.train, default TrainConfig (bf16 where native, frozen word embeddings, bucketing)."""
    import numpy as np

    from mothermodel.trainer.config import TrainConfig
    from mothermodel.trainer.data import TaskData
    from mothermodel.trainer.loop import train
    from mothermodel.trainer.model import build_model, head_specs

    tasks = []
    for t in spec["tasks"]:
        n = len(t["texts"])
        probs = np.asarray(t["soft"], np.float32)
        tasks.append(TaskData(name=t["name"], classes=t["classes"], texts=t["texts"], split=np.array(["train"] * n, object),
                              probs=probs, covered=np.ones(n, bool), dataset=t["name"]))
    cfg = TrainConfig(device=spec["device"], self_train_rounds=0, log_every=10_000, **spec.get("config", {}))
    model, tok = build_model(head_specs(tasks), cfg)
    warm = train(model, tok, tasks, cfg.replace(max_steps=spec["warmup"]), progress=False)
    res = train(model, tok, tasks, cfg.replace(max_steps=spec["steps"], warmup_fraction=0.0), progress=False,
                tokens=warm.tokens)
    out = {"examples_per_s": res.examples_per_s, "examples": res.examples, "bf16": _bf16(cfg)}
    if spec["device"] == "cuda":
        out.update(_mfu(model, res, tasks, tok, cfg))
    return out


def _bf16(cfg) -> bool:
    from mothermodel.defaults import resolve_device
    from mothermodel.trainer.config import native_bf16

    return native_bf16(resolve_device(cfg.device)) if cfg.bf16 is None else bool(cfg.bf16)


def _mfu(model, res, tasks, tok, cfg) -> dict:
    """Model FLOP utilisation: 6 x encoder parameters x tokens per second over the GPU's dense bf16 peak."""
    import torch

    params = sum(p.numel() for p in model.encoder.parameters())
    lengths = [len(x) for x in tok([t for td in tasks for t in td.texts[:2000]], truncation=True,
                                   max_length=cfg.max_length)["input_ids"]]
    tokens_per_s = res.examples_per_s * (sum(lengths) / len(lengths))
    name = torch.cuda.get_device_name()
    peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12}.get(next((k for k in ("H100", "H200", "A100") if k in name), ""), None)
    flops = 6 * params * tokens_per_s
    return {"gpu": name, "model_tflops": round(flops / 1e12, 2), "mfu": round(flops / peak, 4) if peak else None}


def run_child(kind: str, spec: dict, python: str) -> dict:
    """A loop in a fresh process; its figures plus peak RSS."""
    p = subprocess.run([python, str(HERE), "--child", kind], input=json.dumps(spec), capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def speed_spec(ws: Path, device: str, fixed: bool, steps: int, warmup: int) -> dict:
    """The children's input: each task's train texts, the label fit's soft labels and their argmax."""
    import numpy as np

    from mothermodel.registry.store import RegistryStore
    from mothermodel.registry.workspace import Workspace
    from mothermodel.trainer.encoder import default_encoder_dir

    store = RegistryStore(Workspace.find(ws))
    tasks = []
    for name in ("spam", "trec"):
        rec = store.latest_prob_labels(name)
        pl = store.read_prob_labels(rec, with_text=True)
        keep = np.flatnonzero((pl.split == "train") & pl.covered)
        texts = [pl.texts[i] or "" for i in keep]
        if fixed:  # every sequence past 128 tokens, so each one is cut at exactly 128
            texts = [(t + " ") * (1 + 600 // max(len(t), 1)) for t in texts]
        soft = pl.probs[keep]
        tasks.append({"name": name, "classes": list(store.task(name).classes), "texts": texts,
                      "soft": soft.tolist(), "hard": soft.argmax(1).tolist()})
    return {"encoder": str(default_encoder_dir()), "device": device, "steps": steps, "warmup": warmup, "tasks": tasks}


def part_speed(ws: Path, device: str, snorkel_python: str, steps: int, warmup: int) -> dict:
    out = {}
    for workload in ("fixed", "real"):
        spec = speed_spec(ws, device, workload == "fixed", steps, warmup)
        row = {}
        for kind, py in (("snorkel", snorkel_python), ("classic", sys.executable), ("ours", sys.executable)):
            if kind == "snorkel" and not Path(py).exists():
                row[kind] = {"error": f"no Snorkel interpreter at {py} (see this file's docstring)"}
                continue
            row[kind] = run_child(kind, spec, py)
            print(f"speed {workload} {kind}: {row[kind]}", file=sys.stderr)
        o = row["ours"].get("examples_per_s")
        for kind in ("snorkel", "classic"):
            e = row[kind].get("examples_per_s")
            row[f"ours_vs_{kind}"] = round(o / e, 2) if o and e else None
        out[workload] = row
    return out


# --------------------------------------------------------------------------- #
# The yardstick: the plain fine-tune of the issue
# --------------------------------------------------------------------------- #


def part_yardstick(ws: Path, device: str) -> dict:
    """Mean pooling, a linear head a task, soft CE / log C, mixed batches of 32, max length 64,
    AdamW 1e-4, 10% warm-up then linear decay, 2 epochs; test accuracy per task."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mothermodel.defaults import resolve_device
    from mothermodel.registry.store import RegistryStore
    from mothermodel.registry.workspace import Workspace
    from mothermodel.trainer.encoder import default_encoder_dir

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dev = resolve_device(device)
    store = RegistryStore(Workspace.find(ws))
    tok = AutoTokenizer.from_pretrained(default_encoder_dir())
    enc = Encoder(AutoModel.from_pretrained(default_encoder_dir())).to(dev)
    data = []
    for name in ("spam", "trec"):
        pl = store.read_prob_labels(store.latest_prob_labels(name), with_text=True)
        e = tok([x or "" for x in pl.texts], padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        data.append((name, e["input_ids"], e["attention_mask"], torch.as_tensor(pl.probs), pl.split, pl.gold, pl.covered))
    heads = torch.nn.ModuleList([torch.nn.Linear(enc.model.config.hidden_size, d[3].shape[1]) for d in data]).to(dev)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(heads.parameters()), lr=1e-4)
    units = [(ti, int(r)) for ti, d in enumerate(data) for r in np.flatnonzero((d[4] == "train") & d[6])]
    total = math.ceil(2 * len(units) / 32)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / (0.1 * total), max(0.0, (total - s) / (0.9 * total))))
    t0 = time.perf_counter()
    order = np.concatenate([rng.permutation(len(units)) for _ in range(2)])
    enc.train()
    for s in range(total):
        batch = [units[i] for i in order[s * 32:(s + 1) * 32]]
        loss = 0.0
        for ti in {b[0] for b in batch}:
            rows = torch.as_tensor([r for t, r in batch if t == ti])
            _, ids, mask, probs = data[ti][:4]
            logp = torch.log_softmax(heads[ti](enc(ids[rows].to(dev), mask[rows].to(dev))), -1)
            ce = -(probs[rows].to(dev) * logp).sum(-1).sum() / len(batch)
            loss = loss + ce / math.log(probs.shape[1])
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    seconds = time.perf_counter() - t0
    enc.eval()
    out = {"train_s": round(seconds, 1), "steps": total}
    with torch.no_grad():
        for ti, (name, ids, mask, _, split, gold, _) in enumerate(data):
            rows = np.flatnonzero(split == "test")
            pred = np.concatenate([heads[ti](enc(ids[rows[i:i + 256]].to(dev), mask[rows[i:i + 256]].to(dev))).argmax(-1).cpu().numpy()
                                   for i in range(0, len(rows), 256)])
            out[name] = {"test": round(float((pred == gold[rows]).mean()), 4)}
    print(f"yardstick: {out}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- #


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="speed,quality,yardstick,incremental,alone")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--snorkel-python", default=DEFAULT_SNORKEL)
    ap.add_argument("--ws-root", type=Path, default=Path("/tmp/mm-bench-train"))
    ap.add_argument("--ws", type=Path, default=None,
                    help="a workspace with spam and trec label-fitted, for speed/yardstick alone (default: a fresh one)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of each loop in `speed`")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "trainer.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(sys.stdin.read())
        fn = {"snorkel": child_snorkel, "classic": child_classic, "ours": child_ours}[args.child]
        res = fn(spec)
        res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(res))
        return
    if not (args.data / "youtube").is_dir() or not (args.data / "trec").is_dir():
        raise SystemExit(f"{args.data}: WRENCH youtube and trec not found (see ../shared/data/README)")
    from mothermodel.defaults import resolve_device

    device = resolve_device(args.device).type
    parts = args.parts.split(",")
    args.ws_root.mkdir(parents=True, exist_ok=True)
    res: dict = {"command": "python bench/train.py " + " ".join(sys.argv[1:]), "device": device,
                 "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "date": time.strftime("%Y-%m-%d")}
    prev = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "quality" in parts:
        res["quality"] = part_quality(args.ws_root, args.data, device)
        ws = Path(res["quality"]["workspace"])
    elif "incremental" in parts or "alone" in parts:
        if "quality" not in prev or not Path(prev["quality"]["workspace"]).is_dir():
            raise SystemExit("--parts incremental/alone need a `quality` run first (in this run or in --out)")
        ws = Path(prev["quality"]["workspace"])
    elif args.ws is not None:
        ws = args.ws
    else:
        ws, _ = fitted_workspace(args.ws_root, args.data)
    if "incremental" in parts:
        res["incremental"] = part_incremental(res.get("quality") or prev["quality"], device)
    if "yardstick" in parts:
        res["yardstick"] = part_yardstick(ws, device)
    if "speed" in parts:
        res["speed"] = part_speed(ws, device, args.snorkel_python, args.steps, args.warmup)
    if "alone" in parts:
        res["alone"] = part_alone(args.ws_root, args.data, device, res.get("quality") or prev["quality"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():  # parts run at another time keep their figures (each part says its command and date)
        old = json.loads(args.out.read_text())
        for k in ("quality", "incremental", "yardstick", "speed", "alone"):
            if k in res:
                res[k] = {**res[k], "command": res["command"], "date": res["date"]}
        res = {**old, **res}
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
