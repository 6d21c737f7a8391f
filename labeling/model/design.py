"""The learned label model's streaming design: distinct vote patterns, the voters that fire in them, and the
block-wise scores shared by EM and prediction. No float matrix of size ``n x m x k`` is ever built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch


@dataclass
class Design:
    """The fitted rows as distinct vote patterns, and the voters that fire in them.

    No float matrix of size (patterns x voters) is stored: every pass over the
    patterns (:meth:`blocks`) casts one block at a time of the (patterns x LFs*k)
    0/1 vote indicators to float32. The indicators are kept as bool (one byte a
    cell) when they fit ``CACHE_CELLS``, else rebuilt per block from the int8
    patterns. On 1M distinct rows x 50 LFs a stored float32 voter matrix was
    400 MB and the near-duplicate test's float64 copy of it 800 MB more.
    """

    U: np.ndarray            # (P, m) distinct vote patterns
    cnt: torch.Tensor        # (P,) rows per pattern
    n_fit: int
    lf: np.ndarray           # (R,) each voter's LF
    cls: np.ndarray          # (R,) each voter's class
    C: torch.Tensor          # (R, k) voter -> class one-hot
    Cs: torch.Tensor         # (R, k) one-hot of the voters whose silence counts (unipolar LFs' voters)
    F: torch.Tensor          # (R,) rows each voter fires on
    step: int                # patterns per block
    cached: Optional[torch.Tensor] = None  # (P, k*m) bool vote indicators, when small enough

    def blocks(self):
        """Per block of patterns: its counts and its (b, k*m) float32 :func:`vote_indicators`."""
        device, k = self.cnt.device, self.C.shape[1]
        P, m = self.U.shape
        if self.cached is None and P * m * k <= CACHE_CELLS:
            if device.type == "cpu":  # filled in place: no concatenated copy
                bits = np.empty((P, k * m), dtype=bool)
                for s in range(0, P, self.step):
                    bits[s:s + self.step] = _vote_bits(self.U[s:s + self.step], k, device).numpy()
                self.cached = torch.from_numpy(bits)
            else:
                self.cached = torch.cat([_vote_bits(self.U[s:s + self.step], k, device)
                                         for s in range(0, P, self.step)])
        for s in range(0, P, self.step):
            bits = (self.cached[s:s + self.step] if self.cached is not None
                    else _vote_bits(self.U[s:s + self.step], k, device))
            yield self.cnt[s:s + self.step], _as_float(bits)

    def dense(self, v: torch.Tensor) -> torch.Tensor:
        """(R,) per-voter values as an (m, k) matrix over (LF, class), 0 where no voter."""
        D = torch.zeros(self.U.shape[1], self.C.shape[1], device=v.device, dtype=v.dtype)
        D[torch.from_numpy(self.lf).to(v.device), torch.from_numpy(self.cls).to(v.device)] = v
        return D

    def voters(self, D: torch.Tensor) -> torch.Tensor:
        """The (R,) voter entries of an (m, k) matrix over (LF, class)."""
        return D[torch.from_numpy(self.lf).to(D.device), torch.from_numpy(self.cls).to(D.device)]


#: Indicator cells per block of rows on CPU: a block's float32 indicators (2 MB) stay in the
#: cache between the cast, the scores and the statistics (1M x 50 binary LFs, 1 thread: a fit
#: 2x faster than with 4M-cell blocks), and a pass is still only a few hundred torch calls.
BLOCK_CELLS = 1 << 19
#: The same on a GPU, where every block costs a dozen kernel launches and the cache argument
#: does not apply.
GPU_BLOCK_CELLS = 1 << 24
#: Vote indicators up to this many cells (bytes) are kept between passes: casting them is a
#: quarter of the cost of comparing the int8 patterns again (1M x 50 binary LFs: 100 MB).
CACHE_CELLS = 1 << 27


def block_step(m: int, k: int, device: torch.device) -> int:
    cells = BLOCK_CELLS if device.type == "cpu" else GPU_BLOCK_CELLS
    return max(4096, cells // max(m * k, 1))


def vote_indicators(blk: np.ndarray, k: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(b, k*m) float32 on ``device``: column ``c*m + j`` is 1 where LF ``j`` votes class ``c`` in
    the int8 rows ``blk`` (class-major, so that one class's columns are one strided slice)."""
    return _as_float(_vote_bits(np.ascontiguousarray(blk), k, device))


def _vote_bits(blk: np.ndarray, k: int, device: torch.device) -> torch.Tensor:
    """(b, k*m) bool vote indicators of the int8 rows ``blk``."""
    b, m = blk.shape
    if device.type == "cpu":  # numpy's compare into one buffer: 4x torch's broadcast compare on CPU
        out = np.empty((b, k, m), dtype=bool)
        for c in range(k):
            np.equal(blk, c, out=out[:, c, :])
        return torch.from_numpy(out.reshape(b, k * m))
    return _vote_bits_torch(torch.from_numpy(blk).to(device), k)


def _vote_bits_torch(t: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`_vote_bits` on a device tensor (GPU): one broadcast compare."""
    cls = torch.arange(k, device=t.device, dtype=t.dtype).view(1, k, 1)
    return (t.unsqueeze(1) == cls).view(t.shape[0], -1)


def _as_float(bits: torch.Tensor) -> torch.Tensor:
    """bool -> float32 through a uint8 view (torch casts uint8 10x faster than bool on CPU)."""
    return bits.view(torch.uint8).to(torch.float32)


def per_class(G: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
    """(k, m): ``[c, j]`` = sum of ``G[c]`` over the rows where LF ``j`` votes ``c`` (``G``: (k, b))."""
    k = G.shape[0]
    return torch.bmm(G.unsqueeze(1), I.view(-1, k, I.shape[1] // k).transpose(0, 1)).squeeze(1)


def score_matrix(W: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
    """(2k, k*m) from (m, k) vote weights and silence flags: its product with a block's
    indicators gives each class's weighted votes (rows ``:k``) and its silence voters firing
    (rows ``k:``). Kept on the left of the product: a (2k, k*m) @ (k*m, b) product runs 5x
    faster on CPU than the same numbers as (b, k*m) @ (k*m, 2k), whose output is 2k wide."""
    m, k = W.shape
    M = torch.zeros(2 * k, k, m, device=W.device, dtype=torch.float32)
    c = torch.arange(k, device=W.device)
    M[c, c, :] = W.T.to(torch.float32)
    M[k + c, c, :] = silence.T.to(torch.float32)
    return M.view(2 * k, k * m)


def block_scores(I: torch.Tensor, SM: torch.Tensor, base: torch.Tensor,
                 h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Posterior log-scores of a block of rows (before the softmax), shared by EM and prediction.

    ``I``: (b, k*m) :func:`vote_indicators` of the block; ``SM``: :func:`score_matrix`;
    ``base``: (k,) log prior + silence term of every class; ``h``: (k,) silence terms (a class
    is silent until one of its silence-counting voters fires). Returns the (k, b) scores, class
    by row (a softmax over classes is then one over dim 0, 20x faster on CPU than over a
    k-wide last dim), and the (k, b) 0/1 "a silence voter of the class fires".
    """
    k = base.numel()
    sv = SM @ I.T
    fired = (sv[k:] > 0).to(torch.float32)
    return base[:, None] + sv[:k] - fired * h[:, None], fired
