"""Linear feature baseline refit per task in closed form (Duan et al. 2016, arXiv:1604.06778).

Features per step: ``obs, obs^2, t, t^2, t^3, 1`` with ``t = step / 100``, as in the MAML-RL code.
Each task's ridge regression ``w = (X^T X + ridge I)^-1 X^T R`` is solved for all tasks at once
with one batched Cholesky solve (the matrix is symmetric positive definite). The normal equations
are formed and solved in float64: in float32 they become singular after some training, when the
policy's visitation collapses onto a few states.

Not ``torch.linalg.solve``: its batched LU in torch 2.13's CPU build, with two or more threads,
failed ("Pivots given to lu_solve must all be greater or equal to 1") or hung for 40 tasks of
the Ant's 226 features, on well-conditioned matrices; one thread, or Cholesky, did not.
"""

from __future__ import annotations

import torch
from torch import Tensor

TIME_SCALE = 100.0


def baseline_features(observations: Tensor) -> Tensor:
    """``[N, T, B, obs] -> [N, T, B, 2 obs + 4]``."""
    n, horizon, episodes, _ = observations.shape
    t = torch.arange(horizon, dtype=observations.dtype, device=observations.device) / TIME_SCALE
    t = t.view(1, horizon, 1, 1).expand(n, horizon, episodes, 1)
    ones = torch.ones_like(t)
    return torch.cat([observations, observations.pow(2), t, t.pow(2), t.pow(3), ones], dim=-1)


# Tasks fitted at once are bounded so that their float64 features stay under this many bytes:
# the Ant's 40 tasks x 4,000 steps x 226 features at once raised an iteration's peak memory by
# 0.7 GB; 2D navigation's 20 tasks still go in one batch.
FEATURE_BYTES_PER_BATCH = 64 * 2**20


def fit_linear_baseline(
    observations: Tensor, returns: Tensor, mask: Tensor, ridge: float = 1e-5
) -> Tensor:
    """Per-task least-squares fit of ``returns`` on the features; the fitted values ``[N, T, B]``.

    Only valid steps (``mask == 1``) take part in the fit; invalid steps get value 0. Tasks are
    fitted in batches of at most ``FEATURE_BYTES_PER_BATCH`` of features (each task's fit is
    its own, so the batches change no value).
    """
    n, horizon, episodes, obs_dim = observations.shape
    task_bytes = horizon * episodes * (2 * obs_dim + 4) * 8
    chunk = max(1, FEATURE_BYTES_PER_BATCH // task_bytes)
    return torch.cat([_fit(observations[i:i + chunk], returns[i:i + chunk], mask[i:i + chunk],
                           ridge) for i in range(0, n, chunk)])


def _fit(observations: Tensor, returns: Tensor, mask: Tensor, ridge: float) -> Tensor:
    n = observations.shape[0]
    features = baseline_features(observations.double()) * mask.double().unsqueeze(-1)
    x = features.reshape(n, -1, features.shape[-1])
    y = (returns.double() * mask.double()).reshape(n, -1, 1)
    xt = x.transpose(1, 2)
    eye = torch.eye(x.shape[-1], dtype=torch.float64, device=x.device)
    normal = xt @ x + ridge * eye
    factor, info = torch.linalg.cholesky_ex(normal)
    if bool(info.any()):  # not positive definite in floating point: tiny ridge, huge features
        # (a least-squares solve, task by task: one matrix at a time is safe with threads)
        weights = torch.stack([torch.linalg.lstsq(a, b).solution
                               for a, b in zip(normal, xt @ y)])
    else:
        weights = torch.cholesky_solve(xt @ y, factor)
    values = (x @ weights).reshape(returns.shape)
    return values.to(returns.dtype)
