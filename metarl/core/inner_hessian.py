"""The inner loss's gradient and Hessian-vector products at one inner step: what TRPO's
curvature needs to run through the adaptation (``metarl.core.maml.fisher_vector_product``).

A builder takes per-task parameters ``[N, ...]`` and one step's support batch and returns the
per-task gradient (for the next step's parameters) and ``v -> H v`` for per-task vectors, H
each task's Hessian of the inner loss at those parameters. Two builders give the same numbers:

- ``autograd_inner_hessian``: any inner loss; the gradient's graph is kept and every product is
  a double backward pass through it.
- ``metarl.core.gaussian_mlp_hessian``: the REINFORCE loss of a Gaussian MLP policy, derived by
  hand; the same matrix products with fewer element-wise passes (docs/results/speed.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.core.episodes import StepBatch
from metarl.core.linalg import Params, detached_leaves

HessianProduct = Callable[[list[Tensor]], list[Tensor]]


class InnerStepHessian(NamedTuple):
    gradient: list[Tensor]  # per-task gradient of the inner loss, in the parameters' order
    product: HessianProduct  # per-task vectors (parameter order) -> per-task H v


# (per-task parameters, support batch, whether products will be asked for) -> InnerStepHessian
InnerHessianBuilder = Callable[[Params, StepBatch, bool], InnerStepHessian]


def autograd_inner_hessian(
    inner_loss: Callable[[Params, StepBatch], Tensor],
) -> InnerHessianBuilder:
    """Gradient and Hessian-vector products of ``inner_loss`` by autograd: the gradient graph
    is built once and each product is a backward pass through it."""

    def build(params: Params, support: StepBatch, with_products: bool) -> InnerStepHessian:
        leaves = list(detached_leaves(params).values())
        named = dict(zip(params, leaves))
        grads = torch.autograd.grad(inner_loss(named, support).sum(), leaves,
                                    create_graph=with_products)

        def product(vectors: list[Tensor]) -> list[Tensor]:
            return list(torch.autograd.grad(grads, leaves, grad_outputs=vectors,
                                            retain_graph=True))

        return InnerStepHessian([g.detach() for g in grads], product)

    return build
