"""Parameter-dict algebra, conjugate gradient and Gauss-Newton (Fisher) vector products.

Vectors live flat (one 1-D tensor) inside the solvers and as dicts everywhere else;
``flatten`` / ``unflatten`` convert using a reference dict's names, order and shapes.
"""

from __future__ import annotations

import warnings
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


def params_device(params: Params) -> torch.device:
    """The device of a parameter dict (its first tensor's): where the maths on it run, and
    where the tensors they create must live."""
    return next(iter(params.values())).device


def params_to(params: Params, device: torch.device | str) -> Params:
    """``params`` on ``device`` (the same tensors where they are there already)."""
    return {k: v.to(device) for k, v in params.items()}


def detached_leaves(params: Params) -> Params:
    """Fresh leaf copies that require grad: the starting point of a differentiable computation."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


class BatchedCGResult(NamedTuple):
    solution: Tensor  # [N, P]
    iterations: Tensor  # [N] CG iterations each system used
    residual_norm: Tensor  # [N] final |b - A x|
    residual: Tensor  # [N, P] b - A x, as CG's recurrence carries it


class CGResult(NamedTuple):
    solution: Tensor
    iterations: int
    residual_norm: float
    residual: Tensor  # b - A x: x^T A x = x^T (b - residual) without another product


def batched_conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, tol: float = 1e-10
) -> BatchedCGResult:
    """Solve ``A_i x_i = b_i`` for N independent symmetric positive definite systems at once
    by conjugate gradient (Hestenes & Stiefel 1952): the project's one CG solver.

    ``b`` is ``[N, P]`` and ``matvec`` maps ``[N, P] -> [N, P]`` row by row (``A`` is
    block-diagonal). Every row has its own step sizes, so its iterates are those of CG on its
    own system; a row stops once ``|r_i|^2 <= tol``, and all stop after ``iters`` products. A
    row whose search direction meets non-positive curvature (``A_i`` not positive definite
    there) stops with its current iterate, or ``b_i`` if that is its first iteration, with a
    warning. ``conjugate_gradient`` is the case of one system.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = _row_dots(r, r)
    iterations = torch.zeros(b.shape[0], dtype=torch.long, device=b.device)
    stopped = torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
    for _ in range(iters):
        active = (rr > tol) & ~stopped
        if not bool(active.any()):
            break
        ap = matvec(p)
        pap = _row_dots(p, ap)
        negative = active & (pap <= 0)
        if bool(negative.any()):
            warnings.warn(
                "conjugate gradient met a non-positive curvature p^T A p <= 0: the system is not "
                "positive definite (raise its damping); those systems keep their last iterate",
                RuntimeWarning,
                stacklevel=2,
            )
            # Truncated CG (Steihaug 1983): a step along negative curvature would send x off
            # towards an ascent direction of unbounded size, so the row stops where it is; one
            # stopped before its first step answers b itself, the first-order direction.
            first = negative & (iterations == 0)
            x = torch.where(first.unsqueeze(1), b, x)
            r = torch.where(first.unsqueeze(1), b - ap, r)  # p = b there: the residual of x = b
            stopped = stopped | negative
            active = active & ~negative
        one = torch.ones_like(rr)
        alpha = torch.where(active, rr / torch.where(active, pap, one), 0.0)
        x = x + alpha.unsqueeze(1) * p
        r = r - alpha.unsqueeze(1) * ap
        rr_next = _row_dots(r, r)
        beta = torch.where(active, rr_next / torch.where(active, rr, one), 0.0)
        p = r + beta.unsqueeze(1) * p
        rr = rr_next
        iterations += active.long()
    return BatchedCGResult(x, iterations, rr.sqrt(), r)


def _row_dots(u: Tensor, v: Tensor) -> Tensor:
    """``[N]`` inner products of the rows of ``u`` and ``v``. A single row goes through
    ``torch.dot``, as the one-system solver did before it became a batch of one: TRPO's steps
    stay bit-for-bit those of earlier runs (a sum of products rounds differently)."""
    if u.shape[0] == 1:
        return torch.dot(u[0], v[0]).unsqueeze(0)
    return (u * v).sum(1)


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, tol: float = 1e-10
) -> CGResult:
    """Approximately solve ``A x = b`` for symmetric positive definite ``A`` given ``x -> A x``
    (1-D ``b``): ``batched_conjugate_gradient`` on a batch of one system. Stops after ``iters``
    products, when ``|r|^2 <= tol``, or (with a warning) on non-positive curvature."""
    result = batched_conjugate_gradient(lambda v: matvec(v[0]).unsqueeze(0), b.unsqueeze(0),
                                        iters, tol)
    return CGResult(result.solution[0], int(result.iterations[0]),
                    float(result.residual_norm[0]), result.residual[0])


def gauss_newton_vector_product(
    outputs: Sequence[Tensor],
    wrt: Sequence[Tensor],
    curvature: Sequence[Tensor] | Callable[[list[Tensor]], Sequence[Tensor]],
    damping: float = 0.0,
) -> Callable[[Tensor], Tensor]:
    """``v -> (J^T M J + damping I) v`` with ``J = d outputs / d wrt``.

    ``M`` is either diagonal, given as one tensor per output (each shaped like, or broadcasting
    against, its output), or any symmetric matrix given as a callable that maps ``J v`` (one
    tensor per output) to ``M J v`` (the same shapes): a categorical policy's KL Hessian in its
    logits, ``diag(p) - p p^T`` per state, is not diagonal.

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
        weighted = (list(curvature(list(jv))) if callable(curvature)
                    else [m * j for m, j in zip(curvature, jv)])
        jt = torch.autograd.grad(
            outputs, wrt, grad_outputs=weighted, retain_graph=True, allow_unused=True
        )
        flat = torch.cat(
            [(g if g is not None else torch.zeros_like(w)).reshape(-1) for g, w in zip(jt, like)]
        )
        return flat + damping * vector

    return product
