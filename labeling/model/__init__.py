"""Label models: votes in, probabilistic labels out.

| module | what it is |
|---|---|
| `base` | the label-matrix input, option types (`AbstainEvidence`), settings checks, the `Labeler` protocol |
| `baselines` | `MajorityVoter` |
| `label_model` | `LabelModel` / `LabelModelConfig`: the learned model (EM, torch) |
| `design` | its streaming design: distinct vote patterns, voters, block-wise scores |
| `dev_correction` | its opt-in correction on labeled dev rows (`dev_mode='correct'`) |
| `dependencies` | near-duplicate LF groups (numpy) |
| `hierarchy` | `HierarchicalLabelModel`: one model over a task tree (torch) |
| `textview` | the text view: a feature-based second opinion on each row (numpy) |
| `selection` | `--select-on valid`: choose the labels' model on valid's gold labels |
| `votes` | vote counts, seeded tie-breaks, distinct rows (numpy) |

Nothing is re-exported here: `label apply` and `label analyze` import `votes`, `base` and `dependencies` and must
not pull in torch, which `label_model` and `hierarchy` import. Import each name from its module.
"""
