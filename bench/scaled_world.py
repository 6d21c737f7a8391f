"""The demo's synthetic world at SCALE times its rows, labelled as `mothermodel demo` labels it, no model yet.

    python bench/scaled_world.py WS [--scale 4]
    mothermodel -w WS train --max-length 48 --device cpu --lr 5e-5 --seed 123 --json

The demo world is small (640 and 960 train rows) so that the demo trains in minutes on a CPU; the
same world at four times the rows is the synthetic regime of realistic size the trainer's defaults are
also checked on (docs/trainer.md, "Alone vs joint").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mothermodel.demo import add_datasets, command, fit_labels, submit_tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ws", type=Path, help="a new workspace folder")
    ap.add_argument("--scale", type=int, default=4, help="rows = the demo's rows x this")
    args = ap.parse_args()
    if args.ws.exists():
        ap.error(f"{args.ws}: exists; give a new folder")
    ws = args.ws.resolve()
    ws.mkdir(parents=True)
    # The demo's own steps 1, 2, 3 and 5, at another size (each prints the CLI command it runs).
    command(ws, "init", str(ws))
    add_datasets(ws, scale=args.scale)
    submit_tasks(ws)
    command(ws, "label", "apply")
    fit_labels(ws)
    print(f"{ws}: the demo world x {args.scale}, labelled; no model yet")


if __name__ == "__main__":
    main()
