"""Labeling layer: labeling functions, appliers, label matrices, label models.

Kept import-light: importing this package must not pull in torch.
"""

from mothermodel.labeling.lf import ABSTAIN, LabelingFunction, labeling_function

__all__ = ["ABSTAIN", "LabelingFunction", "labeling_function"]
