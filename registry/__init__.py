"""The registry: tasks, sources, datasets, their dependency DAG and every version.

`RegistryStore` (registry/store.py) owns every SQL statement on the registry's
tables and hands out typed records (registry/records.py); the stages above it
(labeling, trainer, distill) read and record through it. This package imports
none of them. The user-facing `Registry` (mothermodel/api.py) wraps it.
"""

from typing import Any

__all__ = ["RegistryStore", "Workspace"]


def __getattr__(name: str) -> Any:
    # Lazy: `from mothermodel import Task` in a spec file must not load DuckDB.
    if name == "RegistryStore":
        from mothermodel.registry.store import RegistryStore  # lazy: keeps DuckDB off `import mothermodel`

        return RegistryStore
    if name == "Workspace":
        from mothermodel.registry.workspace import Workspace  # lazy: keeps DuckDB off `import mothermodel`

        return Workspace
    raise AttributeError(name)
