"""TRPO's step (Schulman et al. 2015, arXiv:1502.05477): a natural-gradient direction by
conjugate gradient, scaled to the trust region's boundary, then a backtracking line search.

Pure: it takes parameters and returns new ones, never mutating its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.core.linalg import Params, conjugate_gradient, unflatten


class TRPOResult(NamedTuple):
    params: Params
    accepted: bool
    loss_before: float
    loss_after: float
    kl: float
    line_search_steps: int
    cg_residual: float


def trpo_step(
    params: Params,
    gradient: Tensor,
    loss_before: float,
    fisher_product: Callable[[Tensor], Tensor],
    loss_and_kl: Callable[[Params], tuple[Tensor, Tensor]],
    max_kl: float = 0.01,
    cg_iters: int = 10,
    ls_backtrack: float = 0.8,
    ls_max_steps: int = 15,
) -> TRPOResult:
    """One trust-region step (Schulman et al. 2015, arXiv:1502.05477, Appendix C).

    Solves ``F x = -g`` by conjugate gradient, scales x to the trust-region boundary
    ``0.5 x^T F x = max_kl`` (``x^T F x`` from CG's residual, so only CG calls
    ``fisher_product``), then backtracks by ``ls_backtrack`` until the loss improves and
    the measured KL is within ``max_kl``. If no step is accepted the original parameters are
    returned unchanged.
    """
    cg = conjugate_gradient(fisher_product, -gradient, iters=cg_iters)
    direction = cg.solution
    # x^T F x = x^T (b - r), b = -g and r = b - F x CG's residual: no further Fisher product.
    # (x^T r is 0 in exact arithmetic, but not where CG fell back to x = b.)
    curvature = 0.5 * torch.dot(direction, -gradient - cg.residual).item()
    if not math.isfinite(curvature) or curvature <= 0:
        return TRPOResult(params, False, loss_before, loss_before, 0.0, 0, cg.residual_norm)
    full_step = unflatten(direction * math.sqrt(max_kl / curvature), params)
    for step in range(ls_max_steps):
        scale = ls_backtrack**step
        candidate = {k: params[k] + scale * full_step[k] for k in params}
        with torch.no_grad():
            loss, kl = loss_and_kl(candidate)
        if loss.item() < loss_before and kl.item() <= max_kl:
            return TRPOResult(
                candidate, True, loss_before, loss.item(), kl.item(), step + 1, cg.residual_norm
            )
    return TRPOResult(params, False, loss_before, loss_before, 0.0, ls_max_steps, cg.residual_norm)
