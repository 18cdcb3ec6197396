"""Outer (meta) update steps: TRPO and a plain Adam gradient step (the REINFORCE outer step).

Both are pure: they take parameters and return new ones, never mutating their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.linalg import Params, conjugate_gradient, unflatten


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
    ``0.5 x^T F x = max_kl``, then backtracks by ``ls_backtrack`` until the loss improves and
    the measured KL is within ``max_kl``. If no step is accepted the original parameters are
    returned unchanged.
    """
    cg = conjugate_gradient(fisher_product, -gradient, iters=cg_iters)
    direction = cg.solution
    curvature = 0.5 * torch.dot(direction, fisher_product(direction)).item()
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


class AdamState(NamedTuple):
    step: int
    first_moment: Params
    second_moment: Params


def adam_init(params: Params) -> AdamState:
    zeros = {k: torch.zeros_like(v) for k, v in params.items()}
    return AdamState(0, zeros, {k: v.clone() for k, v in zeros.items()})


def adam_step(
    params: Params,
    grads: Params,
    state: AdamState,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Params, AdamState]:
    """One Adam update (Kingma & Ba 2015, arXiv:1412.6980, Algorithm 1)."""
    b1, b2 = betas
    t = state.step + 1
    m = {k: b1 * state.first_moment[k] + (1 - b1) * grads[k] for k in params}
    v = {k: b2 * state.second_moment[k] + (1 - b2) * grads[k].pow(2) for k in params}
    new = {
        k: params[k] - lr * (m[k] / (1 - b1**t)) / ((v[k] / (1 - b2**t)).sqrt() + eps)
        for k in params
    }
    return new, AdamState(t, m, v)

