"""The one inner loop: gradient-descent adaptation of parameter dicts.

Used by MAML (and its first-order variant) for RL and supervised tasks, by evaluation and by the
fine-tuning baselines, so every comparison adapts with identical code.

``loss_fn(params, data)`` returns one loss per task: shape ``[N]`` when ``params`` are stacked per
task (leading dimension N) and a scalar for a single task. Summing the per-task losses before
differentiating gives every task its own gradient, because each task's loss depends only on its
own slice of the stacked parameters. The gradient is taken with ``torch.func.grad``, so ``adapt``
works unchanged inside ``torch.func.vmap`` and under ordinary autograd (where its result stays
differentiable with respect to ``params``: the second-order MAML term).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves, tree_map

from metarl.core.linalg import Params

Data = TypeVar("Data")


def per_task(params: Params, n: int) -> Params:
    """``params`` repeated along a new leading task dimension (a view; gradients flow back)."""
    return {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in params.items()}


def task_count(data: Any) -> int:
    """The leading (task) dimension of the first tensor in ``data``, a pytree of tensors."""
    leaves = [x for x in tree_leaves(data) if isinstance(x, Tensor)]
    if not leaves:
        raise ValueError("task data holds no tensors")
    return int(leaves[0].shape[0])


def select_tasks(data: Any, index: int | slice | Tensor) -> Any:
    """The tasks ``index`` of every tensor in ``data`` (a pytree with a leading task dim)."""
    return tree_map(lambda x: x[index], data)


def summed_over_tasks(loss_fn: Callable[[Params, Any], Tensor], data: Any
                      ) -> Callable[[Params], Tensor]:
    """The sum over tasks of ``loss_fn(., data)``: its gradient is every task's own gradient."""
    return lambda p: loss_fn(p, data).sum()


def adapt_step(
    loss_fn: Callable[[Params, Data], Tensor],
    params: Params,
    data: Data,
    lr: float,
    first_order: bool = False,
) -> Params:
    """One step ``phi = params - lr * grad loss(params, data)``.

    With ``first_order`` the gradient is treated as a constant (FOMAML, Finn et al. 2017,
    arXiv:1703.03400 Sec. 5.2): ``phi`` still depends on ``params``, but only through identity.
    """
    grads = torch.func.grad(summed_over_tasks(loss_fn, data))(params)
    if first_order:
        grads = {k: g.detach() for k, g in grads.items()}
    return {k: params[k] - lr * grads[k] for k in params}


def adapt(
    loss_fn: Callable[[Params, Data], Tensor],
    params: Params,
    supports: Sequence[Data],
    lr: float | Sequence[float],
    first_order: bool = False,
) -> Params:
    """``len(supports)`` inner steps, step ``s`` on ``supports[s]`` with rate ``lr`` (or ``lr[s]``).

    The caller supplies the data of every step; in RL each step's support episodes were sampled
    with the parameters of the step before (see ``metarl.rl.trainer``).
    """
    rates = [lr] * len(supports) if isinstance(lr, (int, float)) else list(lr)
    if len(rates) != len(supports):
        raise ValueError(f"{len(rates)} learning rates for {len(supports)} inner steps")
    for data, rate in zip(supports, rates):
        params = adapt_step(loss_fn, params, data, rate, first_order)
    return params
