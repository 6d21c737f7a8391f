"""Labeling layer: labeling functions, appliers, label matrices, label models.

Kept import-light: importing this package must not pull in torch.
"""

from mothermodel.labeling.lf import (
    ABSTAIN,
    DeclarativeLF,
    KeywordLF,
    LabelingFunction,
    RegexLF,
    ThresholdLF,
    labeling_function,
)

__all__ = [
    "ABSTAIN", "DeclarativeLF", "KeywordLF", "LabelingFunction", "RegexLF", "ThresholdLF", "labeling_function",
]
