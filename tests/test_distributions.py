"""The distribution abstraction (metarl.core.distributions) and the categorical policy through
the training paths: TRPO's Gauss-Newton product through the adaptation, the pre-update
curvature, ProMP's KL and rollouts sampled from per-task seeds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian

from metarl.core.adaptation import adapt, per_task
from metarl.core.categorical import CategoricalMLPPolicy
from metarl.core.distributions import Categorical, DiagonalGaussian, categorical_kl
from metarl.core.episodes import StepBatch
from metarl.core.estimators import reinforce_loss
from metarl.core.linalg import flatten, gauss_newton_vector_product, unflatten
from metarl.core.maml import (
    MetaBatch,
    QueryBatch,
    curvature_subsample,
    fisher_vector_product,
    pre_update_fisher_product,
    query_loss_and_kl,
)
from metarl.core.policies import GaussianMLPPolicy
from metarl.core.promp import pre_update_kl
from metarl.envs import make_task_vector_env
from metarl.rl.rollout import rollout

F64 = torch.float64
OBS, ACTIONS = 3, 4


def _categorical_meta_batch(policy: CategoricalMLPPolicy, n: int, m: int, inner_steps: int,
                            lr: float) -> MetaBatch:
    """Supports and a query of float index actions ``[n, m, 1]``, as rollouts store them; the
    old policy is the adapted one at theta, as when the query was sampled."""
    g = torch.Generator().manual_seed(2)

    def steps() -> StepBatch:
        return StepBatch(
            observations=torch.randn(n, m, OBS, generator=g, dtype=F64),
            actions=torch.randint(ACTIONS, (n, m, 1), generator=g).to(F64),
            advantages=torch.randn(n, m, generator=g, dtype=F64),
            mask=(torch.rand(n, m, generator=g) > 0.2).to(F64),
        )

    supports = [steps() for _ in range(inner_steps)]
    query = steps()
    adapted = adapt(reinforce_loss(policy), per_task(policy.initial_params(), n), supports, lr)
    old = tuple(x.detach() for x in policy.distribution_params(adapted, query.observations))
    old_log_prob = policy.distribution.log_prob(old, query.actions).detach()
    return MetaBatch(supports, QueryBatch(query, old, old_log_prob))


def _explicit(product: Callable[[torch.Tensor], torch.Tensor], size: int) -> torch.Tensor:
    return torch.stack([product(e) for e in torch.eye(size, dtype=F64)])


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_categorical_fisher_vector_product_is_the_hessian_of_the_adapted_kl(
        inner_steps: int) -> None:
    """J^T (diag(p) - p p^T) J through the adaptation equals the Hessian in theta of the mean
    KL(old || adapted(theta)) at the old policy, computed by autograd (float64)."""
    torch.manual_seed(0)
    policy = CategoricalMLPPolicy(OBS, ACTIONS, (5,)).double()
    params = {k: v + 0.3 * torch.randn_like(v) for k, v in policy.initial_params().items()}
    policy.load_state_dict(params)
    batch = _categorical_meta_batch(policy, n=3, m=6, inner_steps=inner_steps, lr=0.4)
    loss = reinforce_loss(policy)

    def mean_kl(flat: torch.Tensor) -> torch.Tensor:
        return query_loss_and_kl(policy, loss, unflatten(flat, params), batch, inner_lr=0.4)[1]

    theta = flatten(params)
    expected = hessian(mean_kl, theta)
    assert expected.abs().max() > 1e-3  # a real curvature, not a vacuous comparison
    explicit = _explicit(fisher_vector_product(policy, loss, params, batch, 0.4), theta.numel())
    assert torch.allclose(explicit, expected, rtol=1e-9, atol=1e-10)
    damped = fisher_vector_product(policy, loss, params, batch, 0.4, damping=0.1)
    v = torch.randn(theta.numel(), dtype=F64)
    assert torch.allclose(damped(v), expected @ v + 0.1 * v, atol=1e-10)


def test_categorical_fisher_vector_product_on_a_curvature_subsample() -> None:
    torch.manual_seed(1)
    policy = CategoricalMLPPolicy(OBS, ACTIONS, (5,)).double()
    params = policy.initial_params()
    batch = _categorical_meta_batch(policy, n=4, m=8, inner_steps=1, lr=0.4)
    part = curvature_subsample(batch, 0.5, torch.Generator().manual_seed(0), task_fraction=0.5)
    assert part.query.old_dist[0].shape == (2, 4, ACTIONS)
    loss = reinforce_loss(policy)

    def mean_kl(flat: torch.Tensor) -> torch.Tensor:
        return query_loss_and_kl(policy, loss, unflatten(flat, params), part, inner_lr=0.4)[1]

    expected = hessian(mean_kl, flatten(params))
    explicit = _explicit(fisher_vector_product(policy, loss, params, part, 0.4),
                         expected.shape[0])
    assert torch.allclose(explicit, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("policy_kind", ["categorical", "gaussian"])
def test_pre_update_fisher_product_is_the_hessian_of_promps_kl(policy_kind: str) -> None:
    torch.manual_seed(2)
    policy: CategoricalMLPPolicy | GaussianMLPPolicy
    if policy_kind == "categorical":
        policy = CategoricalMLPPolicy(OBS, ACTIONS, (5,)).double()
    else:
        policy = GaussianMLPPolicy(OBS, 2, (5,), init_log_std=-0.4).double()
    params = policy.initial_params()
    support = _categorical_meta_batch(CategoricalMLPPolicy(OBS, ACTIONS, (5,)).double(),
                                      n=3, m=5, inner_steps=1, lr=0.4).supports[0]
    old = tuple(x.detach() for x in policy.distribution_params(params, support.observations))

    def kl(flat: torch.Tensor) -> torch.Tensor:
        return pre_update_kl(policy, unflatten(flat, params), support, old)

    expected = hessian(kl, flatten(params))
    explicit = _explicit(pre_update_fisher_product(policy, params, support), expected.shape[0])
    assert torch.allclose(explicit, expected, rtol=1e-9, atol=1e-10)


def test_gauss_newton_product_takes_a_matrix_curvature() -> None:
    """A non-diagonal M given as a callable: J^T M J, checked against explicit matrices; the
    diagonal form stays as it was."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=F64)
    w = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    outputs = torch.tanh(x @ w.T)
    a = torch.randn(15, 15, generator=g, dtype=F64)
    m = a @ a.T
    product = gauss_newton_vector_product(
        [outputs], [w], lambda jv: [(m @ jv[0].reshape(-1)).view(5, 3)], damping=0.1)
    j = torch.autograd.functional.jacobian(lambda w_: torch.tanh(x @ w_.T), w.detach())
    j = j.reshape(15, 12)
    expected = j.T @ m @ j + 0.1 * torch.eye(12, dtype=F64)
    v = torch.randn(12, generator=g, dtype=F64)
    assert torch.allclose(product(v), expected @ v, atol=1e-10)
    diagonal = torch.rand(5, 3, generator=g, dtype=F64)
    as_tensors = gauss_newton_vector_product([outputs], [w], [diagonal])
    as_callable = gauss_newton_vector_product([outputs], [w], lambda jv: [diagonal * jv[0]])
    assert torch.allclose(as_tensors(v), as_callable(v), atol=1e-12)


def test_categorical_kl_hessian_product_is_the_hessian_in_the_logits() -> None:
    g = torch.Generator().manual_seed(3)
    old = torch.randn(2, 3, ACTIONS, generator=g, dtype=F64)
    weights = torch.rand(2, 3, generator=g, dtype=F64)

    def weighted_kl(flat: torch.Tensor) -> torch.Tensor:
        return (weights * categorical_kl(old, flat.view_as(old))).sum()

    expected = hessian(weighted_kl, old.reshape(-1))
    u = torch.randn(old.shape, generator=g, dtype=F64)
    (got,) = Categorical().kl_hessian_product((old,), weights, [u])
    assert torch.allclose(got.reshape(-1), expected @ u.reshape(-1), atol=1e-12)


def test_gaussian_kl_hessian_product_is_the_hessian_in_mean_and_log_std() -> None:
    g = torch.Generator().manual_seed(4)
    mean = torch.randn(2, 3, 2, generator=g, dtype=F64)
    log_std = 0.3 * torch.randn(2, 1, 2, generator=g, dtype=F64)
    weights = torch.rand(2, 3, generator=g, dtype=F64)
    gaussian = DiagonalGaussian()
    sizes = (mean.numel(), log_std.numel())

    def weighted_kl(flat: torch.Tensor) -> torch.Tensor:
        new = (flat[: sizes[0]].view_as(mean), flat[sizes[0]:].view_as(log_std))
        return (weights * gaussian.kl((mean, log_std), new)).sum()

    expected = hessian(weighted_kl, torch.cat([mean.reshape(-1), log_std.reshape(-1)]))
    u = (torch.randn(mean.shape, generator=g, dtype=F64),
         torch.randn(log_std.shape, generator=g, dtype=F64))
    got = gaussian.kl_hessian_product((mean, log_std), weights, list(u))
    flat_u = torch.cat([x.reshape(-1) for x in u])
    assert torch.allclose(torch.cat([x.reshape(-1) for x in got]), expected @ flat_u,
                          atol=1e-12)


def test_categorical_sampling_by_inverse_cdf_follows_the_probabilities() -> None:
    logits = torch.tensor([0.0, 1.0, -1.0, 0.5], dtype=F64)
    categorical = Categorical()
    n = 40_000
    noise = categorical.draw_noise((n, 1), torch.Generator().manual_seed(0))
    actions = categorical.sample((logits.expand(n, 4),), noise)
    assert actions.shape == (n, 1) and actions.dtype == F64
    assert torch.equal(actions, actions.round()) and actions.min() >= 0 and actions.max() <= 3
    frequencies = torch.bincount(actions.long().view(-1), minlength=4).double() / n
    # Hoeffding with a union bound over 4 frequencies: a correct sampler fails w.p. < 1e-6
    assert torch.allclose(frequencies, torch.softmax(logits, 0), atol=0.0135)
    # the rollouts' float [..., 1] indices and plain integer indices give the same log-prob
    log_prob = categorical.log_prob((logits.expand(n, 4),), actions)
    assert torch.equal(log_prob, categorical.log_prob((logits.expand(n, 4),),
                                                      actions.squeeze(-1).long()))


def test_categorical_rollout_is_the_same_whether_tasks_are_sampled_together_or_in_shards(
) -> None:
    torch.manual_seed(0)
    policy = CategoricalMLPPolicy(10, 5, (8,))
    theta = policy.initial_params()
    # per-task parameters that differ, as adapted ones do
    params = {k: v + 0.5 * torch.randn(3, *v.shape) for k, v in theta.items()}
    probe = make_task_vector_env("metarl/TabularMDP-v0", 1)
    tasks = probe.sample_tasks(3, np.random.default_rng(0))
    seeds = [11, 22, 33]
    b, horizon = 4, 10
    together = rollout(make_task_vector_env("metarl/TabularMDP-v0", 3 * b), policy, params,
                       tasks, b, horizon, task_seeds=seeds)
    assert together.actions.shape == (3, horizon, b, 1)
    assert len(torch.unique(together.actions)) > 1
    first = rollout(make_task_vector_env("metarl/TabularMDP-v0", b), policy,
                    {k: v[:1] for k, v in params.items()}, tasks[:1], b, horizon,
                    task_seeds=seeds[:1])
    rest = rollout(make_task_vector_env("metarl/TabularMDP-v0", 2 * b), policy,
                   {k: v[1:] for k, v in params.items()}, tasks[1:], b, horizon,
                   task_seeds=seeds[1:])
    for name in ("observations", "actions", "rewards", "mask"):
        joined = torch.cat([getattr(first, name), getattr(rest, name)])
        assert torch.equal(getattr(together, name), joined), name
    other = rollout(make_task_vector_env("metarl/TabularMDP-v0", 3 * b), policy, params,
                    tasks, b, horizon, task_seeds=[11, 22, 34])
    assert torch.equal(other.actions[:2], together.actions[:2])
    assert not torch.equal(other.actions[2], together.actions[2])


def test_the_mode_is_the_mean_or_the_most_likely_index() -> None:
    from metarl.core.distributions import Categorical, DiagonalGaussian

    mean, log_std = torch.tensor([[0.3, -1.0]]), torch.zeros(1, 2)
    assert torch.equal(DiagonalGaussian().mode((mean, log_std)), mean)
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert Categorical().mode((logits,)).tolist() == [[1.0], [0.0]]
