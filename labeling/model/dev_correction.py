"""The dev-gold correction of the learned label model (``LabelModelConfig.dev_mode='correct'``): a multinomial
logistic regression on labeled dev rows, centred on the EM solution, its L2 strength chosen by stratified
cross-validation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Optional, Tuple

import numpy as np
import torch

from mothermodel.labeling.model.votes import tie_break

if TYPE_CHECKING:
    from mothermodel.labeling.model.label_model import LabelModelConfig


def fit_correction(Xd: torch.Tensor, yd: torch.Tensor, vc: torch.Tensor, base: torch.Tensor,
                    k: int, lam: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on the dev rows, centred on the EM model.

    Scores: ``base + db + Xd @ (C * dw)`` (``base`` the EM model's scores of the
    dev rows, ``C`` the voter -> class one-hot); minimises the summed
    cross-entropy ``+ lam/2 (|dw|^2 + |db|^2)`` (convex; L-BFGS with a
    strong-Wolfe line search, float64). Returns ``(dw, db)``.
    """
    R = vc.numel()
    dw = torch.zeros(R, dtype=torch.float64, device=base.device, requires_grad=True)
    db = torch.zeros(k, dtype=torch.float64, device=base.device, requires_grad=True)
    if Xd.shape[0] == 0:
        return dw.detach(), db.detach()
    C = torch.zeros(R, k, dtype=torch.float64, device=base.device)
    C[torch.arange(R, device=base.device), vc] = 1.0
    opt = torch.optim.LBFGS([dw, db], lr=1.0, max_iter=200, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        S = base + db + Xd @ (C * dw[:, None])
        loss = torch.nn.functional.cross_entropy(S, yd, reduction="sum") + 0.5 * lam * (
            dw.pow(2).sum() + db.pow(2).sum())
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return dw.detach(), db.detach()


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> List[np.ndarray]:
    """Row indices of ``n_folds`` folds with each class spread evenly over them (seeded)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    off = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (np.arange(len(idx)) + off) % n_folds
        off += len(idx)
    return [np.flatnonzero(fold == f) for f in range(n_folds)]


def select_l2(Xd: torch.Tensor, yd: np.ndarray, vc: torch.Tensor, base: torch.Tensor,
               k: int, cfg: "LabelModelConfig") -> Tuple[float, Optional[float]]:
    """Pick the correction strength from ``cfg.dev_l2_grid`` by stratified
    k-fold CV accuracy on the dev rows (seeded tie-break); ties keep the
    earlier (more conservative) value. Too few dev rows -> ``inf``."""
    n = len(yd)
    n_folds = min(cfg.dev_folds, n)
    if n_folds < 2:
        return math.inf, None
    folds = stratified_folds(yd, n_folds, cfg.seed)
    R = vc.numel()
    C = torch.zeros(R, k, dtype=torch.float64, device=base.device)
    C[torch.arange(R, device=base.device), vc] = 1.0
    y_t = torch.from_numpy(yd).to(base.device)
    best, best_acc = math.inf, -1.0
    for lam in cfg.dev_l2_grid:
        hits = 0
        for te in folds:
            if len(te) == 0:
                continue
            tr = np.setdiff1d(np.arange(n), te)
            te_t, tr_t = torch.from_numpy(te).to(base.device), torch.from_numpy(tr).to(base.device)
            if math.isinf(lam):
                dw, db = torch.zeros(R, dtype=torch.float64, device=base.device), torch.zeros(
                    k, dtype=torch.float64, device=base.device)
            else:
                dw, db = fit_correction(Xd[tr_t], y_t[tr_t], vc, base[tr_t], k, lam)
            S = base[te_t] + db + Xd[te_t] @ (C * dw[:, None])
            pred = tie_break(torch.softmax(S, dim=1).cpu().numpy(), cfg.seed, row_ids=te)
            hits += int((pred == yd[te]).sum())
        a = hits / n
        if a > best_acc + 1e-12:
            best, best_acc = lam, a
    return best, best_acc
