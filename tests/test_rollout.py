import numpy as np
import torch

from metarl.core.adaptation import per_task
from metarl.core.linalg import Params
from metarl.core.policies import GaussianMLPPolicy
from metarl.envs import Navigation2DVectorEnv, Task
from metarl.rl.rollout import rollout


def test_shapes_masks_and_rewards() -> None:
    env = Navigation2DVectorEnv(2 * 3)
    tasks = [Task.of(goal=[0.0, 0.05]), Task.of(goal=[0.4, 0.4])]
    policy = GaussianMLPPolicy(2, 2, (8,), init_log_std=-20.0)  # nearly deterministic
    params = policy.initial_params()
    for k in params:
        if k != "log_std":
            params[k] = torch.zeros_like(params[k])
    params["layers.1.bias"] = torch.tensor([0.0, 0.05])  # always step (0, 0.05)
    episodes = rollout(env, policy, params, tasks, 3, 10, torch.Generator().manual_seed(0))
    assert episodes.observations.shape == (2, 10, 3, 2)
    assert episodes.rewards.shape == (2, 10, 3) and episodes.mask.shape == (2, 10, 3)
    # task 0 reaches its goal on the first step: one valid step, then masked
    assert torch.equal(episodes.mask[0, :, 0], torch.tensor([1.0] + [0.0] * 9))
    assert episodes.rewards[0, 1:].abs().sum() == 0
    # task 1 never terminates: reward -|(0.4, 0.4) - (0, 0.05 (t + 1))|
    t = np.arange(10)
    expected = -np.hypot(0.4, 0.4 - 0.05 * (t + 1))
    assert np.allclose(episodes.rewards[1, :, 0].numpy(), expected, atol=1e-5)
    assert torch.all(episodes.mask[1] == 1)


def test_per_task_parameters_drive_each_task() -> None:
    env = Navigation2DVectorEnv(2)
    policy = GaussianMLPPolicy(2, 2, (4,), init_log_std=-20.0)
    params = per_task(policy.initial_params(), 2)
    params = {k: torch.zeros_like(v) if k != "log_std" else v for k, v in params.items()}
    params["layers.1.bias"] = torch.tensor([[0.1, 0.0], [-0.1, 0.0]])
    tasks = [Task.of(goal=[0.5, 0.5])] * 2
    episodes = rollout(env, policy, params, tasks, 1, 3, torch.Generator())
    assert torch.allclose(episodes.observations[0, 2, 0], torch.tensor([0.2, 0.0]))
    assert torch.allclose(episodes.observations[1, 2, 0], torch.tensor([-0.2, 0.0]))


def test_task_seeds_make_each_tasks_episodes_its_own() -> None:
    """With task_seeds, a task's noise comes from its seed alone: the batch around it does not
    matter, and the noise is the standard normal drawn from the seed's expansion."""
    from metarl.rl.rollout import draw_task_seeds

    policy = GaussianMLPPolicy(2, 2, (4,))
    params = {k: torch.zeros_like(v) for k, v in policy.initial_params().items()}  # mean 0, std 1
    tasks = [Task.of(goal=[0.9, 0.9]), Task.of(goal=[-0.9, 0.9]), Task.of(goal=[0.0, -0.9])]
    seeds = draw_task_seeds(np.random.default_rng(0), 3)
    whole = rollout(Navigation2DVectorEnv(3 * 2), policy, per_task(params, 3), tasks, 2, 5,
                    task_seeds=seeds)
    alone = rollout(Navigation2DVectorEnv(2), policy, per_task(params, 1), tasks[2:], 2, 5,
                    task_seeds=seeds[2:])
    assert torch.equal(whole.actions[2:], alone.actions)
    assert torch.equal(whole.observations[2:], alone.observations)
    words = np.random.SeedSequence(seeds[0]).generate_state(3).tolist()  # 2 resets, 1 noise
    noise = torch.randn(5, 2, 2, generator=torch.Generator().manual_seed(words[2]))
    assert torch.equal(whole.actions[0], noise)
    assert not torch.equal(whole.actions[0], whole.actions[1])


def test_the_policy_runs_on_one_torch_thread_with_the_same_episodes(monkeypatch) -> None:
    """During a rollout torch runs on one thread (its idle workers would spin on the cores
    the simulators' threads need), the caller's count comes back after it, and the episodes
    are those of the caller's thread count."""
    import contextlib

    import metarl.rl.rollout as rollout_module

    seen: list[int] = []

    class Recording(GaussianMLPPolicy):
        def distribution_params(self, params: Params,
                                obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append(torch.get_num_threads())
            return super().distribution_params(params, obs)

    policy = Recording(2, 2, (100, 100))
    params = per_task(policy.initial_params(), 20)
    tasks = [Task.of(goal=[0.02 * i, -0.3]) for i in range(20)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = rollout(Navigation2DVectorEnv(20 * 20), policy, params, tasks, 20, 30,
                      task_seeds=list(range(20)))
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        monkeypatch.setattr(rollout_module, "one_torch_thread", contextlib.nullcontext)
        two = rollout(Navigation2DVectorEnv(20 * 20), policy, params, tasks, 20, 30,
                      task_seeds=list(range(20)))
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.actions, two.actions) and torch.equal(one.rewards, two.rewards)
