"""The pretrained baseline learner: joint training on the task distribution, no adaptation."""

from __future__ import annotations

import torch

from metarl.config import TrainConfig
from metarl.core.episodes import masked_mean
from metarl.rl.meta_learner import MetaLearner


def _config(**fields: object) -> TrainConfig:
    return TrainConfig.from_dict({"learner": "pretrained", "meta_batch_size": 3,
                                  "episodes_per_task": 2, "horizon": 10, "inner_steps": 2,
                                  "torch_threads": 1, **fields})


def test_batch_pools_as_many_episodes_as_maml_samples_without_supports() -> None:
    learner = MetaLearner(_config())
    batch, metrics = learner.sample(learner.initial_state().params)
    assert batch.supports == []
    # 3 tasks x (2 support steps + 1 query) x 2 episodes x 10 steps, all sampled with theta
    assert batch.query.steps.mask.shape == (3, 10 * 3 * 2)
    assert metrics["env/steps_per_iteration"] == 3 * 3 * 2 * 10
    assert metrics["support/return"] == metrics["query/return"]


def test_gradient_is_the_plain_policy_gradient_of_the_pooled_batch() -> None:
    learner = MetaLearner(_config())
    params = learner.initial_state().params
    batch, _ = learner.sample(params)
    _, grads, _ = learner.meta_gradient(params, batch)
    # REINFORCE: -mean over each task's steps of A log pi, averaged over tasks
    steps = batch.query.steps
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    log_prob = learner.policy.log_prob(
        {k: v.unsqueeze(0).expand(3, *v.shape) for k, v in leaves.items()},
        steps.observations, steps.actions)
    loss = -masked_mean(log_prob * steps.advantages, steps.mask).mean()
    expected = torch.autograd.grad(loss, list(leaves.values()))
    for (name, got), want in zip(grads.items(), expected):
        torch.testing.assert_close(got, want, msg=name)


def test_one_trpo_iteration_moves_theta_within_the_kl_bound() -> None:
    config = _config(outer="trpo")
    learner = MetaLearner(config)
    state = learner.initial_state()
    new, metrics = learner.iteration(state)
    assert new.iteration == 1
    assert metrics["outer/accepted"] == 1.0
    assert any(not torch.equal(new.params[k], state.params[k]) for k in state.params)
    assert metrics["outer/kl"] <= config.max_kl
