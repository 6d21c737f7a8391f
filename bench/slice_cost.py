"""Slice membership against LFs: what 20 slicing functions cost over 200k rows next to 20 LFs (issue 22).

    python bench/slice_cost.py [--rows 200000] [--repeats 5] [--ws /tmp/mm-bench-slice-cost]

One workspace, one dataset of --rows seeded synthetic texts (bench/apply.py's generator), two tasks on it:
- `with_lfs`: 20 Python LFs, each `1 if <predicate> else ABSTAIN`, and one keyword LF;
- `with_slices`: the same 20 predicates as `@slicing_function()`s (`return <predicate>`), and the same keyword LF
  (a task needs a voter), so the two differ only in the 20 functions being LFs or slices.
Each is applied `--repeats` times with `label apply TASK --force` (the whole command: reading the dataset,
the appliers, writing the label matrix or the membership file, recording the version), timed from outside.
Target: the slices' median no more than the LFs' (ratio <= 1.0; the machines are noisy, so the ratio of
medians is what counts). JSON in bench/results/slice_cost.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from apply import make_texts  # noqa: E402
from guard import CLI, cli  # noqa: E402

# (name, predicate over a row x): keyword checks, regexes and lengths, as bench/apply.py's Python LFs
PREDICATES = [
    ("free", '"free" in x.text.lower()'), ("winner", '"winner" in x.text.lower()'),
    ("offer", '"limited offer" in x.text.lower()'), ("unsub", '"unsubscribe" in x.text.lower()'),
    ("thanks", '"thanks" in x.text.lower() or "thank you" in x.text.lower()'),
    ("meeting", '"meeting" in x.text.lower()'), ("invoice", '"invoice" in x.text.lower()'),
    ("cheap", '"cheap" in x.text.lower() or "discount" in x.text.lower()'),
    ("url", "URL.search(x.text) is not None"), ("email", "EMAIL.search(x.text) is not None"),
    ("money", "MONEY.search(x.text) is not None"), ("phone", "PHONE.search(x.text) is not None"),
    ("caps", "CAPS.search(x.text) is not None"), ("bang", "BANG.search(x.text) is not None"),
    ("click", "CLICK.search(x.text) is not None"), ("very_short", "len(x.text) < 30"),
    ("very_long", "len(x.text) > 400"), ("few_words", "len(x.text.split()) < 6"),
    ("many_words", "len(x.text.split()) > 60"), ("digits", 'sum(ch.isdigit() for ch in x.text) > 5'),
]
HEADER = '''import re
from mothermodel import ABSTAIN, KeywordLF, Task, labeling_function, slicing_function

URL = re.compile(r"https?://")
EMAIL = re.compile(r"[\\w.]+@[\\w.]+")
MONEY = re.compile(r"[$€£]\\s?\\d")
PHONE = re.compile(r"\\d{3}[- ]\\d{4}")
CAPS = re.compile(r"\\b[A-Z]{4,}\\b")
BANG = re.compile(r"!{2,}")
CLICK = re.compile(r"click (here|now)")
'''


def spec(kind: str) -> str:
    body = [HEADER]
    if kind == "lfs":
        body.append('task = Task(name="with_lfs", dataset="texts", classes=["HAM", "SPAM"])\n'
                    'spam_word = KeywordLF("spam_word", ["spam"], label=1)\n')
        for name, pred in PREDICATES:
            body.append(f"\n@labeling_function()\ndef lf_{name}(x):\n    return 1 if {pred} else ABSTAIN\n")
    else:
        body.append('task = Task(name="with_slices", dataset="texts", classes=["HAM", "SPAM"])\n'
                    'spam_word = KeywordLF("spam_word", ["spam"], label=1)\n')
        for name, pred in PREDICATES:
            body.append(f"\n@slicing_function()\ndef sl_{name}(x):\n    return {pred}\n")
    return "".join(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ws", type=Path, default=Path("/tmp/mm-bench-slice-cost"))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "slice_cost.json")
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(args.ws, ignore_errors=True)
    subprocess.run([*CLI, "init", str(args.ws)], check=True, capture_output=True)
    texts = make_texts(args.rows)
    pq.write_table(pa.table({"text": texts, "split": ["train"] * len(texts)}), args.ws / "texts.parquet")
    cli(args.ws, "dataset", "add", "texts", str(args.ws / "texts.parquet"))
    for kind in ("lfs", "slices"):
        (args.ws / f"{kind}.py").write_text(spec(kind))
        cli(args.ws, "task", "submit", str(args.ws / f"{kind}.py"))
    times: dict[str, list[float]] = {"with_lfs": [], "with_slices": []}
    sizes = {}
    for _ in range(args.repeats):
        for task in times:  # interleaved: a noisy minute hits both
            t0 = time.perf_counter()
            res = cli(args.ws, "label", "apply", task, "--force")
            times[task].append(round(time.perf_counter() - t0, 2))
            out = res["tasks"][0]
            sizes[task] = out["slices"]["sizes"] if task == "with_slices" else out["entries"]
    med = {t: statistics.median(v) for t, v in times.items()}
    ratio = med["with_slices"] / med["with_lfs"]
    res = {"rows": args.rows, "functions": len(PREDICATES), "repeats": args.repeats, "seconds": times,
           "median_s": med, "slices_over_lfs": round(ratio, 3), "target": "<= 1.0", "met": ratio <= 1.0,
           "lf_entries": sizes["with_lfs"], "slice_members": sizes["with_slices"],
           "conditions": "label apply TASK --force, the whole command, 2 cores, default worker pool"}
    print(f"20 LFs: median {med['with_lfs']:.1f} s; 20 slices: median {med['with_slices']:.1f} s; "
          f"slices / LFs {ratio:.2f} (target <= 1.0)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
