"""mothermodel: one central multi-task mother model for an organisation's weakly supervised tasks.

The public API for task specs and scripts. Importing this package is cheap:
no torch, transformers or DuckDB until a function needs them.
"""

from typing import Any

from mothermodel.errors import UserError
from mothermodel.inputs import TaskInput
from mothermodel.labeling.lf.core import ABSTAIN, KeywordLF, LabelingFunction, RegexLF, ThresholdLF, labeling_function
from mothermodel.labeling.lf.slicing import SlicingFunction, slicing_function
from mothermodel.spec import Column, Embedding, Model, Prompt, Task, TaskOutput

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN", "Column", "Embedding", "KeywordLF", "LabelingFunction", "RegexLF", "ThresholdLF", "Model", "Prompt",
    "Registry", "SlicingFunction", "Task", "TaskInput", "TaskOutput", "UserError", "Workspace", "labeling_function",
    "slicing_function", "__version__",
]


def __getattr__(name: str) -> Any:
    # Registry and Workspace load DuckDB: only on first use, so spec files import fast.
    if name == "Registry":
        from mothermodel.api import Registry  # lazy: DuckDB kept off `import mothermodel`

        return Registry
    if name == "Workspace":
        from mothermodel.registry.workspace import Workspace  # lazy: DuckDB kept off `import mothermodel`

        return Workspace
    raise AttributeError(name)
