"""The registry: tasks, sources, datasets, their dependency DAG and every version.

`Registry` (in `mothermodel.registry.api`) is the Python API; the CLI's
registry commands are thin twins of its methods. Imports stay lazy so that
`from mothermodel import Task` in a spec file costs little.
"""

from typing import Any

__all__ = ["Registry", "Workspace"]


def __getattr__(name: str) -> Any:
    if name == "Registry":
        from mothermodel.registry.api import Registry

        return Registry
    if name == "Workspace":
        from mothermodel.registry.workspace import Workspace

        return Workspace
    raise AttributeError(name)
