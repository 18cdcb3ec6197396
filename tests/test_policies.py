import torch
from torch.distributions import Normal, kl_divergence

from metarl.core.adaptation import per_task
from metarl.core.policies import GaussianMLPPolicy, gaussian_kl, gaussian_log_prob


def test_log_prob_and_kl_match_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mean_p, mean_q = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    log_std_p, log_std_q = 0.3 * torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    actions = torch.randn(5, 3, generator=g, dtype=torch.float64)
    p, q = Normal(mean_p, log_std_p.exp()), Normal(mean_q, log_std_q.exp())
    log_prob = gaussian_log_prob(mean_p, log_std_p, actions)
    assert torch.allclose(log_prob, p.log_prob(actions).sum(-1))
    assert torch.allclose(
        gaussian_kl(mean_p, log_std_p, mean_q, log_std_q), kl_divergence(p, q).sum(-1)
    )


def test_per_task_parameters_equal_a_loop_over_tasks() -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (8, 8)).double()
    params = policy.initial_params()
    stacked = {k: v + 0.1 * torch.randn(v.shape, dtype=v.dtype)
               for k, v in per_task(params, 3).items()}
    obs = torch.randn(3, 6, 2, dtype=torch.float64)
    mean, log_std = policy.distribution_params(stacked, obs)
    for i in range(3):
        m_i, s_i = policy.distribution_params({k: v[i] for k, v in stacked.items()}, obs[i])
        assert torch.allclose(mean[i], m_i)
        assert torch.allclose(log_std[i].expand_as(m_i), s_i.expand_as(m_i))


def test_module_forward_equals_functional_call_of_its_params() -> None:
    policy = GaussianMLPPolicy(2, 2, (4,), activation="relu", init_log_std=-0.5)
    obs = torch.randn(7, 2)
    mean, log_std = policy(obs)
    mean_f, log_std_f = policy.distribution_params(policy.initial_params(), obs)
    assert torch.equal(mean, mean_f) and torch.equal(log_std, log_std_f)
    assert torch.allclose(log_std, torch.full((2,), -0.5))


def test_sampling_is_reproducible_with_a_generator() -> None:
    policy = GaussianMLPPolicy(2, 2)
    obs = torch.zeros(4, 2)
    a = policy.sample(policy.initial_params(), obs, torch.Generator().manual_seed(3))
    b = policy.sample(policy.initial_params(), obs, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
