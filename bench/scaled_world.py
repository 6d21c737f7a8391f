"""The demo's synthetic world at SCALE times its rows, labelled as `mothermodel demo` labels it, no model yet.

    python bench/scaled_world.py WS [--scale 4]
    mothermodel -w WS train --max-length 48 --device cpu --lr 5e-5 --seed 123 --json

The demo world is small (640 and 960 train rows) so that the demo trains in minutes on a CPU; the
same world at four times the rows is the synthetic regime of realistic size the trainer's defaults are
also checked on (docs/trainer.md, "Alone vs joint").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pyarrow.parquet as pq

from mothermodel.demo import TASKS, TREE, world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ws", type=Path, help="a new workspace folder")
    ap.add_argument("--scale", type=int, default=4, help="rows = the demo's rows x this")
    args = ap.parse_args()
    if args.ws.exists():
        ap.error(f"{args.ws}: exists; give a new folder")
    mm = str(Path(sys.executable).parent / "mothermodel")

    def cli(*a: str) -> None:
        subprocess.run([mm, "-w", str(args.ws), *a], check=True, capture_output=True)

    args.ws.mkdir(parents=True)
    cli("init", str(args.ws))
    (args.ws / "data").mkdir()
    (args.ws / "tasks").mkdir()
    for name, table in (("tickets", world.tickets(n=1200 * args.scale)), ("reviews", world.reviews(n=800 * args.scale))):
        pq.write_table(table, args.ws / "data" / f"{name}.parquet")
        cli("dataset", "add", name, str(args.ws / "data" / f"{name}.parquet"))
    for name in TASKS:
        (args.ws / "tasks" / name).write_text((resources.files("mothermodel.demo") / "tasks" / name).read_text())
        cli("task", "submit", str(args.ws / "tasks" / name))
    # As the demo: one hierarchical label model for the ticket tree, the others on their own.
    cli("label", "apply")
    cli("label", "fit", "ticket_topic")
    cli("label", "fit", TREE[-1], "--model", "hierarchical")
    for task in ("urgency", "sentiment", "review_aspect"):
        cli("label", "fit", task)
    print(f"{args.ws}: the demo world x {args.scale}, labelled; no model yet")


if __name__ == "__main__":
    main()
