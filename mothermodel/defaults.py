"""Constants and small choices every stage shares, defined once.

Import-light on purpose: the registry, the labeling layer, the trainer and
spec files all import this module, so it must never import torch at load time.
"""

from __future__ import annotations

ABSTAIN = -1
"""A source's vote for "no opinion" in every label matrix and LF."""

DEFAULT_SEED = 123
"""The seed of every fit, tie-break and training run unless the user picks one."""

UI_HOST = "127.0.0.1"
"""`mothermodel ui` binds to loopback unless told otherwise (--host)."""

UI_PORT = 5000
"""`mothermodel ui`'s port unless told otherwise (--port): MLflow's own default."""


def resolve_device(device: str = "auto"):
    """'auto' | 'cpu' | 'cuda' | 'cuda:i' -> a torch.device ('auto' takes a GPU when there is one)."""
    import torch  # lazy: every layer and spec file imports this module; torch only for the caller that asks

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return torch.device(device)
