"""The categorical policy maths (metarl.core.categorical), in float64: log-probabilities,
entropy and KL against their closed forms, and the Gauss-Newton (Fisher) product of the mean KL
against the explicit Hessian, in the logits and, through the chain rule, in the MLP's
parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian

from metarl.core.adaptation import per_task
from metarl.core.categorical import (
    CategoricalMLPPolicy,
    categorical_entropy,
    categorical_fisher_product,
    categorical_kl,
    categorical_log_prob,
    mean_kl_fisher_product,
)
from metarl.core.linalg import flatten, unflatten

F64 = torch.float64


def _softmax_by_hand(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_log_prob_entropy_and_kl_match_their_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    old, new = 2.0 * torch.randn(2, 6, 4, generator=g, dtype=F64)
    actions = torch.randint(4, (6,), generator=g)
    p, q = _softmax_by_hand(old.numpy()), _softmax_by_hand(new.numpy())
    a = actions.numpy()
    assert np.allclose(categorical_log_prob(old, actions).numpy(), np.log(p[np.arange(6), a]))
    assert np.allclose(categorical_entropy(old).numpy(), -(p * np.log(p)).sum(-1))
    assert np.allclose(categorical_kl(old, new).numpy(), (p * np.log(p / q)).sum(-1))
    # the same as torch.distributions, and a few identities
    dist_p = torch.distributions.Categorical(logits=old)
    dist_q = torch.distributions.Categorical(logits=new)
    assert torch.allclose(categorical_kl(old, new), torch.distributions.kl_divergence(dist_p,
                                                                                      dist_q))
    assert torch.allclose(categorical_entropy(old), dist_p.entropy())
    assert torch.allclose(categorical_kl(old, old), torch.zeros(6, dtype=F64))
    assert torch.allclose(categorical_kl(old, new + 3.0), categorical_kl(old, new))  # shift
    assert torch.allclose(categorical_entropy(torch.zeros(3, 5, dtype=F64)),
                          torch.full((3,), math.log(5), dtype=F64))


def test_log_prob_wants_one_index_per_row() -> None:
    with pytest.raises(ValueError, match="one index per row"):
        categorical_log_prob(torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.int64))


def test_fisher_product_is_the_hessian_of_the_mean_kl_in_the_logits() -> None:
    g = torch.Generator().manual_seed(1)
    states, actions = 5, 4
    old = 1.5 * torch.randn(states, actions, generator=g, dtype=F64)

    def mean_kl(logits: torch.Tensor) -> torch.Tensor:
        return categorical_kl(old, logits).mean()

    explicit = hessian(mean_kl, old).reshape(states * actions, states * actions)
    # the closed form applied to every basis vector, one column each
    basis = torch.eye(states * actions, dtype=F64).reshape(-1, states, actions)
    closed = torch.stack([categorical_fisher_product(old, e).reshape(-1) for e in basis], 1)
    assert torch.allclose(closed / states, explicit, atol=1e-12)
    # its power: the product without the -p (p . v) term is diag(p), which is far from it
    p = torch.softmax(old, -1)
    assert not torch.allclose(torch.diag(p.reshape(-1)) / states, explicit, atol=1e-3)
    # and a batch of vectors with leading dimensions
    v = torch.randn(3, states, actions, generator=g, dtype=F64)
    assert torch.allclose(categorical_fisher_product(old, v).reshape(3, -1) / states,
                          v.reshape(3, -1) @ explicit)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fisher_product_in_the_parameters_is_the_hessian_of_the_mean_kl(activation: str) -> None:
    torch.manual_seed(2)
    policy = CategoricalMLPPolicy(3, 4, (5,), activation=activation).double()
    params = {k: v + 0.3 * torch.randn_like(v) for k, v in policy.initial_params().items()}
    obs = torch.randn(7, 3, dtype=F64)
    old_logits = policy.distribution_params(params, obs)[0].detach()

    def mean_kl(flat: torch.Tensor) -> torch.Tensor:
        logits = policy.distribution_params(unflatten(flat, params), obs)[0]
        return categorical_kl(old_logits, logits).mean()

    theta = flatten(params)
    explicit = hessian(mean_kl, theta)
    product = mean_kl_fisher_product(policy, params, obs)
    columns = torch.stack([product(e) for e in torch.eye(theta.numel(), dtype=F64)], 1)
    assert torch.allclose(columns, explicit, atol=1e-10)
    v = torch.randn(theta.numel(), dtype=F64)
    damped = mean_kl_fisher_product(policy, params, obs, damping=0.1)
    assert torch.allclose(damped(v), explicit @ v + 0.1 * v, atol=1e-10)
    with pytest.raises(ValueError, match="parameters need"):
        product(torch.zeros(theta.numel() + 1, dtype=F64))


def test_fisher_product_with_per_task_parameters_averages_over_all_states() -> None:
    torch.manual_seed(3)
    policy = CategoricalMLPPolicy(2, 3, (4,)).double()
    stacked = {k: v + 0.2 * torch.randn(v.shape, dtype=F64)
               for k, v in per_task(policy.initial_params(), 2).items()}
    obs = torch.randn(2, 5, 2, dtype=F64)
    old_logits = policy.distribution_params(stacked, obs)[0].detach()

    def mean_kl(flat: torch.Tensor) -> torch.Tensor:
        logits = policy.distribution_params(unflatten(flat, stacked), obs)[0]
        return categorical_kl(old_logits, logits).mean()

    theta = flatten(stacked)
    v = torch.randn(theta.numel(), dtype=F64)
    expected = hessian(mean_kl, theta) @ v
    assert torch.allclose(mean_kl_fisher_product(policy, stacked, obs)(v), expected, atol=1e-10)


def test_per_task_parameters_equal_a_loop_over_tasks() -> None:
    torch.manual_seed(4)
    policy = CategoricalMLPPolicy(2, 3, (8, 8)).double()
    stacked = {k: v + 0.1 * torch.randn(v.shape, dtype=F64)
               for k, v in per_task(policy.initial_params(), 3).items()}
    obs = torch.randn(3, 6, 2, dtype=F64)
    actions = torch.randint(3, (3, 6))
    logits = policy.distribution_params(stacked, obs)[0]
    log_prob = policy.log_prob(stacked, obs, actions)
    for i in range(3):
        one = {k: v[i] for k, v in stacked.items()}
        assert torch.allclose(logits[i], policy.distribution_params(one, obs[i])[0])
        assert torch.allclose(log_prob[i], policy.log_prob(one, obs[i], actions[i]))
    assert torch.allclose(policy.entropy(stacked, obs), categorical_entropy(logits))


def test_module_forward_equals_the_functional_call_of_its_params() -> None:
    policy = CategoricalMLPPolicy(2, 3, (4,), activation="relu")
    obs = torch.randn(7, 2)
    assert torch.equal(policy(obs), policy.distribution_params(policy.initial_params(), obs)[0])
    with pytest.raises(ValueError, match="unknown activation"):
        CategoricalMLPPolicy(2, 3, activation="gelu")


def test_sampling_is_reproducible_and_follows_the_probabilities() -> None:
    policy = CategoricalMLPPolicy(1, 3, (4,)).double()
    params = policy.initial_params()
    params["layers.1.bias"] = torch.tensor([0.0, 1.0, -1.0], dtype=F64)
    params["layers.1.weight"] = torch.zeros_like(params["layers.1.weight"])
    n = 40_000
    obs = torch.ones(2, n // 2, 1, dtype=F64)  # leading dimensions are kept
    a = policy.sample(params, obs, torch.Generator().manual_seed(5))
    b = policy.sample(params, obs, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (2, n // 2) and a.dtype == torch.int64
    frequencies = torch.bincount(a.reshape(-1), minlength=3).double() / n
    expected = torch.softmax(params["layers.1.bias"], 0)
    # Hoeffding and a union bound over 3 frequencies: fails a correct sampler w.p. < 1e-6
    tolerance = math.sqrt(math.log(2 * 3 / 1e-6) / (2 * n))
    assert torch.all((frequencies - expected).abs() < tolerance)
