"""One training iteration per supervised learner: Reptile's inner batches, the learning-rate
schedules, the outer steps against hand computations, and the random streams."""

from __future__ import annotations

import pytest
import torch

from metarl.core.adam import adam_init, adam_step
from metarl.core.maml import meta_gradient
from metarl.core.reptile import reptile_direction
from metarl.fewshot.config import FewShotConfig
from metarl.fewshot.learners import (
    initial_state,
    learner_direction,
    outer_lr_at,
    reptile_supports,
    training_step,
)
from metarl.fewshot.models import mse_loss
from metarl.fewshot.omniglot import OmniglotTasks, synthetic_omniglot
from metarl.fewshot.problems import SinusoidProblem, stream_seed, task_generator


def test_reptile_inner_batches_hold_every_class_and_split_the_support() -> None:
    ways, per_step, steps, n = 4, 2, 3, 5
    tasks = OmniglotTasks(synthetic_omniglot(12), "train", ways, per_step * steps, 0)
    batch = tasks.sample(n, torch.Generator().manual_seed(0))
    assert batch.query_x.shape[1] == 0  # Reptile trains without query examples
    parts = reptile_supports(batch, steps, per_step)
    assert len(parts) == steps
    for part in parts:
        assert part.support_x.shape == (n, ways * per_step, 1, 28, 28)
        for i in range(n):
            assert torch.equal(torch.bincount(part.support_y[i], minlength=ways),
                               torch.full((ways,), per_step))
    for i in range(n):  # the steps' sets partition the task's support set, labels kept
        seen = sorted((tuple(part.support_x[i, j].flatten().tolist()), int(part.support_y[i, j]))
                      for part in parts for j in range(ways * per_step))
        original = sorted((tuple(batch.support_x[i, j].flatten().tolist()),
                           int(batch.support_y[i, j])) for j in range(ways * per_step * steps))
        assert seen == original


def test_reptile_inner_batches_of_sinusoid_points_are_consecutive() -> None:
    problem = SinusoidProblem(FewShotConfig(learner="reptile", inner_steps=3, shots=4))
    batch = problem.sample("train", 2, torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (2, 12, 1)
    parts = reptile_supports(batch, 3, 4)
    assert torch.equal(torch.cat([p.support_x for p in parts], 1), batch.support_x)
    assert torch.equal(parts[1].support_y, batch.support_y[:, 4:8])


def test_learning_rate_schedules() -> None:
    linear = FewShotConfig(outer_lr=1.0, outer_lr_schedule="linear", iterations=4)
    assert [outer_lr_at(linear, i) for i in range(4)] == [1.0, 0.75, 0.5, 0.25]
    halving = FewShotConfig(outer_lr=1e-3, outer_lr_schedule="halving", lr_halving_every=2)
    assert [outer_lr_at(halving, i) for i in range(5)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]
    assert outer_lr_at(FewShotConfig(outer_lr=0.3), 10_000) == 0.3


def test_maml_step_is_adam_on_the_shared_meta_gradient() -> None:
    config = FewShotConfig(meta_batch_size=4, inner_steps=2)
    problem = SinusoidProblem(config)
    state = initial_state(config, problem.initial_params())
    new, metrics = training_step(config, problem, state, task_generator(0, "train"))
    batch = problem.sample("train", 4, task_generator(0, "train"))  # the same tasks
    loss, grads = meta_gradient(mse_loss("support"), mse_loss("query"), state.params,
                                [batch, batch], batch, 0.01)
    expected, _ = adam_step(state.params, grads, adam_init(state.params), 1e-3)
    assert metrics["train/loss"] == pytest.approx(float(loss))
    assert new.iteration == 1 and metrics["outer/lr"] == 1e-3
    for key in expected:
        assert torch.allclose(new.params[key], expected[key], atol=1e-7), key


def test_reptile_sgd_step_moves_theta_toward_the_adapted_parameters() -> None:
    config = FewShotConfig(learner="reptile", inner_steps=3, outer="sgd", outer_lr=0.5,
                           meta_batch_size=3)
    problem = SinusoidProblem(config)
    state = initial_state(config, problem.initial_params())
    assert state.adam is None
    new, _ = training_step(config, problem, state, task_generator(0, "train"))
    batch = problem.sample("train", 3, task_generator(0, "train"))
    _, direction = reptile_direction(mse_loss("support"), state.params,
                                     reptile_supports(batch, 3, 10), 0.01)
    # theta + eps * mean_i (phi_i - theta), with direction = mean_i (theta - phi_i)
    for key in state.params:
        assert torch.allclose(new.params[key], state.params[key] - 0.5 * direction[key]), key


def test_pretrained_direction_is_the_mixture_gradient_in_float64() -> None:
    config = FewShotConfig(learner="pretrained", meta_batch_size=2, shots=3, queries=2)
    problem = SinusoidProblem(config)
    params = {k: v.double() for k, v in problem.initial_params().items()}
    batch = problem.sample("train", 2, torch.Generator().manual_seed(1))
    batch = batch._replace(**{f: getattr(batch, f).double()
                              for f in ("support_x", "support_y", "query_x", "query_y")})
    loss, grads, _ = learner_direction(config, problem, params, batch)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    x = torch.cat([batch.support_x, batch.query_x], 1)
    y = torch.cat([batch.support_y, batch.query_y], 1)
    h = torch.relu(x @ leaves["layers.0.weight"].T + leaves["layers.0.bias"])
    h = torch.relu(h @ leaves["layers.1.weight"].T + leaves["layers.1.bias"])
    out = h @ leaves["layers.2.weight"].T + leaves["layers.2.bias"]
    by_hand = ((out - y) ** 2).mean()  # every point of every task weighs the same
    by_hand.backward()
    assert float(loss) == pytest.approx(by_hand.item(), rel=1e-12)
    for key, leaf in leaves.items():
        assert leaf.grad is not None
        assert torch.allclose(grads[key], leaf.grad, rtol=1e-10, atol=1e-12), key


def test_task_streams_differ_by_role_and_seed() -> None:
    seeds = {stream_seed(s, role) for s in (0, 1, 1000) for role in ("train", "val", "test")}
    assert len(seeds) == 9
    assert stream_seed(3, "val") == stream_seed(3, "val")
    a = torch.rand(3, generator=task_generator(1000, "train"))
    b = torch.rand(3, generator=task_generator(1000, "test"))
    assert not torch.equal(a, b)  # training seed 1000 never replays the default test tasks
