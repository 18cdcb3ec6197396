"""Adam (Kingma & Ba 2015, arXiv:1412.6980) as a pure function of parameters and state: the
outer step of the REINFORCE-style learners, Reptile's inner optimiser and the few-shot outer step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from metarl.core.linalg import Params


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

