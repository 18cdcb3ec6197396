"""Parameter-dict algebra, conjugate gradient and Gauss-Newton (Fisher) vector products.

Vectors live flat (one 1-D tensor) inside the solvers and as dicts everywhere else;
``flatten`` / ``unflatten`` convert using a reference dict's names, order and shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

# The one definition of a parameter dict (name -> tensor), imported by every module that
# needs it: this module imports nothing from metarl, so any module may depend on it.
Params = dict[str, Tensor]


def flatten(params: Params | Sequence[Tensor]) -> Tensor:
    values = params.values() if isinstance(params, dict) else params
    return torch.cat([v.reshape(-1) for v in values])


def unflatten(vector: Tensor, like: Params) -> Params:
    out: Params = {}
    offset = 0
    for name, ref in like.items():
        size = ref.numel()
        out[name] = vector[offset : offset + size].view_as(ref)
        offset += size
    if offset != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, parameters need {offset}")
    return out


def detached_leaves(params: Params) -> Params:
    """Fresh leaf copies that require grad: the starting point of a differentiable computation."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


class CGResult(NamedTuple):
    solution: Tensor
    iterations: int
    residual_norm: float


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, tol: float = 1e-10
) -> CGResult:
    """Approximately solve ``A x = b`` for symmetric positive definite ``A`` given ``x -> A x``
    (Hestenes & Stiefel 1952). Stops after ``iters`` products or when ``|r|^2 < tol``."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    done = 0
    for done in range(1, iters + 1):
        if rr.item() < tol:
            done -= 1
            break
        ap = matvec(p)
        alpha = rr / torch.dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_next = torch.dot(r, r)
        p = r + (rr_next / rr) * p
        rr = rr_next
    return CGResult(x, done, float(rr.sqrt().item()))


def gauss_newton_vector_product(
    outputs: Sequence[Tensor],
    wrt: Sequence[Tensor],
    curvature: Sequence[Tensor],
    damping: float = 0.0,
) -> Callable[[Tensor], Tensor]:
    """``v -> (J^T M J + damping I) v`` with ``J = d outputs / d wrt`` and diagonal ``M``.

    For a KL divergence evaluated where both distributions coincide, the KL's gradient with
    respect to the distribution parameters is zero, so its Hessian with respect to ``wrt`` is
    exactly ``J^T M J`` with ``M`` the KL's Hessian in distribution space (the Fisher matrix;
    Martens 2014, arXiv:1412.1193, Sec. 9). This avoids double backpropagation through the loss.

    The graph from ``wrt`` to ``outputs`` is built once by the caller and reused by every product:
    ``J^T u`` is one backward pass; ``J v`` is the derivative of ``J^T u`` with respect to a
    dummy ``u`` (the "double-vjp" trick), one more backward pass through a graph also built once.
    """
    dummies = [torch.zeros_like(o, requires_grad=True) for o in outputs]
    jt_dummy = torch.autograd.grad(
        outputs, wrt, grad_outputs=dummies, create_graph=True, allow_unused=True
    )
    linear_in_dummy = [g for g in jt_dummy if g is not None]
    like = [w.detach() for w in wrt]

    def product(vector: Tensor) -> Tensor:
        pieces, offset = [], 0
        for w, g in zip(like, jt_dummy):
            size = w.numel()
            if g is not None:
                pieces.append(vector[offset : offset + size].view_as(w))
            offset += size
        jv = torch.autograd.grad(linear_in_dummy, dummies, grad_outputs=pieces, retain_graph=True)
        weighted = [m * j for m, j in zip(curvature, jv)]
        jt = torch.autograd.grad(
            outputs, wrt, grad_outputs=weighted, retain_graph=True, allow_unused=True
        )
        flat = torch.cat(
            [(g if g is not None else torch.zeros_like(w)).reshape(-1) for g, w in zip(jt, like)]
        )
        return flat + damping * vector

    return product
