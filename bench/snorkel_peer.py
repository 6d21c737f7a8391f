"""Where the benchmarks find Snorkel 0.10, the peer they run beside ours: a separate interpreter.

Snorkel lives in its own virtual environment (DESIGN section 6:
`python3 -m venv /tmp/snorkelvenv && /tmp/snorkelvenv/bin/pip install torch==2.13.0 snorkel==0.10.0
transformers`), so that it never enters the project's own dependencies.
Standard library only: the benchmarks' children import this under that interpreter too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

DEFAULT_SNORKEL = "/tmp/snorkelvenv/bin/python"


def snorkel_interpreter(path: Optional[str], skip: bool = False) -> Optional[str]:
    """The Snorkel interpreter to run, or None (skipped on request, or not there: said on stderr)."""
    if skip or not path:
        return None
    if not Path(path).exists():
        print(f"snorkel python {path} not found: skipping Snorkel", file=sys.stderr)
        return None
    return path
