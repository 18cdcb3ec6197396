"""The MAML meta-objective and its gradient (Finn et al. 2017, arXiv:1703.03400, Algorithm 3).

For every task of a meta-batch the meta-parameters theta are adapted by ``adapt`` on the task's
support data, and the adapted parameters phi_i(theta) are scored on its query data. The
meta-gradient differentiates through the inner step (second order) unless ``first_order``.

Meta-gradient estimator: whichever the inner loss implements (``metarl.core.estimators``): the
original MAML-RL surrogate by default, ProMP's LVC or DiCE on request.

Tasks are a tensor dimension: parameters are expanded to ``[N, ...]`` and every task's forward
pass is one batched matmul. ``meta_gradient`` also offers ``torch.func.vmap`` over tasks (with a
``chunk_size``) and a plain loop, used by the tests (all three agree) and by ``metarl bench``,
which measures them; the batched form was fastest here (docs/results/speed.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from metarl.core.adaptation import adapt, per_task, select_tasks, task_count
from metarl.core.distributions import DistParams, Policy
from metarl.core.episodes import StepBatch, masked_mean
from metarl.core.inner_hessian import (
    InnerHessianBuilder,
    InnerStepHessian,
    autograd_inner_hessian,
)
from metarl.core.linalg import (
    Params,
    detached_leaves,
    gauss_newton_vector_product,
    params_device,
    unflatten,
)

GradientMode = Literal["batched", "vmap", "loop"]


class QueryBatch(NamedTuple):
    """Query steps with the sampling (old) policy's outputs, for the TRPO surrogate and KL."""

    steps: StepBatch
    # the old distribution's outputs (``policy.distribution_params``), each with leading
    # [N, M] or, where it is one per task, [N, 1]: Gaussian (mean, log_std), categorical (logits,)
    old_dist: DistParams
    old_log_prob: Tensor  # [N, M]


class MetaBatch(NamedTuple):
    supports: list[StepBatch]  # one per inner step; step s was sampled with phi after s steps
    query: QueryBatch


QueryLoss = Callable[[Params, QueryBatch], Tensor]  # one loss per task


def surrogate_loss(policy: Policy) -> QueryLoss:
    """Importance-weighted surrogate ``-mean_t ratio_t A_t`` per task (Schulman et al. 2015,
    arXiv:1502.05477, eq. 14); its gradient at the sampling parameters is the policy gradient."""

    def loss(params: Params, query: QueryBatch) -> Tensor:
        log_prob = policy.log_prob(params, query.steps.observations, query.steps.actions)
        ratio = torch.exp(log_prob - query.old_log_prob)
        return -masked_mean(ratio * query.steps.advantages, query.steps.mask)

    return loss


def query_loss_and_kl(
    policy: Policy,
    inner_loss: Callable[[Params, StepBatch], Tensor],
    params: Params,
    batch: MetaBatch,
    inner_lr: float,
    first_order: bool = False,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean over tasks of the adapted policies' surrogate loss and of KL(old || adapted),
    computed ``chunk_size`` tasks at a time (all if None or 0)."""
    n = batch.query.old_log_prob.shape[0]
    chunk = chunk_size or n
    device = params_device(params)
    loss_sum, kl_sum = torch.zeros((), device=device), torch.zeros((), device=device)
    for start in range(0, n, chunk):
        part: MetaBatch = select_tasks(batch, slice(start, start + chunk))
        m = part.query.old_log_prob.shape[0]
        adapted = adapt(inner_loss, per_task(params, m), part.supports, inner_lr, first_order)
        steps = part.query.steps
        dist = policy.distribution_params(adapted, steps.observations)
        log_prob = policy.distribution.log_prob(dist, steps.actions)
        ratio = torch.exp(log_prob - part.query.old_log_prob)
        loss_sum = loss_sum - masked_mean(ratio * steps.advantages, steps.mask).sum()
        kl = policy.distribution.kl(part.query.old_dist, dist)
        kl_sum = kl_sum + masked_mean(kl, steps.mask).sum()
    return loss_sum / n, kl_sum / n


def meta_gradient(
    inner_loss: Callable[[Params, Any], Tensor],
    outer_loss: Callable[[Params, Any], Tensor],
    params: Params,
    supports: Sequence[Any],
    query: Any,
    inner_lr: float,
    first_order: bool = False,
    mode: GradientMode = "batched",
    chunk_size: int | None = None,
) -> tuple[Tensor, Params]:
    """Value and gradient of ``mean_i outer_loss(adapt(params, supports_i), query_i)``.

    Every leaf tensor of ``supports`` and ``query`` has a leading task dimension N.
    ``mode`` picks how tasks are batched: stacked per-task parameters with batched matmuls,
    ``vmap``, or a loop. ``chunk_size`` tasks are processed at a time (all if None or 0) in the
    batched and vmap modes, which bounds the memory of the second-order graph.
    """
    supports = list(supports)
    n = task_count(query)
    chunk = chunk_size or n

    def task_objective(p: Params, task_supports: list[Any], task_query: Any) -> Tensor:
        return outer_loss(adapt(inner_loss, p, task_supports, inner_lr, first_order), task_query)

    if mode == "batched":

        def chunk_objective(p: Params, chunk_supports: list[Any], chunk_query: Any) -> Tensor:
            m = task_count(chunk_query)
            adapted = adapt(inner_loss, per_task(p, m), chunk_supports, inner_lr, first_order)
            return outer_loss(adapted, chunk_query).sum() / n

        chunk_value_and_grad = torch.func.grad_and_value(chunk_objective)
        total: Tensor = torch.zeros((), device=params_device(params))
        grads: Params = {k: torch.zeros_like(v) for k, v in params.items()}
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            g, loss = chunk_value_and_grad(params, select_tasks(supports, part),
                                           select_tasks(query, part))
            total = total + loss.detach()
            grads = {k: grads[k] + g[k] for k in grads}
        return total, grads
    value_and_grad = torch.func.grad_and_value(task_objective)
    if mode == "vmap":
        stacked, losses = torch.func.vmap(value_and_grad, in_dims=(None, 0, 0),
                                          chunk_size=chunk)(params, supports, query)
        return losses.mean(), {k: g.mean(0) for k, g in stacked.items()}
    if mode == "loop":
        results = [value_and_grad(params, select_tasks(supports, i), select_tasks(query, i))
                   for i in range(n)]
        mean_loss = torch.stack([loss for _, loss in results]).mean()
        return mean_loss, {k: torch.stack([g[k] for g, _ in results]).mean(0) for k in params}
    raise ValueError(f"unknown meta-gradient mode {mode!r} (known: batched, vmap, loop)")


def random_subset(size: int, fraction: float, generator: torch.Generator,
                  device: torch.device | None = None) -> Tensor:
    """A sorted random ``fraction`` of ``range(size)`` (at least one; all, drawing nothing, if
    the fraction is 1), as indices on ``device`` (default: the generator's).

    The draw happens on the generator's device whatever ``device`` is, so that a run's random
    stream, and with it the subsample, does not depend on where the maths run."""
    device = generator.device if device is None else device
    if fraction >= 1.0:
        return torch.arange(size, device=device)
    keep = max(1, math.ceil(fraction * size))
    drawn = torch.randperm(size, generator=generator, device=generator.device)
    return drawn[:keep].sort().values.to(device)


def curvature_subsample(batch: MetaBatch, step_fraction: float, generator: torch.Generator,
                        task_fraction: float = 1.0) -> MetaBatch:
    """The part of the batch on which TRPO measures its curvature: a random ``task_fraction``
    of the tasks, each with all its support steps and the same random ``step_fraction`` of
    its query steps.

    TRPO estimates its curvature on a subsample of the data (Schulman et al. 2015,
    arXiv:1502.05477, Sec. 8); the gradient and the line search keep all of it. The supports of
    a kept task stay whole: the Fisher-vector product's Jacobian runs through the adaptation,
    and adapting on part of the support data would take it at other parameters than the
    adapted policy that sampled the query, so the product would no longer be the KL's Hessian.
    Dropping whole tasks keeps it exact, and saves the Hessian-vector products through their
    adaptation, the product's main cost.
    """
    if task_fraction < 1.0:
        tasks = random_subset(task_count(batch.query), task_fraction, generator,
                              batch.query.old_log_prob.device)
        batch = select_tasks(batch, tasks)
    if step_fraction >= 1.0:
        return batch
    q = batch.query
    index = random_subset(q.steps.mask.shape[-1], step_fraction, generator, q.steps.mask.device)
    query = QueryBatch(
        steps=q.steps.subsample(index),
        old_dist=tuple(_step_subsample(x, q.old_log_prob.shape[-1], index) for x in q.old_dist),
        old_log_prob=q.old_log_prob.index_select(-1, index),
    )
    return MetaBatch(batch.supports, query)


def _step_subsample(output: Tensor, steps: int, index: Tensor) -> Tensor:
    """The steps ``index`` of a distribution output ``[N, M, ...]``; one that is the same for
    all steps (a Gaussian's log-std, ``[N, 1, ...]``) is kept whole."""
    if output.dim() < 2 or output.shape[1] != steps:
        return output
    return output.index_select(1, index)


def pre_update_fisher_product(
    policy: Policy, params: Params, support: StepBatch
) -> Callable[[Tensor], Tensor]:
    """``v -> F_pre v`` with F_pre the Hessian at ``params`` of the mean over tasks of
    KL(pi_params_old || pi_params) on the ``support`` states: the curvature of the pre-update
    (support-sampling) policy's change, in Gauss-Newton form, exact at the old policy."""
    n = support.mask.shape[0]
    leaves = detached_leaves(params)
    dist = policy.distribution_params(leaves, support.observations)
    weights = support.mask / (n * support.mask.sum(-1, keepdim=True).clamp(min=1.0))  # [N, M]
    old = tuple(x.detach() for x in dist)

    def curvature(jv: list[Tensor]) -> list[Tensor]:
        return policy.distribution.kl_hessian_product(old, weights, jv)

    return gauss_newton_vector_product(outputs=list(dist), wrt=list(leaves.values()),
                                       curvature=curvature)


def fisher_vector_product(
    policy: Policy,
    inner_loss: Callable[[Params, StepBatch], Tensor],
    params: Params,
    batch: MetaBatch,
    inner_lr: float,
    first_order: bool = False,
    damping: float = 0.0,
    inner_hessian: InnerHessianBuilder | None = None,
) -> Callable[[Tensor], Tensor]:
    """``v -> (F + damping I) v`` with F the Hessian in theta of the mean KL(old || phi(theta))
    over the query steps of ``batch``, evaluated at ``params``.

    At the old policy the KL's gradient vanishes, so F is exact in Gauss-Newton form: per task,
    ``F_i = P_i^T G_i P_i`` with ``P_i = d phi_i / d theta`` the Jacobian of the adaptation and
    ``G_i = J_i^T M_i J_i`` the Gauss-Newton matrix at phi_i (J_i the Jacobian of the policy's
    distribution outputs at the query states, M_i the KL's Hessian in those outputs, weighted by
    each step's weight w in the mean KL: for a Gaussian ``w / var`` for each mean and
    ``2 sum_t w`` for each log-std, for a categorical ``w (diag(p) - p p^T)`` per step;
    ``Distribution.kl_hessian_product``).

    Each inner step s contributes ``P_s = I - lr H_s``, H_s the Hessian of the inner loss on
    all of step s's support data at the parameters before that step; ``P_s`` is symmetric and
    applied as a Hessian-vector product of ``inner_hessian`` (by default autograd's, through a
    gradient graph built once here and reused by every product; ``metarl.core.inner_hessian``).
    It must be the Hessian of ``inner_loss``. First-order adaptation has ``P = I``.
    """
    build = inner_hessian or autograd_inner_hessian(inner_loss)
    n = batch.query.old_log_prob.shape[0]
    current = {k: v.detach().unsqueeze(0).expand(n, *v.shape) for k, v in params.items()}
    inner_steps: list[InnerStepHessian] = []
    for support in batch.supports:
        step = build(current, support, not first_order)
        inner_steps.append(step)
        current = {k: v - inner_lr * g for (k, v), g in zip(current.items(), step.gradient)}
    adapted = detached_leaves(current)
    steps = batch.query.steps
    dist = policy.distribution_params(adapted, steps.observations)
    weights = steps.mask / (n * steps.mask.sum(-1, keepdim=True).clamp(min=1.0))  # [N, M]
    old = batch.query.old_dist

    def curvature(jv: list[Tensor]) -> list[Tensor]:
        return policy.distribution.kl_hessian_product(old, weights, jv)

    gauss_newton = gauss_newton_vector_product(outputs=list(dist), wrt=list(adapted.values()),
                                               curvature=curvature)
    shapes = [v.shape for v in adapted.values()]

    def through_inner_step(step: InnerStepHessian, vectors: list[Tensor]) -> list[Tensor]:
        """``(I - lr H_s) v`` for every task's own vector."""
        return [v - inner_lr * h for v, h in zip(vectors, step.product(vectors))]

    def product(vector: Tensor) -> Tensor:
        per_task_v = [piece.unsqueeze(0).expand(shape) for piece, shape
                      in zip(unflatten(vector, params).values(), shapes)]
        if not first_order:
            for step in inner_steps:
                per_task_v = through_inner_step(step, per_task_v)
        flat_gn = gauss_newton(torch.cat([v.reshape(-1) for v in per_task_v]))
        pieces, offset = [], 0
        for shape in shapes:
            size = math.prod(shape)
            pieces.append(flat_gn[offset: offset + size].view(shape))
            offset += size
        if not first_order:
            for step in reversed(inner_steps):
                pieces = through_inner_step(step, pieces)
        return torch.cat([p.sum(0).reshape(-1) for p in pieces]) + damping * vector

    return product
