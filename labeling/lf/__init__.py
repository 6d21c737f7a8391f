"""Labeling functions: the `@labeling_function()` decorator, the declarative kinds (keyword, regex, threshold)
and LFs rebuilt from their stored source (core.py); slicing functions (slicing.py). Spec files import these names from here."""

from mothermodel.labeling.lf.core import (
    ABSTAIN,
    DeclarativeLF,
    KeywordLF,
    LabelingFunction,
    RegexLF,
    ThresholdLF,
    labeling_function,
    lfs_from_source,
    re2_compatible,
)
from mothermodel.labeling.lf.slicing import IN_SLICE, SlicingFunction, slicing_function

__all__ = [
    "ABSTAIN", "DeclarativeLF", "KeywordLF", "LabelingFunction", "RegexLF", "ThresholdLF", "labeling_function",
    "lfs_from_source", "re2_compatible", "IN_SLICE", "SlicingFunction", "slicing_function",
]
