import torch

from metarl.core.episodes import (
    Episodes,
    discounted_returns,
    episode_returns,
    gae,
    masked_mean,
    normalize_per_task,
    to_step_batch,
)


def _one_task(values: list[float]) -> torch.Tensor:
    """A [1, T, 1] float64 tensor from a list over time."""
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1)


def test_discounted_returns_by_hand() -> None:
    rewards = _one_task([1.0, 2.0, 3.0, 4.0])
    mask = _one_task([1.0, 1.0, 1.0, 0.0])  # the episode ended after three steps
    got = discounted_returns(rewards, mask, gamma=0.5)
    # R2 = 3, R1 = 2 + 0.5 * 3 = 3.5, R0 = 1 + 0.5 * 3.5 = 2.75; the masked step is 0
    assert torch.allclose(got, _one_task([2.75, 3.5, 3.0, 0.0]))


def test_gae_by_hand() -> None:
    rewards = _one_task([1.0, 0.0, 2.0])
    values = _one_task([0.5, 1.0, 1.5])
    mask = _one_task([1.0, 1.0, 1.0])
    gamma, lam = 0.9, 0.8
    d2 = 2.0 - 1.5  # the value after the horizon is 0
    d1 = 0.0 + 0.9 * 1.5 - 1.0
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    got = gae(rewards, values, mask, gamma, lam)
    assert torch.allclose(got, _one_task([a0, a1, a2]))


def test_gae_with_lambda_one_is_returns_minus_values() -> None:
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    values = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 7, 4, dtype=torch.float64)
    mask[0, 4:, 1] = 0.0  # one episode terminates early
    returns = discounted_returns(rewards, mask, 0.95)
    got = gae(rewards, values, mask, 0.95, 1.0)
    assert torch.allclose(got, (returns - values) * mask)


def test_gae_ignores_steps_after_termination() -> None:
    rewards = _one_task([1.0, 1.0, 100.0])
    values = _one_task([0.0, 0.0, 50.0])
    mask = _one_task([1.0, 1.0, 0.0])
    got = gae(rewards, values, mask, 1.0, 1.0)
    assert torch.allclose(got, _one_task([2.0, 1.0, 0.0]))


def test_episode_returns_and_masked_mean() -> None:
    rewards = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # [N=1, T=2, B=2]
    mask = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    episodes = Episodes(torch.zeros(1, 2, 2, 1), torch.zeros(1, 2, 2, 1), rewards, mask)
    assert torch.equal(episode_returns(episodes), torch.tensor([[4.0, 2.0]]))
    assert episodes.num_steps == 3
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(masked_mean(x, torch.tensor([[1.0, 0.0, 1.0]])), torch.tensor([2.0]))


def test_normalize_per_task_uses_valid_steps_only() -> None:
    adv = torch.tensor([[[1.0], [3.0], [100.0]], [[10.0], [20.0], [30.0]]])
    mask = torch.tensor([[[1.0], [1.0], [0.0]], [[1.0], [1.0], [1.0]]])
    got = normalize_per_task(adv, mask)
    assert torch.allclose(got[0, :, 0], torch.tensor([-1.0, 1.0, 0.0]), atol=1e-6)
    assert abs(got[1].mean().item()) < 1e-6
    assert abs(got[1].std(unbiased=False).item() - 1.0) < 1e-5


def test_step_batch_flattens_time_and_episodes() -> None:
    obs = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32).view(2, 3, 4, 2)
    episodes = Episodes(obs, obs[..., :1], obs[..., 0], torch.ones(2, 3, 4))
    batch = to_step_batch(episodes, obs[..., 1])
    assert batch.observations.shape == (2, 12, 2)
    assert torch.equal(batch.observations[1, 5], obs[1, 1, 1])
    sub = batch.subsample(torch.tensor([0, 5]))
    assert sub.observations.shape == (2, 2, 2) and sub.mask.shape == (2, 2)
    assert torch.equal(sub.advantages[1], torch.stack([obs[1, 0, 0, 1], obs[1, 1, 1, 1]]))
